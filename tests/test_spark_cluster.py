"""Spark on a cluster: a standalone master and two workers, each worker on its own 'host' (a
network namespace on a bridge, and a mount namespace where the test's directory — the store,
the mini cluster, everything — is hidden under a tmpfs). Executors there cannot open the store's
files, as on another machine; reads through the jar (``theflash_session(master=...)`` with its
in-driver service, and a plain session with ``spark.jars`` + ``server``), through the Python
source (``server``), and a stream (``readStream``) answer the upstream's rows at one ts while the
bank workload transfers. All traffic stays on this machine. Needs root (CI runs as root);
elsewhere it says so and skips."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import ROOT
from flash_rig import FlashRig, wait_for
from pyspark_theflash.service import serve
from pyspark_theflash.upstream.workloads import BankWorkload

pytestmark = [pytest.mark.spark, pytest.mark.slow]

TABLE = "bank.accounts"
WORKERS = 2


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30)


class Lan:
    """A bridge in this namespace (the driver's and the master's host) and one network namespace
    per worker, joined to it by a veth pair; addresses this test assigns."""

    def __init__(self) -> None:
        tag = os.getpid() % 100000
        net = 20 + os.getpid() % 200
        self.bridge = f"thf{tag}b"
        self.host = f"10.243.{net}.1"
        self.namespaces = [f"theflash{tag}w{i}" for i in range(WORKERS)]
        self.addresses = [f"10.243.{net}.{10 + i}" for i in range(WORKERS)]
        self._links: list[str] = []
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        self._links.append(self.bridge)
        _run("ip", "addr", "add", f"{self.host}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for i, (ns, address) in enumerate(zip(self.namespaces, self.addresses)):
            _run("ip", "netns", "add", ns)
            outer = f"thf{tag}h{i}"
            _run("ip", "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self._links.append(outer)
            _run("ip", "link", "set", outer, "master", self.bridge, "up")
            for cmd in (("ip", "addr", "add", f"{address}/24", "dev", "eth0"), ("ip", "link", "set", "eth0", "up"),
                        ("ip", "link", "set", "lo", "up"), ("ip", "route", "add", "default", "via", self.host)):
                _run("ip", "netns", "exec", ns, *cmd)

    def close(self) -> None:
        for link in reversed(self._links):
            subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=30)
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def _namespaces_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the cluster test makes network and mount namespaces: it needs root (CI runs it as root)"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"the cluster test needs the {tool} command"
    probe = f"thfprobe{os.getpid() % 10000}"
    made = subprocess.run(["ip", "link", "add", probe, "type", "bridge"], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a bridge here ({made.stderr.strip()}): no namespaces for the cluster test"
    subprocess.run(["ip", "link", "del", probe], capture_output=True)
    return None


@pytest.fixture(scope="module")
def lan() -> Iterator[Lan]:
    why = _namespaces_unavailable()
    if why is not None:
        pytest.skip(why)
    network = Lan()
    try:
        yield network
    finally:
        network.close()


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class StandaloneCluster:
    """A master on the bridge's address, a worker in each namespace (started with the wheel's
    ``spark-class``), the test's directory hidden from the workers."""

    def __init__(self, lan: Lan, hidden: Path, logs: Path) -> None:
        spark_class = str(_spark_home() / "bin" / "spark-class")
        env = dict(os.environ, SPARK_HOME=str(_spark_home()), PYSPARK_PYTHON=sys.executable,
                   SPARK_LOCAL_IP=lan.host, SPARK_NO_DAEMONIZE="1")
        port, ui = _free_port(lan.host), _free_port(lan.host)
        self.master = f"spark://{lan.host}:{port}"
        self.ui = f"http://{lan.host}:{ui}/json/"
        self.processes: list[subprocess.Popen] = []
        logs.mkdir(parents=True, exist_ok=True)
        self._start([spark_class, "org.apache.spark.deploy.master.Master", "--host", lan.host, "--port", str(port),
                     "--webui-port", str(ui)], env, logs / "master.log")
        for i, (ns, address) in enumerate(zip(lan.namespaces, lan.addresses)):
            work = f"{hidden}/spark-worker"
            script = (f"mount -t tmpfs tmpfs {hidden} && mkdir -p {work}/work {work}/local && "
                      f"exec {spark_class} org.apache.spark.deploy.worker.Worker --host {address} --cores 1 "
                      f"--memory 1g --work-dir {work}/work {self.master}")
            worker_env = dict(env, SPARK_LOCAL_IP=address, SPARK_LOCAL_DIRS=f"{work}/local")
            self._start(["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private",
                         "sh", "-c", script], worker_env, logs / f"worker-{i}.log")
        wait_for(lambda: self._alive_workers() == WORKERS, 240, f"{WORKERS} workers to register with {self.master}")

    def _start(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        with open(log, "wb") as out:
            self.processes.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                                   start_new_session=True))

    def _alive_workers(self) -> int:
        try:
            with urllib.request.urlopen(self.ui, timeout=5) as response:
                return int(json.loads(response.read()).get("aliveworkers", 0))
        except OSError:
            return 0

    def close(self) -> None:
        for process in reversed(self.processes):  # workers (and their executors), then the master
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def run_driver(mode: str, master: str, store: str, ts: int, server: str, token: str, lan_host: str) -> dict[str, Any]:
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    env.pop("SPARK_LOCAL_IP", None)
    env.pop("THEFLASH_TOKEN", None)
    env["THEFLASH_TOKEN"] = token
    env["THEFLASH_TEST_LAN_HOST"] = lan_host
    cmd = [sys.executable, str(ROOT / "tests" / "spark_cluster_driver.py"), mode, master, store, TABLE, str(ts)]
    proc = subprocess.run(cmd + [server], capture_output=True, text=True, timeout=420, env=env,
                          cwd=str(ROOT))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT=")]
    assert proc.returncode == 0 and lines, f"driver {mode} failed:\n{proc.stderr[-6000:]}"
    return json.loads(lines[0][len("RESULT="):])


