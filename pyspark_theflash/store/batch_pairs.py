"""Prewrite–commit pairs inside one write batch, found with array operations.

In TiDB's common case a transaction's PREWRITE rows and their COMMIT rows reach the replica
close together, usually in the same ``Store.write`` batch. Putting each prewrite into the
region cache only to take it back out a few events later costs a Python step (and objects) per
row. Instead, ``find_pairs`` joins the PREWRITE, COMMIT and ROLLBACK rows of a run of entries
events on (region, key, start_ts) and reports the pairs whose outcome is already decided
inside the run:

* a (region, key, start_ts) touched by exactly two rows of the run, a PREWRITE then a COMMIT:
  the commit stages the prewrite's op and value with its commit_ts;
* exactly two rows, a PREWRITE then a ROLLBACK: both vanish.

Every other row (an open prewrite, the commit of an earlier batch's prewrite, a rollback
alone, a key/start_ts written or committed twice, ...) keeps the row-by-row path through the
region cache, in event order. A pair touches nothing but its own cache entry, so taking it out
of the row-by-row walk changes no other row's outcome — provided nothing else moves or clears
cache entries between the two rows, which is why the store only pairs within runs of events
with no snapshot or admin event (see ``Store._apply_run``). The one trace an earlier batch can
leave on a pair is a cache entry for the same (key, start_ts) (a lock delivered again): the
prewrite would have replaced it and the commit taken it, so the store drops it
(``RegionCaches.drop_each``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash.binlog.rows import RowColumns
from pyspark_theflash.proto import binlog_pb2

_PREWRITE, _COMMIT, _ROLLBACK, _COMMITTED = (binlog_pb2.Row.PREWRITE, binlog_pb2.Row.COMMIT, binlog_pb2.Row.ROLLBACK,
                                             binlog_pb2.Row.COMMITTED)


@dataclass
class EventPairs:
    """One event's share of the pairs of its run."""

    paired: np.ndarray        # bool per row: decided by a pair (skip it in the row-by-row walk)
    prewrite_of: np.ndarray   # int64 per row: for a paired COMMIT, its prewrite's row in the run; else -1

    def any(self) -> bool:
        return bool(self.paired.any())


@dataclass
class RunPairs:
    """The pairs of a run of entries events: per event, which rows are paired; the run's
    PREWRITE values and ops (indexed by ``EventPairs.prewrite_of``)."""

    events: list[EventPairs | None] = field(default_factory=list)  # None: nothing paired in that event
    values: pa.Array | None = None      # binary, every row of the run's joined events
    ops: np.ndarray | None = None       # uint8, idem
    # (region, key, start_ts) of every pair: to drop a same-named entry an earlier batch left in the cache
    pair_regions: np.ndarray | None = None
    pair_keys: pa.Array | None = None
    pair_start_ts: np.ndarray | None = None

    def count(self) -> int:
        return 0 if self.pair_regions is None else len(self.pair_regions)

    def staged_columns(self, rows: RowColumns, ev: EventPairs, which: np.ndarray) -> tuple[pa.Array, pa.Array,
                                                                                       np.ndarray, np.ndarray]:
        """What the paired COMMIT rows ``which`` (row numbers of ``rows``) stage: their keys,
        their prewrites' values and ops, their commit ts."""
        assert self.values is not None and self.ops is not None
        src = ev.prewrite_of[which]
        keys = rows.keys if len(which) == len(rows) else rows.keys.take(pa.array(which))
        values = self.values.take(pa.array(src))
        if values.type != pa.binary():  # the run's values overflowed int32 offsets; one event's never do
            values = values.cast(pa.binary())
        return keys, values, rows.commit_ts[which], self.ops[src]


def find_pairs(region_ids: list[int], events: list[RowColumns | None]) -> RunPairs:
    """The prewrite–commit and prewrite–rollback pairs of a run of entries events, in order
    (``region_ids[i]`` is the region of ``events[i]``; None: an event that is not applied)."""
    out = RunPairs(events=[None] * len(events))
    joined = [i for i, rows in enumerate(events)
              if rows is not None and len(rows) and not rows.all_of_type(_COMMITTED)]
    if not joined:
        return out
    lengths = np.array([len(events[i]) for i in joined], dtype=np.int64)  # type: ignore[arg-type]
    starts = np.zeros(len(joined) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    cols = [events[i] for i in joined]
    types = np.concatenate([c.types for c in cols])  # type: ignore[union-attr]
    # COMMITTED rows never touch the cache: they take no part in the join
    rows = np.flatnonzero(types != _COMMITTED)
    keys = _concat([c.keys for c in cols])  # type: ignore[union-attr]
    start_ts = np.concatenate([c.start_ts for c in cols])  # type: ignore[union-attr]
    regions = np.repeat(np.array([region_ids[i] for i in joined], dtype=np.int64), lengths)
    if len(rows) == len(types):
        first, second = _two_row_groups(regions, keys, start_ts)
    else:
        first, second = _two_row_groups(regions[rows], keys.take(pa.array(rows)), start_ts[rows])
        first, second = rows[first], rows[second]  # back to row numbers in the run
    ok = (types[first] == _PREWRITE) & ((types[second] == _COMMIT) | (types[second] == _ROLLBACK))
    first, second = first[ok], second[ok]
    if not len(first):
        return out
    paired = np.zeros(len(types), dtype=bool)
    paired[first] = True
    paired[second] = True
    prewrite_of = np.full(len(types), -1, dtype=np.int64)
    commits = types[second] == _COMMIT
    prewrite_of[second[commits]] = first[commits]
    for j, i in enumerate(joined):
        lo, hi = int(starts[j]), int(starts[j + 1])
        if paired[lo:hi].any():
            out.events[i] = EventPairs(paired[lo:hi], prewrite_of[lo:hi])
    out.values = _concat([c.values for c in cols])  # type: ignore[union-attr]
    out.ops = np.concatenate([c.ops for c in cols])  # type: ignore[union-attr]
    out.pair_regions = regions[first]
    out.pair_keys = keys.take(pa.array(first))
    out.pair_start_ts = start_ts[first]
    return out


def _two_row_groups(regions: np.ndarray, keys: pa.Array, start_ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups of rows with equal (region, key, start_ts) that hold exactly two rows: the
    positions of their first and second row (in input order)."""
    n = len(regions)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    key_ids = pc.dictionary_encode(keys).indices.to_numpy().astype(np.int64)
    order = np.lexsort((start_ts, key_ids, regions))  # stable: a group's rows stay in input order
    r, k, s = regions[order], key_ids[order], start_ts[order]
    new = np.empty(n, dtype=bool)
    new[0] = True
    new[1:] = (r[1:] != r[:-1]) | (k[1:] != k[:-1]) | (s[1:] != s[:-1])
    group_start = np.flatnonzero(new)
    size = np.diff(np.append(group_start, n))
    two = group_start[size == 2]
    return order[two], order[two + 1]


def _concat(arrays: list[pa.Array]) -> pa.Array:
    if len(arrays) == 1:
        return arrays[0]
    try:
        return pa.concat_arrays(arrays)
    except pa.ArrowInvalid:  # offset overflow
        return pa.concat_arrays([a.cast(pa.large_binary()) for a in arrays])


__all__ = ["EventPairs", "RunPairs", "find_pairs"]
