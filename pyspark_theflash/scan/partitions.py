"""Planning a scan's partitions: one per region, small neighbours grouped, sized by the
bytes and rows of their pinned parts.

The partition itself (``engine.partition``: ``ScanPartition``, ``RangeScan``) is the contract
with the engines that read it, so it lives below them; an executor reads one with
:func:`scan.read.read_partition`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence, cast

import numpy as np

from pyspark_theflash.engine.partition import RangeScan

if TYPE_CHECKING:
    from pyspark_theflash.scan.options import HandleBound
    from pyspark_theflash.store.part_ref import PartRef
    from pyspark_theflash.store.views import TableRegionColumns


def estimate_bytes(parts: Sequence[PartRef], lo: int | bytes | None, hi: int | bytes | None) -> int:
    """Bytes of ``parts`` that fall in [lo, hi), prorated by handle span (parts are shared by
    the regions their partition overlaps). Binary (clustered common) handles have no span to
    prorate by: a part overlapping the range counts whole."""
    return _prorated(parts, lo, hi, "bytes")


def estimate_rows(parts: Sequence[PartRef], lo: int | bytes | None, hi: int | bytes | None) -> int:
    """Rows (versions) of ``parts`` in [lo, hi), prorated as :func:`estimate_bytes` does: an
    upper bound of the rows a read there returns (older versions and deletes are counted)."""
    return _prorated(parts, lo, hi, "rows")


def _prorated(parts: Sequence[PartRef], lo: int | bytes | None, hi: int | bytes | None, measure: str) -> int:
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


def parts_by_range(parts: Sequence[PartRef], ranges: Sequence[tuple[HandleBound, HandleBound]]) -> list[tuple[tuple[PartRef, ...], int]] | None:
    """For each handle range [lo, hi) (None: unbounded), the parts overlapping it (as
    ``PartRef.overlaps`` says, in the order of ``parts``) and their bytes there
    (:func:`estimate_bytes`), for every range at once: a plan over 10,000 regions asked the
    parts of each region in turn, a Python pass over the table's parts per region. As arrays
    over int handles; None when a handle is not an int64 (a clustered table's key bytes): the
    caller asks per range then."""
    if not all(_is_int(lo) and _is_int(hi) for lo, hi in ranges):
        return None
    lo_open = np.array([lo is None for lo, _ in ranges], bool)
    hi_open = np.array([hi is None for _, hi in ranges], bool)
    los = np.array([0 if lo is None else lo for lo, _ in ranges], np.int64)
    his = np.array([0 if hi is None else hi for _, hi in ranges], np.int64)
    found = span_parts(parts, Spans(np.zeros(len(ranges), np.int64), los, his, lo_open, hi_open))
    if found is None:
        return None
    met = [parts[j] for j in found.part_at.tolist()]
    bounds = found.starts.tolist()
    return [(tuple(met[bounds[k]:bounds[k + 1]]), size) for k, size in enumerate(found.size.tolist())]


def _is_int(v: object) -> bool:
    return v is None or (type(v) is int and _INT64[0] <= v <= _INT64[1])


@dataclass(frozen=True)
class Spans:
    """Handle ranges [lo, hi) of one table's regions in handle order, as columns: each region's
    range, or its pieces inside a read's ``handle_ranges`` (``region_spans``)."""

    region_ids: np.ndarray  # int64
    lo: np.ndarray          # int64 (0 where lo_open)
    hi: np.ndarray          # int64 (0 where hi_open)
    lo_open: np.ndarray     # bool: unbounded below
    hi_open: np.ndarray     # bool: unbounded above

    def __len__(self) -> int:
        return len(self.lo)

    def bound(self, k: int) -> tuple[int | None, int | None]:
        return (None if self.lo_open[k] else int(self.lo[k]), None if self.hi_open[k] else int(self.hi[k]))


def region_spans(regions: TableRegionColumns, allowed: Sequence[tuple[HandleBound, HandleBound]] | None) -> Spans | None:
    """The regions' handle ranges, each cut to ``allowed`` (None: whole), as the planner's
    ``_restricted`` does region by region: a region's pieces in the order of ``allowed``, empty
    pieces left out. None when a bound of ``allowed`` is not an int64 (the caller cuts them one
    by one then)."""
    if allowed is None:
        return Spans(regions.ids, regions.lo, regions.hi, regions.lo_open, regions.hi_open)
    if not all(_is_int(lo) and _is_int(hi) for lo, hi in allowed):
        return None
    a_lo_open = np.array([lo is None for lo, _ in allowed], bool)[None, :]
    a_hi_open = np.array([hi is None for _, hi in allowed], bool)[None, :]
    a_lo = np.array([0 if lo is None else lo for lo, _ in allowed], np.int64)[None, :]
    a_hi = np.array([0 if hi is None else hi for _, hi in allowed], np.int64)[None, :]
    r_lo, r_hi = regions.lo[:, None], regions.hi[:, None]
    r_lo_open, r_hi_open = regions.lo_open[:, None], regions.hi_open[:, None]
    # (store.views.intersect: the greater lower bound, the lesser upper one; None is unbounded)
    lo = np.where(a_lo_open, r_lo, np.where(r_lo_open, a_lo, np.maximum(r_lo, a_lo)))
    hi = np.where(a_hi_open, r_hi, np.where(r_hi_open, a_hi, np.minimum(r_hi, a_hi)))
    lo_open, hi_open = r_lo_open & a_lo_open, r_hi_open & a_hi_open
    keep = (lo_open | hi_open | (lo < hi)).ravel()  # row-major: a region's pieces together
    ids = np.repeat(regions.ids, len(allowed))
    return Spans(ids[keep], lo.ravel()[keep], hi.ravel()[keep], lo_open.ravel()[keep], hi_open.ravel()[keep])


@dataclass(frozen=True)
class SpanParts:
    """The parts over each span (in the order of the table's parts) and their bytes there
    (:func:`estimate_bytes`), as columns: span k's parts are ``part_at[starts[k]:starts[k + 1]]``,
    positions in the parts list."""

    size: np.ndarray     # int64
    starts: np.ndarray   # int64, one more than the spans
    part_at: np.ndarray  # int64


def span_parts(parts: Sequence[PartRef], spans: Spans) -> SpanParts | None:
    """``parts_by_range`` of every span as columns; None when a part's handle is not an int64."""
    if not all(_is_int(p.min_handle) and _is_int(p.max_handle) for p in parts):
        return None
    n = len(spans)
    if not parts or n == 0:
        return SpanParts(np.zeros(n, np.int64), np.zeros(n + 1, np.int64), np.zeros(0, np.int64))
    known = np.array([p.min_handle is not None and p.max_handle is not None for p in parts])
    pmin = np.array([p.min_handle if k else 0 for p, k in zip(parts, known.tolist())], np.int64)
    pmax = np.array([p.max_handle if k else 0 for p, k in zip(parts, known.tolist())], np.int64)
    size = np.array([int(getattr(p, "bytes", 0) or 0) for p in parts], np.float64)
    lo_open, hi_open, los, his = spans.lo_open, spans.hi_open, spans.lo, spans.hi
    # a part spanning one handle (or none) counts whole; the others prorated by the span in range
    whole = pmax <= pmin
    pmin_f, pmax_f = pmin.astype(np.float64), pmax.astype(np.float64)
    span = np.where(whole, 1.0, pmax_f + 1 - pmin_f)
    sizes: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    part_at: list[np.ndarray] = []
    step = max(1, _MASK_CELLS // len(parts))
    for at in range(0, n, step):
        lo_o, hi_o = lo_open[at:at + step, None], hi_open[at:at + step, None]
        lo_v, hi_v = los[at:at + step, None], his[at:at + step, None]
        over = known[None, :] & (lo_o | (pmax[None, :] >= lo_v)) & (hi_o | (pmin[None, :] < hi_v))
        a = np.where(lo_o, pmin_f[None, :], np.maximum(pmin_f[None, :], lo_v.astype(np.float64)))
        b = np.where(hi_o, pmax_f[None, :] + 1, np.minimum(pmax_f[None, :] + 1, hi_v.astype(np.float64)))
        share = np.where(whole[None, :], size[None, :], size[None, :] * np.maximum(b - a, 0.0) / span[None, :])
        sizes.append(np.where(over, share, 0.0).sum(axis=1).astype(np.int64))  # (int(): toward zero, >= 0)
        counts.append(over.sum(axis=1))
        part_at.append(np.nonzero(over)[1])  # row-major: each span's parts together, in part order
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(np.concatenate(counts), out=starts[1:])
    return SpanParts(np.concatenate(sizes), starts, np.concatenate(part_at).astype(np.int64))


@dataclass(frozen=True)
class TableSpans:
    """One physical table's spans to read: its id as a range names it (``RangeScan.table_id``:
    None for the table's own), its parts, the parts over each span, and which spans are kept
    (the filter may prune some)."""

    table_id: int | None
    spans: Spans
    parts: Sequence[PartRef]
    found: SpanParts
    keep: np.ndarray  # bool


def grouped_range_scans(tables: Sequence[TableSpans], target_bytes: int) -> list[RangeScan]:
    """``merge_group`` of each of ``group_ranges``' groups over the kept spans of ``tables`` (in
    order), as columns: the range of each group is made, not one per region. Equal to building a
    ``RangeScan`` per span and grouping them (the unit tests check it against that)."""
    rids, los, his, lo_opens, hi_opens, sizes, codes, part_ats, counts = [], [], [], [], [], [], [], [], []
    all_parts: list[PartRef] = []
    for number, t in enumerate(tables):
        keep = t.keep
        rids.append(t.spans.region_ids[keep])
        los.append(t.spans.lo[keep])
        his.append(t.spans.hi[keep])
        lo_opens.append(t.spans.lo_open[keep])
        hi_opens.append(t.spans.hi_open[keep])
        sizes.append(t.found.size[keep])
        codes.append(np.full(int(keep.sum()), number, np.int64))
        count = np.diff(t.found.starts)
        part_ats.append(t.found.part_at[np.repeat(keep, count)] + len(all_parts))
        counts.append(count[keep])
        all_parts.extend(t.parts)
    rid, lo, hi = np.concatenate(rids), np.concatenate(los), np.concatenate(his)
    lo_open, hi_open = np.concatenate(lo_opens), np.concatenate(hi_opens)
    size, code, part_at = np.concatenate(sizes), np.concatenate(codes), np.concatenate(part_ats)
    n = len(rid)
    if n == 0:
        return []
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(np.concatenate(counts), out=starts[1:])
    # group_ranges: a range joins the group before it when it continues that group's last range
    # (same table, its lo that range's hi) and its middle byte falls in the same slot of target
    before = np.zeros(n, np.int64)
    np.cumsum(size[:-1], out=before[1:])
    slot = np.floor_divide(before.astype(np.float64) + size.astype(np.float64) / 2, max(1, target_bytes))
    contiguous = ~hi_open[:-1] & ~lo_open[1:] & (hi[:-1] == lo[1:]) & (code[:-1] == code[1:])
    first = np.flatnonzero(np.concatenate(([True], ~contiguous | (slot[1:] != slot[:-1])))).tolist()
    out = []
    for a, b in zip(first, first[1:] + [n]):
        met = part_at[starts[a]:starts[b]]
        if b - a > 1:  # merge_group: each part once, where it first comes
            _, once = np.unique(met, return_index=True)
            met = met[np.sort(once)]
        table = tables[int(code[a])]
        out.append(RangeScan(
            region_ids=tuple(rid[a:b].tolist()), lo=None if lo_open[a] else int(lo[a]),
            hi=None if hi_open[b - 1] else int(hi[b - 1]), parts=tuple(all_parts[j] for j in met.tolist()),
            size_bytes=int(size[a:b].sum()), table_id=table.table_id))
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
    seen: dict[int, PartRef] = {}
    for rng in group:
        for p in rng.parts:
            seen.setdefault(getattr(p, "part_id", id(p)), p)
    return RangeScan(
        region_ids=tuple(r for rng in group for r in rng.region_ids),
        lo=group[0].lo, hi=group[-1].hi, parts=tuple(seen.values()),
        size_bytes=sum(rng.size_bytes for rng in group), table_id=group[0].table_id,
    )
