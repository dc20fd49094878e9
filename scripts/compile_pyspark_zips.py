"""Bytecode for the PySpark and py4j zips Spark puts first on its Python processes' path.

Spark starts every Python process of a session with ``$SPARK_HOME/python/lib/pyspark.zip`` and
py4j's zip first on ``PYTHONPATH``: the Python workers of the executors (``pyspark.daemon``), the
workers that plan a Python data source's reads (lookup, create, plan, filter pushdown: Spark
starts those with ``pyspark.daemon`` whatever ``spark.python.daemon.module`` says) and the
driver of a ``spark-submit app.py``. Python never writes bytecode into a zip, and pip's install
compiles only the installed package, not the zips inside it, so each of those processes
compiled PySpark's modules from source as it imported them: importing a planning worker's
module (``pyspark.sql.worker.create_data_source``) and ``pyspark.daemon`` took 0.94-1.29 CPU s
from the zip as installed and 0.27-0.30 s with bytecode in it (issue 54).

This rewrites each zip with a ``.pyc`` beside every ``.py`` (the layout ``zipimport`` reads),
checked-hash bytecode: ``zipimport`` uses it only while its hash matches the source beside it,
so the modules, their source and their tracebacks are the zip's own. The new zip, whose comment
says it was compiled, replaces the old once it is whole; a zip so marked is left as it is. Run by the set-up command for this checkout's
``.venv`` (scripts/bootstrap.sh); prints each zip it compiled.

    python scripts/compile_pyspark_zips.py [SPARK_HOME]
"""
from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import zipfile
from importlib._bootstrap_external import _code_to_hash_pyc  # type: ignore[attr-defined]
from pathlib import Path

# the zips Spark's PythonUtils.sparkPythonPath names under $SPARK_HOME/python/lib
ZIP_PATTERNS = ("pyspark.zip", "py4j-*-src.zip")
# the comment of a zip this compiled (a module that does not compile has no .pyc: no count tells)
COMPILED = b"compiled: checked-hash bytecode beside each module (scripts/compile_pyspark_zips.py)"


def spark_python_zips(spark_home: Path) -> list[Path]:
    lib = spark_home / "python" / "lib"
    return sorted(p for pattern in ZIP_PATTERNS for p in lib.glob(pattern))


def has_bytecode(path: Path) -> bool:
    """Whether ``compile_zip`` made this zip."""
    with zipfile.ZipFile(path) as archive:
        return archive.comment == COMPILED


def compile_zip(path: Path) -> int:
    """Rewrites ``path`` with checked-hash bytecode beside each ``.py`` that compiles; returns how
    many were added. The entries already there are copied as they are (names, times,
    compression); the new zip replaces the old only once it is whole."""
    added = 0
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(path) as zin, zipfile.ZipFile(tmp, "w") as zout:
            names = set(zin.namelist())
            for info in zin.infolist():
                data = zin.read(info)
                zout.writestr(info, data)
                if not info.filename.endswith(".py") or f"{info.filename}c" in names:
                    continue
                # the file name zipimport compiles the source under (Spark's SPARK_HOME is the real
                # path, pyspark's find_spark_home): tracebacks and PySpark's filtering of them
                # (pyspark.util, frames under pyspark.__file__'s folder) see the same frames
                where = os.path.join(os.path.realpath(path), *info.filename.split("/"))
                try:
                    code = compile(data, where, "exec", dont_inherit=True)
                except (SyntaxError, ValueError):  # left to its import, as compileall leaves it
                    continue
                pyc = zipfile.ZipInfo(f"{info.filename}c", info.date_time)
                pyc.compress_type = zipfile.ZIP_DEFLATED
                pyc.external_attr = info.external_attr
                zout.writestr(pyc, bytes(_code_to_hash_pyc(code, importlib.util.source_hash(data), checked=True)))
                added += 1
            zout.comment = COMPILED
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return added


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        spark_home = Path(argv[1])
    else:  # Spark's home for a pip-installed PySpark: the package's real path
        from pyspark_theflash.spark.jar import spark_jars_dir

        spark_home = spark_jars_dir().parent
    zips = spark_python_zips(spark_home)
    if not zips:
        print(f"compile_pyspark_zips: no pyspark.zip under {spark_home}/python/lib", file=sys.stderr)
        return 1
    for path in zips:
        if not has_bytecode(path):
            print(f"{path}: {compile_zip(path)} modules compiled")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
