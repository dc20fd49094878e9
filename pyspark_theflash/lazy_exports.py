"""A package's names imported when first named (PEP 562), so that importing one small module
of a package (``codec.tso``, ``store.keyspace``, ``scan.options``) does not load all of it.

Spark's Python workers import the data source in every planning and reading process, and the
CLI's child processes import the package on every start: an eager ``store/__init__`` loaded
compaction, the parts reader, pyarrow.compute and gRPC for a module that needed a dataclass."""
from __future__ import annotations

import importlib
import sys
from typing import Callable, Mapping, Sequence


def lazy_getattr(package: str, exports: Mapping[str, Sequence[str]]) -> Callable[[str], object]:
    """The ``__getattr__`` of ``package``: a name ``exports`` lists (module -> the names it
    exports through the package) is imported from its module when first named and kept in the
    package; another name is the package's submodule of that name, if there is one."""
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> object:
        module = module_of.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module), name)
        else:
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
