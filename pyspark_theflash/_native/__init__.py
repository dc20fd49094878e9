"""Compiled pieces, built by the install step (``scripts/bootstrap.sh``: ``pip install -e .``).

``cdc_wire``: cdcpb ``ChangeDataEvent`` wire bytes -> columns in one pass (capture/feed_columns.py).
``row_ids``: the column ids TiDB rows carry, per table, in one pass (writer/schema_guard.py).
"""
from __future__ import annotations

from types import ModuleType


class NativeModuleMissingError(ImportError):
    """A compiled module of the package was not built in this checkout."""


def load(name: str) -> ModuleType:
    import importlib

    try:
        return importlib.import_module(f"pyspark_theflash._native.{name}")
    except ImportError as exc:
        raise NativeModuleMissingError(
            f"pyspark_theflash._native.{name} is not built ({exc}); it is compiled by the install step: run "
            "scripts/bootstrap.sh (or `.venv/bin/pip install -e . --config-settings editable_mode=compat`), "
            "which needs gcc and Python's headers (apt-get install gcc python3-dev)") from exc