def test_executors_on_other_hosts_read_through_the_jar_the_python_source_and_a_stream(
        lan: Lan, tmp_path: Path) -> None:
    accounts = 20
    rig = FlashRig(tmp_path / "flash")
    cluster: StandaloneCluster | None = None
    try:
        bank = BankWorkload(rig.cluster, accounts=accounts, initial=1000, threads=1, seed=43, rate=20)
        bank.setup()
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated(TABLE)
        bank.start()
        cluster = StandaloneCluster(lan, tmp_path, tmp_path / "logs")
        token = secrets.token_urlsafe(24)
        with serve(rig.store, host=lan.host, port=0, token=token) as served:
            results = {}
            for mode in ("session", "jars", "python"):
                before = bank.stats.committed
                wait_for(lambda: bank.stats.committed > before, 30, "the workload to commit")
                ts = int(rig.cluster.get_ts())
                got = run_driver(mode, cluster.master, rig.store, ts, served.http_url, token, lan.host)
                upstream = sorted([int(r["id"]), int(r["balance"])] for r in rig.cluster.read_table(TABLE, ts).rows)
                results[mode] = got
                # executors ran on both worker 'hosts' and none of them could see the store
                hosts = {host for host, _ in got["executors"]}
                assert hosts == set(lan.addresses), got["executors"]
                assert not any(seen for _, seen in got["executors"]), got["executors"]
                assert got["rows"] == upstream, f"{mode} at ts {ts}: {got['rows']} != upstream {upstream}"
                assert sum(b for _, b in got["rows"]) == bank.total and len(got["rows"]) == accounts
                if mode == "session":
                    assert got["stream_first_batch"] == upstream  # the stream's first batch: the rows at ts
                    assert got["driver_host"] == lan.host and got["server"].startswith(f"http://{lan.host}:")
                    assert got["ui"], "theflash_session() leaves the Spark UI on"
        bank.stop()
        assert not bank.stats.errors, bank.stats.errors[:3]
    finally:
        bank_stop = locals().get("bank")
        if bank_stop is not None:
            bank_stop.stop()
        if cluster is not None:
            cluster.close()
        rig.close()
