"""PySpark's Python worker daemon (``pyspark.daemon``), importing PySpark compiled, as installed.

Spark starts a Python worker daemon for each kind of Python work (``spark.python.daemon.module``,
by default ``pyspark.daemon``), and the daemon forks a worker for each task or planning call.
The Python source pays for four of them in a session (finding the source, its schema, its
partitions, its reads). Spark puts ``$SPARK_HOME/python/lib/pyspark.zip`` (and py4j's zip) first
on their ``PYTHONPATH``, and Python compiles a module imported from a zip from its source on
every import: no bytecode is kept there. With PySpark installed by pip, ``SPARK_HOME`` is the
installed ``pyspark`` package, whose modules the install compiled once: the same sources, the
same version, read from the zip and compiled again by each daemon (and by a forked worker, for
what its daemon had not imported). Importing ``pyspark.daemon`` took 0.72 CPU s from the zip and
0.14 s installed; with a read-planning worker's module, 0.84 and 0.37 (issue 54).

This daemon drops those zips from ``sys.path`` when the installed package beside them is of the
same version (read from each one's ``version.py``, nothing imported), and then is
``pyspark.daemon``: the workers it forks inherit the path. Anything else (a Spark distribution's
zip with no installed PySpark, another version installed) keeps Spark's order. ``theflash_session``
sets it for sessions of the Python source (``jvm=False``), whose executors import this package
for their reads already.
"""
from __future__ import annotations

import os
import re
import sys
import zipfile
from importlib.machinery import PathFinder

DAEMON_CONF = "spark.python.daemon.module"
MODULE = "pyspark_theflash.spark.worker_daemon"  # this module: the value for DAEMON_CONF

_VERSION = re.compile(r"""__version__\s*(?::\s*str\s*)?=\s*["']([^"']+)["']""")
# the zips Spark puts first on a worker's path, and the package each one holds
_ZIPPED = (("pyspark.zip", "pyspark"), ("py4j-", "py4j"))


def _version(text: str) -> str | None:
    found = _VERSION.search(text)
    return found.group(1) if found else None


def _zipped_version(path: str, package: str) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            return _version(archive.read(f"{package}/version.py").decode())
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError):
        return None


def _installed_version(package: str, path: list[str]) -> str | None:
    spec = PathFinder.find_spec(package, path)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        try:
            with open(os.path.join(location, "version.py"), encoding="utf-8") as f:
                return _version(f.read())
        except OSError:
            continue
    return None


def installed_instead_of_zips(path: list[str]) -> list[str]:
    """``path`` without Spark's zips of PySpark and py4j where the rest of ``path`` holds the
    same version of that package, installed; each zip otherwise kept where it is."""
    kept = list(path)
    for prefix, package in _ZIPPED:
        zips = [p for p in kept if os.path.basename(p).startswith(prefix) and p.endswith(".zip")]
        if not zips:
            continue
        rest = [p for p in kept if p not in zips]
        installed = _installed_version(package, rest)
        if installed is not None and all(_zipped_version(z, package) == installed for z in zips):
            kept = rest
    return kept


def main() -> None:
    sys.path[:] = installed_instead_of_zips(sys.path)
    from pyspark.daemon import manager

    manager()


if __name__ == "__main__":
    main()
