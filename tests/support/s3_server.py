"""A real S3-compatible server on loopback for the tests: SeaweedFS (``weed mini``), built
from the Go module proxy by the set-up command into a cache and started by the tests.

Why SeaweedFS and not MinIO (docs/delta.md, "On shared storage"): SeaweedFS is Apache-2.0, one
Go binary that ``go build`` makes from its module at a pinned version, is actively released,
and answers the S3 calls every reader here makes (path-style GET with ranges, HEAD, LIST v2,
PUT, DELETE, multipart). MinIO's community server is AGPL-3.0, distributed as source only
since 2025, and builds the same way: nothing it offers here that SeaweedFS lacks.

``python tests/support/s3_server.py install`` (run by ``scripts/bootstrap.sh``) builds the
pinned version into ``$THEFLASH_CACHE/seaweedfs/<version>/weed`` (default ``~/.cache/theflash``).
A test never builds or downloads: ``weed_binary()`` fails naming the set-up command when the
binary is missing. ``S3Server`` runs one server with every port on 127.0.0.1, free ports, data
in a temporary directory, one identity whose keys the tests hand to the readers through the
environment (``AWS_ACCESS_KEY_ID``...) and Hadoop configuration, never a command line.
"""
from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from loopback_ports import free_ports

# The module has no semver tags (SeaweedFS's releases are "4.01"-style), so the proxy serves
# pseudo-versions; this one (a commit of 2026-11-09, ``weed version``: 4.53) was the module's
# latest on the proxy when pinned.
SEAWEEDFS_MODULE = "github.com/seaweedfs/seaweedfs"
SEAWEEDFS_VERSION = "v0.0.0-20261109003541-7506e5f91cd6"
GO = os.environ.get("GO", "/usr/local/go/bin/go")
REGION = "us-east-1"


def cache_dir() -> Path:
    return Path(os.environ.get("THEFLASH_CACHE") or Path.home() / ".cache" / "theflash") / "seaweedfs" / SEAWEEDFS_VERSION


def weed_binary() -> Path:
    """The cached ``weed``; a test that needs it fails (not skips) naming the set-up command."""
    path = cache_dir() / "weed"
    if not path.is_file():
        import pytest

        pytest.fail(f"{path} is missing: the S3 server (SeaweedFS {SEAWEEDFS_VERSION}) is built by the set-up "
                    "command; run scripts/bootstrap.sh (or python tests/support/s3_server.py install)")
    return path


def install() -> Path:
    """Build the pinned ``weed`` into the cache (``go build`` in the module's directory: its
    go.mod has replace directives, which ``go install module@version`` refuses)."""
    target = cache_dir() / "weed"
    if target.is_file():
        return target
    if not Path(GO).exists() and shutil.which("go") is None:
        raise SystemExit(f"Go is not at {GO} nor on the PATH: install Go, or set GO, to build SeaweedFS")
    go = GO if Path(GO).exists() else str(shutil.which("go"))
    out = subprocess.run([go, "mod", "download", "-json", f"{SEAWEEDFS_MODULE}@{SEAWEEDFS_VERSION}"],
                         check=True, capture_output=True, text=True)
    source = json.loads(out.stdout)["Dir"]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".weed.tmp-{os.getpid()}")
    subprocess.run([go, "build", "-o", str(tmp), "./weed"], cwd=source, check=True, stdout=sys.stderr,
                   env={**os.environ, "GOFLAGS": "-buildvcs=false -mod=readonly"})
    tmp.replace(target)
    return target


class PortTakenError(RuntimeError):
    """Another process bound one of the server's ports between their pick and its start."""


