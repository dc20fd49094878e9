"""What Spark's data source auto-discovery needs from the installed package."""
from __future__ import annotations

import subprocess
import sys


def test_package_is_listed_by_pkgutil_from_any_working_directory(tmp_path) -> None:
    # Spark's Python workers find `format("theflash")` by listing pyspark_* modules with
    # pkgutil.iter_modules(); an install they cannot list disables auto-discovery.
    code = ("import pkgutil, pyspark_theflash; "
            "print(sorted(m.name for m in pkgutil.iter_modules() if m.name.startswith('pyspark_')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert "'pyspark_theflash'" in out.stdout


def test_default_source_is_the_theflash_data_source(tmp_path) -> None:
    code = ("from pyspark.sql.datasource import DataSource; import pyspark_theflash as p; "
            "assert issubclass(p.DefaultSource, DataSource); print(p.DefaultSource.name())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "theflash"
