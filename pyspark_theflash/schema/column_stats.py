"""What a filter may know of a column without reading it: its bounds over some rows.

Parts carry these statistics (store/), and a partition's definition implies them
(schema/partitioning.py): a filter's ``might_match`` (store/predicate.py) decides from them
alone whether any row can match, so pruning parts and partitions is one rule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ColumnStats:
    """Min/max statistics of one column over some rows. ``min``/``max`` are None when
    unknown (or when every value is null)."""

    min: Any
    max: Any
    null_count: int | None
    row_count: int | None
