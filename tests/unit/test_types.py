"""The package type-checks under ``mypy --strict`` (DESIGN.md, "Layering and speed") where
pyproject.toml's ``[tool.mypy]`` says so (scan/, engine/, txn/, codec/, lake/, schema/,
service/, writer/, store/, capture/, upstream/ today; the rest follows, issue 53), every run of the
suite, as CI runs it. mypy runs in this process (``mypy.api``), as the unit tier's tests do."""
from __future__ import annotations

import pytest
from mypy import api

from conftest import ROOT


def test_the_read_side_passes_mypy_strict(tmp_path_factory: pytest.TempPathFactory,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path_factory.mktemp("mypy-cache")
    monkeypatch.chdir(ROOT)  # the configuration and the files it names are the checkout's
    stdout, stderr, status = api.run(["--cache-dir", str(cache)])
    assert status == 0, f"mypy (pyproject.toml [tool.mypy]) found:\n{stdout[-8000:]}{stderr[-2000:]}"
    assert "Success" in stdout, stdout
