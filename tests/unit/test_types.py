"""The read side type-checks under ``mypy --strict`` (DESIGN.md, "Layering and speed"): the
packages and modules named in pyproject.toml's ``[tool.mypy]`` (scan/, engine/, txn/, codec/,
schema/row_columns.py), every run of the suite, as CI runs it."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_the_read_side_passes_mypy_strict(tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path_factory.mktemp("mypy-cache")
    proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mypy (pyproject.toml [tool.mypy]) found:\n{proc.stdout[-8000:]}{proc.stderr[-2000:]}"
    assert "Success" in proc.stdout, proc.stdout
