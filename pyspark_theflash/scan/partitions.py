"""Spark partitions of a planned scan: one per region, small neighbours grouped.

A partition is plain picklable data (no Spark types here): the snapshot ts, the lease that
pins it, and one or more handle ranges each with the part list pinned for it. The Spark layer
wraps it in an ``InputPartition``; an executor reads it with :func:`scan.read.read_partition`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, cast

from pyspark_theflash.scan.bearer_token import BearerToken

HandleRange = tuple["int | None", "int | None"]


@dataclass(frozen=True)
class RangeScan:
    """One contiguous handle range [lo, hi) of the table (one region, or several adjacent
    ones) with the parts pinned for it."""

    region_ids: tuple[int, ...]
    lo: int | None
    hi: int | None
    parts: tuple[Any, ...]          # store.parts.PartRef
    size_bytes: int
    # The physical table the range is of: a partition's id for a partitioned table (its rows
    # live under that id), None for the table's own id.
    table_id: int | None = None


@dataclass(frozen=True)
class ScanPartition:
    """Everything an executor needs to read its share of a snapshot."""

    index: int
    store: str                      # store root
    latch: str | None               # latch address, None = in-process on the store
    table: str                      # db.table, for messages
    table_info: dict[str, Any]      # TiDB table info JSON (the schema version read)
    db: str
    ts: int
    lease_id: int | None
    lease_ttl_s: float
    ranges: tuple[RangeScan, ...]
    columns: tuple[str, ...] | None  # None: all visible columns
    hidden: tuple[str, ...]
    predicate_json: str | None
    batch_rows: int
    size_bytes: int = 0
    engine: str = "native"          # the store's engine (engine.selection): who reads the rows
    # The read's bearer token (scan.bearer_token; options token / token_file), for an executor
    # that reads through a service needing one (a ClickHouse store's owner). None: the
    # executor's THEFLASH_TOKEN. Its repr names where it came from, never the value.
    token: BearerToken | None = None
    # a change read (store/changes.py): the versions with changes_from < commit_ts <= ts; its
    # lease pins changes_from
    changes_from: int | None = None
    changes_net: bool = False

    @property
    def lease_ts(self) -> int:
        return self.changes_from or self.ts

    @property
    def region_ids(self) -> tuple[int, ...]:
        return tuple(r for rng in self.ranges for r in rng.region_ids)


def estimate_bytes(parts: Sequence[Any], lo: int | bytes | None, hi: int | bytes | None) -> int:
    """Bytes of ``parts`` that fall in [lo, hi), prorated by handle span (parts are shared by
    the regions their partition overlaps). Binary (clustered common) handles have no span to
    prorate by: a part overlapping the range counts whole."""
    return _prorated(parts, lo, hi, "bytes")


def estimate_rows(parts: Sequence[Any], lo: int | bytes | None, hi: int | bytes | None) -> int:
    """Rows (versions) of ``parts`` in [lo, hi), prorated as :func:`estimate_bytes` does: an
    upper bound of the rows a read there returns (older versions and deletes are counted)."""
    return _prorated(parts, lo, hi, "rows")


def _prorated(parts: Sequence[Any], lo: int | bytes | None, hi: int | bytes | None, measure: str) -> int:
    total = 0.0
    for p in parts:
        size = int(getattr(p, measure, 0) or 0)
        pmin, pmax = getattr(p, "min_handle", None), getattr(p, "max_handle", None)
        if pmin is None or pmax is None or pmax <= pmin:
            total += size
            continue
        if isinstance(pmin, bytes):
            if (lo is None or pmax >= lo) and (hi is None or pmin < cast(bytes, hi)):
                total += size
            continue
        a = pmin if lo is None else max(pmin, lo)
        b = pmax + 1 if hi is None else min(pmax + 1, hi)
        if b > a:
            total += size * (b - a) / (pmax + 1 - pmin)
    return int(total)


def group_ranges(ranges: Sequence[RangeScan], target_bytes: int) -> list[list[RangeScan]]:
    """Consecutive contiguous ranges (sorted by handle) grouped into groups of about
    ``target_bytes``.

    A range joins the group whose slot, ``[k·target, (k+1)·target)`` of the bytes so far, holds
    its middle byte. So n ranges of nearly equal estimates over ``target = total / k`` make k
    equal groups, where packing each group up to the target would leave a small remainder
    group that runs after the others, alone on a core, as the query's critical path. A group
    can pass the target by at most half of each of its two end ranges."""
    groups: list[list[RangeScan]] = []
    slot = -1
    before = 0  # bytes of the ranges before this one
    for rng in ranges:
        rng_slot = int((before + rng.size_bytes / 2) // max(1, target_bytes))
        before += rng.size_bytes
        if groups:
            last = groups[-1][-1]
            contiguous = last.hi is not None and last.hi == rng.lo and last.table_id == rng.table_id
            if contiguous and rng_slot == slot:
                groups[-1].append(rng)
                continue
        groups.append([rng])
        slot = rng_slot
    return groups


def merge_group(group: Sequence[RangeScan]) -> RangeScan:
    """Adjacent ranges as one range, each part listed once."""
    if len(group) == 1:
        return group[0]
    seen: dict[Any, Any] = {}
    for rng in group:
        for p in rng.parts:
            seen.setdefault(getattr(p, "part_id", id(p)), p)
    return RangeScan(
        region_ids=tuple(r for rng in group for r in rng.region_ids),
        lo=group[0].lo, hi=group[-1].hi, parts=tuple(seen.values()),
        size_bytes=sum(rng.size_bytes for rng in group), table_id=group[0].table_id,
    )
