"""The packages whose names are imported when first named (pyspark_theflash/lazy_exports.py)
export exactly what they list, each name the object of its module, and a submodule by its name."""
from __future__ import annotations

import importlib

import pytest

LAZY_PACKAGES = ["pyspark_theflash.codec", "pyspark_theflash.store", "pyspark_theflash.scan", "pyspark_theflash.spark",
                 "pyspark_theflash.binlog", "pyspark_theflash.upstream", "pyspark_theflash.upstream_client"]


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_every_listed_name_resolves_to_its_modules_object_and_an_unknown_one_is_an_attribute_error(name: str) -> None:
    package = importlib.import_module(name)
    for exported in package.__all__:
        value = getattr(package, exported)
        origin = getattr(value, "__module__", None)
        if origin is not None and origin.startswith(name + "."):  # (constants have none)
            assert getattr(importlib.import_module(origin), exported) is value, exported
    assert set(package.__all__) <= set(vars(package)), "a resolved name is kept in the package"
    with pytest.raises(AttributeError, match="no_such_name"):
        getattr(package, "no_such_name")


def test_a_submodule_named_on_its_package_resolves_and_the_package_keeps_it() -> None:
    codec = importlib.import_module("pyspark_theflash.codec")
    assert codec.keys is importlib.import_module("pyspark_theflash.codec.keys")
    assert codec.keys.encode_record_key is codec.encode_record_key
