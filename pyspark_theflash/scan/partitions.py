"""Planning a scan's partitions: one per region, small neighbours grouped, sized by the
bytes and rows of their pinned parts.

The partition itself (``engine.partition``: ``ScanPartition``, ``RangeScan``) is the contract
with the engines that read it, so it lives below them; an executor reads one with
:func:`scan.read.read_partition`.
"""
from __future__ import annotations

from typing import Any, Sequence, cast

from pyspark_theflash.engine.partition import RangeScan


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
