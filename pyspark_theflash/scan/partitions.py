"""Planning a scan's partitions: one per region, small neighbours grouped, sized by the
bytes and rows of their pinned parts.

The partition itself (``engine.partition``: ``ScanPartition``, ``RangeScan``) is the contract
with the engines that read it, so it lives below them; an executor reads one with
:func:`scan.read.read_partition`.
"""
from __future__ import annotations

from typing import Any, Sequence, cast

import numpy as np

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


_INT64 = (-(1 << 63), (1 << 63) - 1)
_MASK_CELLS = 1 << 24  # ranges x parts compared at once (bytes of the mask)


def parts_by_range(parts: Sequence[Any], ranges: Sequence[tuple[Any, Any]]) -> list[tuple[tuple[Any, ...], int]] | None:
    """For each handle range [lo, hi) (None: unbounded), the parts overlapping it (as
    ``PartRef.overlaps`` says, in the order of ``parts``) and their bytes there
    (:func:`estimate_bytes`), for every range at once: a plan over 10,000 regions asked the
    parts of each region in turn, a Python pass over the table's parts per region. As arrays
    over int handles; None when a handle is not an int64 (a clustered table's key bytes): the
    caller asks per range then."""
    def is_int(v: Any) -> bool:
        return v is None or (type(v) is int and _INT64[0] <= v <= _INT64[1])

    if not all(is_int(p.min_handle) and is_int(p.max_handle) for p in parts) or \
            not all(is_int(lo) and is_int(hi) for lo, hi in ranges):
        return None
    if not parts:
        return [((), 0) for _ in ranges]
    known = np.array([p.min_handle is not None and p.max_handle is not None for p in parts])
    pmin = np.array([p.min_handle if k else 0 for p, k in zip(parts, known.tolist())], np.int64)
    pmax = np.array([p.max_handle if k else 0 for p, k in zip(parts, known.tolist())], np.int64)
    size = np.array([int(getattr(p, "bytes", 0) or 0) for p in parts], np.float64)
    lo_open = np.array([lo is None for lo, _ in ranges])
    hi_open = np.array([hi is None for _, hi in ranges])
    los = np.array([0 if lo is None else lo for lo, _ in ranges], np.int64)
    his = np.array([0 if hi is None else hi for _, hi in ranges], np.int64)
    # a part spanning one handle (or none) counts whole; the others prorated by the span in range
    whole = pmax <= pmin
    pmin_f, pmax_f = pmin.astype(np.float64), pmax.astype(np.float64)
    span = np.where(whole, 1.0, pmax_f + 1 - pmin_f)
    out: list[tuple[tuple[Any, ...], int]] = []
    step = max(1, _MASK_CELLS // len(parts))
    for at in range(0, len(ranges), step):
        lo_o, hi_o = lo_open[at:at + step, None], hi_open[at:at + step, None]
        lo_v, hi_v = los[at:at + step, None], his[at:at + step, None]
        over = known[None, :] & (lo_o | (pmax[None, :] >= lo_v)) & (hi_o | (pmin[None, :] < hi_v))
        a = np.where(lo_o, pmin_f[None, :], np.maximum(pmin_f[None, :], lo_v.astype(np.float64)))
        b = np.where(hi_o, pmax_f[None, :] + 1, np.minimum(pmax_f[None, :] + 1, his[at:at + step, None].astype(np.float64)))
        share = np.where(whole[None, :], size[None, :], size[None, :] * np.maximum(b - a, 0.0) / span[None, :])
        totals = np.where(over, share, 0.0).sum(axis=1)
        rows, cols = np.nonzero(over)  # row-major: each range's parts together, in part order
        ends = np.searchsorted(rows, np.arange(1, len(over) + 1)).tolist()
        met = [parts[j] for j in cols.tolist()]
        begin = 0
        for end, total in zip(ends, totals.tolist()):
            out.append((tuple(met[begin:end]), int(total)))
            begin = end
    return out


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
