"""pyarrow's probe for pandas, answered "not here" in the product's own processes.

The first time pyarrow converts Python objects (``pa.array`` of a list, ``pa.table`` of a
dict, ``RecordBatch.from_pylist``), it asks whether the object is a pandas Series or Index,
and to ask, it imports pandas if pandas is installed: about 0.45 CPU seconds, twice what
importing pyarrow itself costs (measured: ``import pyarrow, pandas`` 0.60-0.68 s of CPU,
``import pyarrow`` 0.23-0.33 s). No command of ``theflash`` but the demo uses pandas, and the
processes that pay it are the ones started most often: every ``capture run``, ``writer run``,
``serve`` and mini cluster (a test run starts about 200; issue 54).

``skip_pandas_probe_when_pyarrow_loads()`` answers that probe once, when pyarrow is first
imported, with pandas hidden from the import system for the moment of the probe: pyarrow then
treats Python objects as the sequences they are, without importing pandas. A process that does
use pandas later is not hurt: a conversion that needs pandas (``Table.to_pandas()``) imports it
then, as pyarrow tries the import again whenever pandas is asked for. What changes is only that
a pandas object handed to ``pa.array`` before any such conversion is read as a plain sequence,
which is why the demo (PySpark in process) and library users (a Spark driver) never install it.
A command that imports no pyarrow (``writer status``, ``capture status``) pays nothing.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Sequence


def skip_pandas_probe_when_pyarrow_loads() -> None:
    """Answer pyarrow's pandas probe without pandas as soon as pyarrow is imported (now, if it
    already is); nothing when pandas is already imported."""
    if "pandas" in sys.modules:
        return
    if "pyarrow" in sys.modules:
        _answer_probe(sys.modules["pyarrow"])
    elif not any(isinstance(finder, _PyarrowFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PyarrowFinder())


def _answer_probe(pyarrow: ModuleType) -> None:
    if "pandas" in sys.modules:
        return
    hide = _HidePandas()
    sys.meta_path.insert(0, hide)
    try:
        pyarrow.array([0])  # the probe runs once per process: pandas is now "not installed" to it
    finally:
        sys.meta_path.remove(hide)


class _HidePandas(importlib.abc.MetaPathFinder):
    """``import pandas`` fails as it does where pandas is not installed. (Not ``sys.modules["pandas"]
    = None``: pyarrow's compiled import takes that None for the module.)"""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == "pandas":
            raise ModuleNotFoundError("No module named 'pandas'", name="pandas")
        return None


class _PyarrowFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: on the import of ``pyarrow`` it takes itself off ``sys.meta_path``
    and wraps the real loader so that the probe is answered once pyarrow's module has run."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "pyarrow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _ProbeAfterLoad(spec.loader)
        return spec


class _ProbeAfterLoad(importlib.abc.Loader):
    """pyarrow's own loader, answering the probe after it has run the module; anything else
    (``get_resource_reader``, ``is_package``, ...) is the wrapped loader's."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> object:
        return getattr(self._loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _answer_probe(module)
