"""The Spark connector jar (``jvm-shim/``): where it is, whether it is built from the current
sources, and how to build it with plain ``javac`` against the jars inside the pyspark wheel
(Maven Central is not reachable from our machines; ``build.sbt`` builds the same sources where
sbt is at hand).

The jar carries the SHA-256 of the sources it was built from (``theflash-spark.sources.sha256``
at its root), so a stale jar is found by comparing that with the sources in the checkout.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent
JAR = PACKAGE / "jars" / "theflash-spark.jar"
SHIM = PACKAGE.parent / "jvm-shim"
SOURCES = SHIM / "src" / "main"
STAMP = "theflash-spark.sources.sha256"
JAVA_RELEASE = "17"


class JarError(Exception):
    """The jar is missing, stale or cannot be built; the message says what to run."""


def jar_path() -> Path:
    """The connector jar, for ``spark.jars`` / ``--jars``; an error when it is not built."""
    if not JAR.exists():
        raise JarError(f"{JAR} is not built: run scripts/bootstrap.sh (or python -m pyspark_theflash.spark.jar)")
    return JAR


def source_files() -> list[Path]:
    return sorted(p for p in SOURCES.rglob("*") if p.is_file())


def sources_digest() -> str:
    """SHA-256 over the shim's sources (paths and contents)."""
    h = hashlib.sha256()
    for p in source_files():
        h.update(p.relative_to(SOURCES).as_posix().encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()


def built_digest(jar: Path = JAR) -> str | None:
    """The sources digest the jar was built from, or None (no jar, or no stamp in it)."""
    if not jar.exists():
        return None
    with zipfile.ZipFile(jar) as z:
        try:
            return z.read(STAMP).decode().strip()
        except KeyError:
            return None


def package_version() -> str:
    """The installed package's version (its metadata: the package's own ``__version__`` is a box
    above this one)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyspark-theflash")
    except PackageNotFoundError:
        return "unknown (not installed)"


def built_version(jar: Path = JAR) -> str | None:
    """The package version the jar was built from (its manifest's Implementation-Version), or
    None (no jar, or a jar built before the manifest recorded it)."""
    if not jar.exists():
        return None
    with zipfile.ZipFile(jar) as z:
        try:
            manifest = z.read("META-INF/MANIFEST.MF").decode(errors="replace")
        except KeyError:
            return None
    for line in manifest.splitlines():
        if line.startswith("Implementation-Version:"):
            return line.split(":", 1)[1].strip()
    return None


def describe(jar: Path = JAR) -> str:
    """One line on the connector jar for ``theflash --version``: its version, and whether it is
    built from the sources beside it."""
    if not jar.exists():
        return f"connector jar: not built ({jar}); build it with scripts/bootstrap.sh or python -m pyspark_theflash.spark.jar"
    version = built_version(jar) or "(version not recorded: built before jars recorded theirs)"
    digest = built_digest(jar)
    if not SOURCES.exists():
        state = f"sources sha256 {digest[:12]}" if digest else "no sources stamp"
    elif digest == sources_digest():
        state = "current with the sources in jvm-shim/"
    else:
        state = "stale: jvm-shim/ changed since; rebuild with python -m pyspark_theflash.spark.jar"
    return f"connector jar: theflash-spark {version}, {jar} ({state})"


def is_current() -> bool:
    return SOURCES.exists() and built_digest() == sources_digest()


def spark_jars_dir() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent / "jars"


def build(force: bool = False) -> Path:
    """Compiles ``jvm-shim/src/main/java`` with ``javac`` into the jar (with its resources and the
    sources stamp); does nothing when the jar is current, unless ``force``."""
    if not SOURCES.exists():
        raise JarError(f"{SOURCES} is missing: the jar is built from a checkout of the repository")
    digest = sources_digest()
    if not force and built_digest() == digest and built_version() == package_version():
        return JAR
    javac = shutil.which("javac")
    if javac is None:
        raise JarError("javac is not installed (a JDK 17+ is needed to build the Spark connector jar)")
    java_files = [str(p) for p in (SOURCES / "java").rglob("*.java")]
    with tempfile.TemporaryDirectory(prefix="theflash-jar-") as tmp:
        classes = Path(tmp) / "classes"
        classes.mkdir()
        cmd = [javac, "--release", JAVA_RELEASE, "-nowarn", "-encoding", "UTF-8", "-d", str(classes),
               "-cp", str(spark_jars_dir() / "*"), *java_files]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise JarError(f"javac failed:\n{done.stdout}{done.stderr}")
        JAR.parent.mkdir(parents=True, exist_ok=True)
        partial = JAR.with_suffix(".jar.partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: pyspark_theflash.spark.jar\n"
                       f"Implementation-Title: theflash-spark\nImplementation-Version: {package_version()}\n\n")
            for p in sorted(classes.rglob("*.class")):
                z.write(p, p.relative_to(classes).as_posix())
            resources = SOURCES / "resources"
            for p in sorted(resources.rglob("*")) if resources.exists() else []:
                if p.is_file():
                    z.write(p, p.relative_to(resources).as_posix())
            z.writestr(STAMP, digest + "\n")
        os.replace(partial, JAR)
    return JAR


def main() -> int:
    import sys

    try:
        path = build(force="--force" in sys.argv[1:])
    except JarError as exc:
        print(f"theflash jar: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
