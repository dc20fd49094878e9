"""The package type-checks under ``mypy --strict`` (DESIGN.md, "Layering and speed") as
pyproject.toml's ``[tool.mypy]`` says (the whole of ``pyspark_theflash``, the generated proto/
modules' own errors aside; issue 53), every run of the suite, as CI runs it. mypy runs in this process (``mypy.api``), as the unit tier's tests do."""
from __future__ import annotations

import pytest
from mypy import api

from conftest import ROOT


def test_the_package_passes_mypy_strict(pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch) -> None:
    # mypy's incremental cache kept between runs (in pytest's .pytest_cache, as `mypy` keeps its
    # .mypy_cache): a module is checked again when it or what it imports changed, the rest is read
    # from the cache. A fresh cache each run checked the whole package cold, 20-40 s (issue 54).
    # (no pytest cache under -p no:cacheprovider: mypy's own default place then)
    pytest_cache = getattr(pytestconfig, "cache", None)
    cache = pytest_cache.mkdir("mypy-cache") if pytest_cache is not None else ROOT / ".mypy_cache"
    monkeypatch.chdir(ROOT)  # the configuration and the files it names are the checkout's
    stdout, stderr, status = api.run(["--cache-dir", str(cache)])
    assert status == 0, f"mypy (pyproject.toml [tool.mypy]) found:\n{stdout[-8000:]}{stderr[-2000:]}"
    assert "Success" in stdout, stdout


def test_the_compiled_feed_decoders_stub_says_what_the_built_module_is(monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """``_native/cdc_wire.pyi`` gives capture the C module's types; mypy's stubtest compares it
    with the module as built (names, signatures, what is final), so the two cannot drift apart."""
    from mypy import stubtest

    monkeypatch.chdir(ROOT)
    status = stubtest.test_stubs(stubtest.parse_options(["pyspark_theflash._native.cdc_wire"]))
    out = capsys.readouterr().out
    assert status == 0, f"stubtest found:\n{out[-4000:]}"
