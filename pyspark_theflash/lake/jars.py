"""delta-spark's jars for a plain Spark session reading the published Delta tables.

Fetched once from Maven Central by the set-up command (``scripts/bootstrap.sh`` runs
``python -m pyspark_theflash.lake.jars``) into a cache (``$THEFLASH_CACHE``, default
``~/.cache/theflash``), each checked against the SHA-1 Maven Central publishes beside it. Nothing
else downloads them: a test or a README block that needs them finds them here or is told to run
the set-up command.

delta-spark 4.4.0 is built for Spark 4.2 (``delta-spark_4.2_2.13``: the Spark minor version is
part of the artifact name since Delta 4.1); it needs ``delta-storage`` of the same version and
nothing else a Spark 4.2 distribution lacks (its other compile dependencies, the Unity Catalog
client among them, load only when a Unity Catalog is configured).
"""
from __future__ import annotations

import hashlib
import os
import sys
import urllib.request
from pathlib import Path

from pyspark_theflash.lake.errors import LakeSetupError

DELTA_VERSION = "4.4.0"
# (group, artifact, version): what a Spark 4.2 session needs on spark.jars to read Delta
ARTIFACTS: tuple[tuple[str, str, str], ...] = (
    ("io.delta", "delta-spark_4.2_2.13", DELTA_VERSION),
    ("io.delta", "delta-storage", DELTA_VERSION),
)
# Hadoop 3.5.0 (pyspark 4.2's hadoop-client-api) pins AWS SDK v2 2.35.4 and the analytics
# accelerator 1.3.1 (hadoop-project-3.5.0.pom: aws-java-sdk-v2.version, amazon-s3-analyticsaccelerator-s3.version)
HADOOP_VERSION = "3.5.0"
S3A_ARTIFACTS: tuple[tuple[str, str, str], ...] = (
    ("org.apache.hadoop", "hadoop-aws", HADOOP_VERSION),
    ("software.amazon.awssdk", "bundle", "2.35.4"),
    ("software.amazon.s3.analyticsaccelerator", "analyticsaccelerator-s3", "1.3.1"),
)
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"


def cache_dir() -> Path:
    return Path(os.environ.get("THEFLASH_CACHE") or Path.home() / ".cache" / "theflash") / "maven"


def _relative(group: str, artifact: str, version: str) -> str:
    return f"{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.jar"


def _cached(artifacts: tuple[tuple[str, str, str], ...], what: str) -> list[Path]:
    out = []
    for group, artifact, version in artifacts:
        path = cache_dir() / _relative(group, artifact, version)
        if not path.is_file():
            raise LakeSetupError(f"{path} is missing: {what} jars are fetched by the set-up command; "
                                 "run scripts/bootstrap.sh (or python -m pyspark_theflash.lake.jars)")
        out.append(path)
    return out


def delta_spark_jars() -> list[Path]:
    """The cached jars, in ``spark.jars`` order; ``LakeSetupError`` naming the first missing one."""
    return _cached(ARTIFACTS, "delta-spark's")


def s3a_jars() -> list[Path]:
    """hadoop-aws and the AWS SDK it needs, cached, for ``spark.jars`` beside delta-spark's
    (a Spark session reading ``s3a://``); ``LakeSetupError`` naming the first missing one."""
    return _cached(S3A_ARTIFACTS, "hadoop-aws's (S3A)")


def pyspark_hadoop_version() -> str | None:
    """The Hadoop client version pyspark ships (None: no pyspark, or no hadoop-client-api jar)."""
    try:
        import pyspark
    except ImportError:
        return None
    for jar in (Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar"):
        return jar.name[len("hadoop-client-api-"):-len(".jar")]
    return None


def _download(url: str, path: Path) -> str:
    """Stream ``url`` to ``path``; its SHA-1."""
    digest = hashlib.sha1()
    with urllib.request.urlopen(url, timeout=120) as r, open(path, "wb") as f:
        while chunk := r.read(1 << 20):
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest()


def fetch(artifacts: tuple[tuple[str, str, str], ...] = ARTIFACTS + S3A_ARTIFACTS) -> list[Path]:
    """Download every missing jar (checked against Maven Central's SHA-1); returns them all."""
    found = pyspark_hadoop_version()
    if found is not None and found != HADOOP_VERSION and any(a[1] == "hadoop-aws" for a in artifacts):
        raise LakeSetupError(f"pyspark ships Hadoop {found}, this code pins hadoop-aws {HADOOP_VERSION}: "
                             "set HADOOP_VERSION and the AWS SDK in pyspark_theflash/lake/jars.py to match")
    out = []
    for group, artifact, version in artifacts:
        rel = _relative(group, artifact, version)
        path = cache_dir() / rel
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
            try:
                got = _download(f"{MAVEN_CENTRAL}/{rel}", tmp)
                with urllib.request.urlopen(f"{MAVEN_CENTRAL}/{rel}.sha1", timeout=60) as r:
                    want = r.read().decode().split()[0].strip()
                if got != want:
                    raise LakeSetupError(f"{rel} from Maven Central has SHA-1 {got}, not the published {want}; "
                                         "run the set-up command again")
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
        out.append(path)
    return out


if __name__ == "__main__":
    try:
        for jar in fetch():
            print(jar)
    except (LakeSetupError, OSError) as exc:
        print(f"delta-spark jars: {exc}", file=sys.stderr)
        sys.exit(1)
