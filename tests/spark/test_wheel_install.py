"""The package as a user installs it: a wheel, beside pyspark in one site-packages (not the
editable install the suite runs from). PySpark's simplified traceback keeps the frames from the
first one outside pyspark's directory, a prefix test that ``site-packages/pyspark_theflash``
passes; tests/spark/test_spark_read.py simulates that layout, this test builds it (issue 52)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SCRIPT = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
for options in ({"store": "/nowhere/flash"}, {"store": "/nowhere/flash", "isolaton": "RC"}):
    try:
        spark.read.format("theflash").options(**options).load("t.x").collect()
    except Exception as exc:
        print(str(exc))
        print("=====")
spark.stop()
"""


def _wheel_beside_pyspark(tmp: Path) -> Path:
    """A venv whose site-packages holds the suite's packages (linked) and this package unpacked
    from a wheel built here, without the editable install's path: its interpreter."""
    src, wheels = tmp / "src", tmp / "wheels"  # built from a copy: the build leaves build/ where it runs
    shutil.copytree(ROOT / "pyspark_theflash", src / "pyspark_theflash",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.jar"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(src)], check=True, capture_output=True, timeout=600)
    wheel, = wheels.glob("pyspark_theflash-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    ours = Path(sysconfig.get_paths()["purelib"])
    site = venv / ours.relative_to(Path(sys.prefix))
    for entry in ours.iterdir():
        if not entry.name.startswith(("pyspark_theflash", "__editable__")) and entry.suffix != ".pth":
            (site / entry.name).symlink_to(entry)
    with zipfile.ZipFile(wheel) as whl:
        whl.extractall(site)
    return venv / "bin" / "python"


def test_a_python_source_error_from_a_wheel_install_is_sparks_condition_and_the_message(
        tmp_path: Path) -> None:
    python = _wheel_beside_pyspark(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    env["PYSPARK_PYTHON"] = str(python)
    where = subprocess.run([str(python), "-c", "import pyspark, pyspark_theflash; print(pyspark.__file__); "
                            "print(pyspark_theflash.__file__)"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    assert [Path(p).parent.parent for p in where] == [Path(where[0]).parent.parent] * 2, where  # one site-packages
    assert not where[1].startswith(str(ROOT)), where
    run = subprocess.run([str(python), "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    errors = [[line for line in block.splitlines() if line.strip()] for block in run.stdout.split("=====")[:2]]
    for lines, says in zip(errors, ("StoreNotFoundError: no store at /nowhere/flash",
                                    "ScanOptionError: unknown option 'isolaton' (did you mean 'isolation'?)")):
        assert lines[0].startswith("[PYTHON_DATA_SOURCE_ERROR] "), lines
        assert not [line for line in lines if "Traceback" in line or line.strip().startswith('File "')], lines
        assert not [line for line in lines if "pyspark_theflash/" in line], lines  # no path of the package
        assert len(lines) <= 3 and any(says in line for line in lines), lines
