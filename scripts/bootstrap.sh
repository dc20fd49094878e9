#!/usr/bin/env bash
# Make this checkout runnable on a fresh machine: Java 17+ (what PySpark 4 needs) and a
# project virtual environment (.venv) with the pinned dependencies and the package itself.
# Idempotent: a second run only checks; dependencies are reinstalled when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[bootstrap] %s\n' "$*" >&2; }

java_major() {
  command -v java >/dev/null 2>&1 || { echo 0; return; }
  java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit}'
}

if [ "$(java_major)" -lt 17 ]; then
  say "Java 17+ not found; installing openjdk-17-jre-headless with apt-get"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openjdk-17-jdk-headless >/dev/null
fi
say "java $(java_major) at $(command -v java)"

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  say "Python 3.10+ is required (found $("$PYTHON" --version 2>&1))"; exit 1
fi
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv || { say "venv failed; installing python3-venv"; apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && "$PYTHON" -m venv .venv; }
fi

# The compiled pieces (pyproject.toml ext-modules: pyspark_theflash/_native/*.c) need a C
# compiler and Python's headers.
if ! command -v gcc >/dev/null 2>&1 || [ ! -f "$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]; then
  say "gcc or Python's headers not found; installing gcc and python3-dev with apt-get"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq gcc python3-dev >/dev/null
fi

stamp=.venv/.theflash-installed
want=$(cat pyproject.toml pyspark_theflash/_native/*.c | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing pinned dependencies into .venv (first run downloads ~450 MB, mostly pyspark)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  # editable_mode=compat puts this checkout on sys.path through a .pth file. The default
  # (an import-hook finder) is invisible to pkgutil.iter_modules(), which is how Spark's
  # Python workers discover pyspark_* data sources: format("theflash") would not be found.
  # test: the suite's own dependencies; notebook: JupyterLab and nbconvert, to open notebooks/
  # --no-compile, then compileall below on both cores: pip compiles what it installs on one
  # (52 s of this install from pip's cache; 29 s + 11 s this way, issue 54).
  .venv/bin/python -m pip install -q --no-compile -e '.[test,notebook]' --config-settings editable_mode=compat
  # The dependencies' modules compiled to bytecode once, all but their own test suites, which
  # nothing here imports; a file that does not compile is left to its import, as pip leaves it.
  site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  .venv/bin/python -m compileall -q -j 0 -x '/tests?/' "$site" >/dev/null || true
  echo "$want" > "$stamp"
fi
# JupyterLab refuses to start as root (containers, CI machines) unless allowed. This venv's
# JupyterLab serves this checkout's notebooks on localhost only: allow it here, not machine-wide.
mkdir -p .venv/etc/jupyter
printf '{"ServerApp": {"allow_root": true}}\n' > .venv/etc/jupyter/jupyter_server_config.json
.venv/bin/python -c 'import pyspark_theflash; from pyspark_theflash._native import load; load("cdc_wire")' >/dev/null
# This checkout's modules compiled to bytecode once, as the dependencies' are (an editable
# install's sources are not): where Python writes no bytecode itself (PYTHONDONTWRITEBYTECODE), every
# process would compile what it imports again, and the test suite starts hundreds. A source changed
# since is compiled afresh when imported (Python checks each file's mtime and size).
.venv/bin/python -m compileall -q -j 0 pyspark_theflash tests/support >/dev/null
# And the PySpark and py4j zips Spark puts first on the path of each Python process it starts (its
# workers, the Python source's planning workers, a spark-submit'ed app's driver): Python compiled
# their modules from source at every import, about 0.7-1 CPU s a process (scripts/compile_pyspark_zips.py).
.venv/bin/python scripts/compile_pyspark_zips.py >/dev/null
say "ready: .venv/bin/theflash"

# The Spark connector jar (jvm-shim/), compiled with javac against pyspark's own jars; rebuilt
# only when its sources changed (the jar carries their digest).
if command -v javac >/dev/null 2>&1; then
  .venv/bin/python -m pyspark_theflash.spark.jar >/dev/null && say "jar: $(.venv/bin/theflash jar)"
else
  say "javac not found: the Spark connector jar is not built (apt-get install openjdk-17-jdk-headless)"
fi

# The test machine's class archive for Spark's JVMs (AppCDS, tests/support/spark_class_archive.py):
# each Spark JVM the tests start maps the classes a driver loads instead of loading them from
# Spark's jars, about a third of a short JVM's CPU. Made once (about 40 s) into ~/.cache/theflash
# for this JDK, these jars and this checkout's path, and linked from .venv; a later set-up of a
# checkout at the same path (CI's clean clones) finds it made.
if archive=$(.venv/bin/python tests/support/spark_class_archive.py install); then
  say "Spark class archive: $archive"
else
  say "the Spark class archive was not made: the tests run without it, slower, and its check fails"
fi

# delta-spark's jars for Spark 4.2 (a plain Spark session reading the published Delta tables,
# docs/delta.md) and hadoop-aws with its AWS SDK bundle (S3A, for the tables published to S3;
# ~700 MB once), fetched from Maven Central into ~/.cache/theflash (THEFLASH_CACHE) and checked
# against their SHA-1s; the tests and README blocks use that cache and never download.
if jars=$(.venv/bin/python -m pyspark_theflash.lake.jars); then
  say "delta-spark and hadoop-aws jars: $(printf '%s\n' "$jars" | wc -l) in $(.venv/bin/python -c 'from pyspark_theflash.lake.jars import cache_dir; print(cache_dir())')"
else
  say "delta-spark / hadoop-aws jars could not be fetched from Maven Central: the delta-spark test skips and the S3 test fails until this runs"
fi

# The S3-compatible server the S3 tests start on loopback (SeaweedFS, docs/delta.md "On shared
# storage"), built once at a pinned version from the Go module proxy into ~/.cache/theflash/seaweedfs.
GO=${GO:-/usr/local/go/bin/go}
if [ -x "$GO" ] || command -v go >/dev/null 2>&1; then
  [ -x "$GO" ] || GO=$(command -v go)
  if weed=$(GO="$GO" .venv/bin/python tests/support/s3_server.py install); then
    say "S3 server: $weed"
  else
    say "SeaweedFS could not be built: the S3 tests will fail until this runs"
  fi
else
  say "Go not found (GO=$GO): SeaweedFS, the S3 tests' server, is not built; install Go and run this again"
fi
