"""The package type-checks under ``mypy --strict`` (DESIGN.md, "Layering and speed") as
pyproject.toml's ``[tool.mypy]`` says (the whole of ``pyspark_theflash``, the generated proto/
modules' own errors aside; issue 53), every run of the suite, as CI runs it.

mypy runs in a child process, as ``mypy`` on the command line does. In the test process it left
2.2 million objects alive after it returned (its build's ASTs and types): each full collection
of that process's cyclic collector then took 2-3 s, for the rest of the run, and the two pytest
makes at exit ran past xdist's 5 s for a worker to finish, which then sent it SIGINT (the
``KeyboardInterrupt`` at the end of a ``-n 3`` run; issue 54)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_the_package_passes_mypy_strict(pytestconfig: pytest.Config) -> None:
    # mypy's incremental cache kept between runs (in pytest's .pytest_cache, as `mypy` keeps its
    # .mypy_cache): a module is checked again when it or what it imports changed, the rest is read
    # from the cache. A fresh cache each run checked the whole package cold, 20-40 s (issue 54).
    # (no pytest cache under -p no:cacheprovider: mypy's own default place then)
    pytest_cache = getattr(pytestconfig, "cache", None)
    cache = pytest_cache.mkdir("mypy-cache") if pytest_cache is not None else ROOT / ".mypy_cache"
    done = _mypy("--cache-dir", str(cache))  # the configuration and the files it names are the checkout's
    assert done.returncode == 0, f"mypy (pyproject.toml [tool.mypy]) found:\n{done.stdout[-8000:]}{done.stderr[-2000:]}"
    assert "Success" in done.stdout, done.stdout


def test_the_compiled_feed_decoders_stub_says_what_the_built_module_is(tmp_path: Path) -> None:
    """``_native/cdc_wire.pyi`` gives capture the C module's types; mypy's stubtest compares it
    with the module as built (names, signatures, what is final), so the two cannot drift apart.

    stubtest builds the stub with no cache, each run; what the stub imports (numpy's stubs) is not
    followed: it was 10 of stubtest's 14 CPU s (issue 54), and stubtest compares the stub's names,
    arguments and defaults with the module, never what numpy's types are. The stub's types are
    checked, numpy's stubs followed, by the package's mypy run above (capture imports the stub)."""
    config = tmp_path / "stubtest.ini"
    config.write_text("[mypy]\nfollow_imports = skip\n")
    done = subprocess.run([sys.executable, "-m", "mypy.stubtest", "--mypy-config-file", str(config),
                           "pyspark_theflash._native.cdc_wire"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"stubtest found:\n{done.stdout[-4000:]}{done.stderr[-2000:]}"
