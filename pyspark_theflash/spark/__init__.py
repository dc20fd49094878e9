"""The ``theflash`` Spark data source and its session helpers (only translation: planning
lives in ``scan/``, bytes in ``codec/``, MVCC in ``store/``)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark_theflash.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from pyspark_theflash.spark.pin import pinned_snapshot
    from pyspark_theflash.spark.session import theflash_session

# Each name imported from its module when first named (pyspark_theflash/lazy_exports.py).
if not TYPE_CHECKING:
    __getattr__ = lazy_getattr(__name__, {
        "pyspark_theflash.spark.pin": ("pinned_snapshot",),
        "pyspark_theflash.spark.session": ("theflash_session",),
    })

__all__ = ["pinned_snapshot", "theflash_session"]