class S3Server:
    """One SeaweedFS server with its S3 gateway on 127.0.0.1 (``start``/``stop``)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.access_key = "theflash" + secrets.token_hex(4)
        self.secret_key = secrets.token_hex(16)
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log = data_dir / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """What a reader's environment carries: the keys, the endpoint, the region, plain HTTP."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
                "AWS_ALLOW_HTTP": "true", "AWS_EC2_METADATA_DISABLED": "true"}

    def hadoop_conf(self) -> dict[str, str]:
        """S3A's settings for this server (credentials come from the environment: S3A's default
        chain reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)."""
        return {"spark.hadoop.fs.s3a.endpoint": self.endpoint, "spark.hadoop.fs.s3a.endpoint.region": REGION,
                "spark.hadoop.fs.s3a.path.style.access": "true",
                "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
                "spark.hadoop.fs.s3a.aws.credentials.provider":
                    "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider"}

    def start(self, timeout_s: float = 90.0, attempts: int = 3) -> "S3Server":
        """Starts the server and waits until it answers; started again on other ports (up to
        ``attempts`` times) when another process bound one of its ports before it did."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start(timeout_s)
            except PortTakenError:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _start(self, timeout_s: float) -> "S3Server":
        weed = weed_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "theflash", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        config.chmod(0o600)
        (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, admin,
         admin_grpc) = free_ports(10)
        self.port = s3
        # `weed mini`: master, volume server, filer, S3 gateway and an admin server in one process,
        # for one machine. It answered the probe in 5.5 s where `weed server -s3` took 11 (15 on a
        # loaded run): mini's filer skips the 3-10 s wait for peer filers a cluster may still have,
        # and its master allocates volume ids on the volume server's first report, not after a
        # warm-up (issue 54). Every port on loopback and chosen here (none of mini's fixed
        # defaults: the legacy admin port, Iceberg's, Lance's), no telemetry, no WebDAV, no admin
        # UI, sockets in the data dir.
        # Each bucket is a SeaweedFS collection, and the master grows 7 volumes for a new one: with
        # the probe's collection, a cap of 32 volume slots left the fifth bucket of a test worker
        # without a writable volume ("No writable volumes and no free volumes left", answered as
        # INTERNAL_FAILURE on every retry). The slots are only a count (volumes are sparse files
        # that fill to -master.volumeSizeLimitMB), so the cap is set far above what a run creates.
        argv = [str(weed), "mini", f"-dir={self.data_dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.telemetry=false",
                "-master.volumeSizeLimitMB=64", f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
                "-volume.max=1024", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
                f"-filer.localSocket={self.data_dir / 'filer.sock'}", f"-s3.port={s3}",
                f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0",
                f"-s3.localSocket={self.data_dir / 's3.sock'}", f"-s3.config={config}",
                f"-admin.port={admin}", f"-admin.port.grpc={admin_grpc}", "-admin.port.legacy=0", "-admin.ui=false",
                "-webdav=false"]
        shutil.rmtree(self.data_dir / "data", ignore_errors=True)  # (nothing of a start that failed)
        (self.data_dir / "data").mkdir()
        log_from = self.log.stat().st_size if self.log.exists() else 0  # (this start's lines only)
        self.process = subprocess.Popen(argv, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
        atexit.register(self.stop)   # a test process that dies without its teardown leaves no server behind
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code, self.process = self.process.returncode, None
                with open(self.log, "rb") as log:
                    log.seek(log_from)
                    taken = b"address already in use" in log.read()
                raise (PortTakenError if taken else RuntimeError)(f"weed mini exited with {code}: {self._tail()}")
            try:
                self._probe()
                return self
            except Exception as exc:  # not up yet: connection refused, 503 while volumes grow
                last = exc
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the S3 server on {self.endpoint} did not answer in {timeout_s:.0f} s ({last}): {self._tail()}")

    def filesystem(self) -> Any:
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(access_key=self.access_key, secret_key=self.secret_key, region=REGION,
                                 scheme="http", endpoint_override=f"127.0.0.1:{self.port}", allow_bucket_creation=True)

    def _probe(self) -> None:
        fs = self.filesystem()
        fs.create_dir("probe")
        with fs.open_output_stream("probe/ready") as out:
            out.write(b"ok")
        with fs.open_input_stream("probe/ready") as f:
            assert f.read() == b"ok"

    def create_bucket(self, name: str) -> None:
        self.filesystem().create_dir(name)

    def _tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()   # its data is the test's temporary directory: no need to wait long
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        raise SystemExit("usage: python tests/support/s3_server.py install")
    print(install())
