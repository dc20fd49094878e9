"""The Python worker daemon of the Python source's sessions (pyspark_theflash/spark/worker_daemon.py)
drops Spark's zips of PySpark and py4j from a worker's path only where the same version is
installed beside them; anything else keeps Spark's order. Real files: zips and packages in
tmp_path."""
from __future__ import annotations

import zipfile
from pathlib import Path

from pyspark_theflash.spark.worker_daemon import installed_instead_of_zips

PYSPARK_VERSION = "__version__: str = '{}'\n"  # as pyspark/version.py says it
PY4J_VERSION = "__version__ = '{}'\n"


def installed(root: Path, package: str, text: str) -> str:
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    (root / package / "version.py").write_text(text)
    return str(root)


def zipped(path: Path, package: str, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{package}/__init__.py", "")
        archive.writestr(f"{package}/version.py", text)
    return str(path)


def spark_path(tmp_path: Path, zip_pyspark: str, zip_py4j: str) -> list[str]:
    lib = tmp_path / "spark" / "python" / "lib"
    return [zipped(lib / "pyspark.zip", "pyspark", PYSPARK_VERSION.format(zip_pyspark)),
            zipped(lib / "py4j-0.10.9.9-src.zip", "py4j", PY4J_VERSION.format(zip_py4j)),
            str(tmp_path / "stdlib" / "python311.zip"), str(tmp_path / "stdlib")]


def test_the_zips_go_where_the_same_versions_are_installed(tmp_path: Path) -> None:
    path = spark_path(tmp_path, "4.2.1", "0.10.9.9")
    site = installed(tmp_path / "site", "pyspark", PYSPARK_VERSION.format("4.2.1"))
    installed(tmp_path / "site", "py4j", PY4J_VERSION.format("0.10.9.9"))

    assert installed_instead_of_zips([*path, site]) == [*path[2:], site]  # the stdlib's zip stays


def test_a_zip_stays_where_another_version_or_none_is_installed(tmp_path: Path) -> None:
    path = spark_path(tmp_path, "4.2.1", "0.10.9.9")
    site = installed(tmp_path / "site", "pyspark", PYSPARK_VERSION.format("4.1.0"))  # another PySpark; no py4j

    assert installed_instead_of_zips([*path, site]) == [*path, site]
    assert installed_instead_of_zips(path) == path  # nothing installed: Spark's order


def test_each_zip_is_judged_by_its_own_package(tmp_path: Path) -> None:
    path = spark_path(tmp_path, "4.2.1", "0.10.9.8")  # py4j's zip older than the installed py4j
    site = installed(tmp_path / "site", "pyspark", PYSPARK_VERSION.format("4.2.1"))
    installed(tmp_path / "site", "py4j", PY4J_VERSION.format("0.10.9.9"))

    assert installed_instead_of_zips([*path, site]) == [*path[1:], site]


def test_a_zip_without_a_version_stays(tmp_path: Path) -> None:
    path = spark_path(tmp_path, "4.2.1", "0.10.9.9")
    with zipfile.ZipFile(path[0], "w") as archive:  # a pyspark.zip with no version.py
        archive.writestr("pyspark/__init__.py", "")
    site = installed(tmp_path / "site", "pyspark", PYSPARK_VERSION.format("4.2.1"))

    assert installed_instead_of_zips([*path, site])[0] == path[0]
