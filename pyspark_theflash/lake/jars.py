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
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"


def cache_dir() -> Path:
    return Path(os.environ.get("THEFLASH_CACHE") or Path.home() / ".cache" / "theflash") / "maven"


def _relative(group: str, artifact: str, version: str) -> str:
    return f"{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.jar"


def delta_spark_jars() -> list[Path]:
    """The cached jars, in ``spark.jars`` order; ``LakeSetupError`` naming the first missing one."""
    out = []
    for group, artifact, version in ARTIFACTS:
        path = cache_dir() / _relative(group, artifact, version)
        if not path.is_file():
            raise LakeSetupError(f"{path} is missing: delta-spark's jars are fetched by the set-up command; "
                                 "run scripts/bootstrap.sh (or python -m pyspark_theflash.lake.jars)")
        out.append(path)
    return out


def fetch() -> list[Path]:
    """Download every missing jar (checked against Maven Central's SHA-1); returns them all."""
    out = []
    for group, artifact, version in ARTIFACTS:
        rel = _relative(group, artifact, version)
        path = cache_dir() / rel
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            with urllib.request.urlopen(f"{MAVEN_CENTRAL}/{rel}", timeout=120) as r:
                data = r.read()
            with urllib.request.urlopen(f"{MAVEN_CENTRAL}/{rel}.sha1", timeout=60) as r:
                want = r.read().decode().split()[0].strip()
            got = hashlib.sha1(data).hexdigest()
            if got != want:
                raise LakeSetupError(f"{rel} from Maven Central has SHA-1 {got}, not the published {want}; "
                                     "run the set-up command again")
            tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
            tmp.write_bytes(data)
            tmp.replace(path)
        out.append(path)
    return out


if __name__ == "__main__":
    try:
        for jar in fetch():
            print(jar)
    except (LakeSetupError, OSError) as exc:
        print(f"delta-spark jars: {exc}", file=sys.stderr)
        sys.exit(1)
