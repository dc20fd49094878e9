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

How: the upstream's usual run — each transaction's rows in a region as one PREWRITE event and,
later, one COMMIT event with the same keys in the same order — is recognised per event with
array comparisons (``_span_pairs``: row i pairs with row i once the prewrite's keys are
known to be distinct, checked on record keys by sorting their 8-byte handles as uint64). Any
other run takes the join: dictionary-encoded keys sorted with region and start_ts
(``_joined_pairs``). Both report the same pairs, ordered by prewrite row.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash.binlog.rows import RowColumns, RunColumns
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
    """The pairs of a run of entries events: per event, which rows are paired (``event(j)``);
    the run's PREWRITE values and ops (indexed by ``EventPairs.prewrite_of``)."""

    n_events: int = 0
    # per event of the run: where its rows start and end among the joined rows (-1: not joined)
    joined_start: np.ndarray | None = None
    joined_end: np.ndarray | None = None
    values: pa.Array | None = None      # binary, every row of the run's joined events
    ops: np.ndarray | None = None       # uint8, idem
    # (region, key, start_ts) of every pair: to drop a same-named entry an earlier batch left in the cache
    pair_regions: np.ndarray | None = None
    pair_rows: np.ndarray | None = None  # the pairs' prewrite rows (joined): their keys by pair_keys()
    pair_start_ts: np.ndarray | None = None
    keys: pa.Array | None = None  # every joined row's key
    # Over the joined rows: their positions in the run (None: every row of the run), which
    # are paired, and for a paired COMMIT its prewrite's joined row (else -1).
    joined_rows: np.ndarray | None = None
    paired: np.ndarray | None = None
    prewrite_of: np.ndarray | None = None

    def count(self) -> int:
        return 0 if self.pair_regions is None else len(self.pair_regions)

    def event(self, j: int) -> EventPairs | None:
        """Event j's share of the pairs; None when nothing of it is paired."""
        if self.pair_regions is None or self.joined_start is None or self.joined_start[j] < 0:
            return None
        assert self.joined_end is not None and self.paired is not None and self.prewrite_of is not None
        lo, hi = int(self.joined_start[j]), int(self.joined_end[j])
        return None if not self.paired[lo:hi].any() else EventPairs(self.paired[lo:hi], self.prewrite_of[lo:hi])

    def pair_keys(self) -> pa.Array:
        """The key of every pair (taken when needed: only a cache holding locks asks)."""
        assert self.keys is not None and self.pair_rows is not None
        return self.keys.take(pa.array(self.pair_rows))

    def staged_columns(self, rows: RowColumns, ev: EventPairs, which: np.ndarray) -> tuple[pa.Array, pa.Array,
                                                                                       np.ndarray, np.ndarray]:
        """What the paired COMMIT rows ``which`` (row numbers of ``rows``) stage: their keys,
        their prewrites' values and ops, their commit ts."""
        assert self.values is not None and self.ops is not None
        src = ev.prewrite_of[which]
        keys = rows.keys if len(which) == len(rows) else rows.keys.take(pa.array(which))
        values = self.values.take(pa.array(src))
        return keys, values, rows.commit_ts[which], self.ops[src]


@dataclass
class RunStage:
    """What a run stages when every row of it is decided inside it — COMMITTED, or one of a
    pair — so no row needs the region cache: the staged rows as arrays, in row order (a
    paired COMMIT carries its prewrite's op and value), event j's rows ``starts[j]`` to
    ``starts[j + 1]``. An upstream's usual batches (1PC writes; 2PC transactions whose
    prewrite and commit both arrive in the batch) are applied this way."""

    keys: pa.Array
    values: pa.Array
    commit_ts: np.ndarray
    ops: np.ndarray
    starts: np.ndarray


def run_stage(run: RunColumns, pairs: RunPairs) -> RunStage | None:
    """The ``RunStage`` of ``run`` (with ``pairs`` from ``find_pairs``), or None when some row
    is not decided inside the run (an open prewrite, a commit of an earlier batch's prewrite)."""
    stage, decided = decided_stage(run, pairs)
    return stage if decided.all() else None


def decided_stage(run: RunColumns, pairs: RunPairs) -> tuple[RunStage, np.ndarray]:
    """What the run's *decided events* stage — events every row of which is decided inside the
    run (COMMITTED, or one of a pair) — and which events those are (bool per event). The
    stage holds their staged rows in row order (event j's rows ``starts[j]`` to
    ``starts[j + 1]``; none for an undecided event, which walks the region cache instead). A
    run cut by the batch's end (a prewrite whose commit comes in the next batch) thus still
    stages all its other events as arrays."""
    rows = run.rows
    types = rows.types
    if pairs.paired is None:  # nothing joined: every event is COMMITTED rows only
        return RunStage(rows.keys, rows.values, rows.commit_ts, rows.ops, run.starts), np.ones(len(run), dtype=bool)
    joined = pairs.joined_rows
    decided_joined = pairs.paired | ((types if joined is None else types[joined]) == _COMMITTED)
    if joined is None:
        decided_row = decided_joined
    else:
        decided_row = np.ones(len(types), dtype=bool)
        decided_row[joined] = decided_joined
    undecided = np.zeros(len(types) + 1, dtype=np.int64)
    np.cumsum(~decided_row, out=undecided[1:])
    decided = undecided[run.starts[1:]] == undecided[run.starts[:-1]]
    all_decided = bool(decided.all())
    in_decided = None if all_decided else np.repeat(decided, np.diff(run.starts))
    prewrite_of = pairs.prewrite_of if pairs.prewrite_of is not None else np.zeros(0, dtype=np.int64)  # no pair
    commits = np.flatnonzero(prewrite_of >= 0)  # joined rows that are paired COMMITs
    commit_rows = commits if joined is None else joined[commits]
    prewrites = prewrite_of[commits]
    prewrite_rows = prewrites if joined is None else joined[prewrites]
    if in_decided is not None:
        keep = in_decided[commit_rows]
        commit_rows, prewrite_rows = commit_rows[keep], prewrite_rows[keep]
    committed = types == _COMMITTED
    if in_decided is not None:
        committed &= in_decided
    if committed.any():
        committed[commit_rows] = True
        staged_rows = np.flatnonzero(committed)
        source = staged_rows.copy()  # where each staged row's op and value come from
        source[np.searchsorted(staged_rows, commit_rows)] = prewrite_rows
    else:  # 2PC only: the paired commits are the staged rows
        staged_rows, source = commit_rows, prewrite_rows
    starts = np.searchsorted(staged_rows, run.starts)
    return RunStage(rows.keys.take(pa.array(staged_rows)), rows.values.take(pa.array(source)),
                    rows.commit_ts[staged_rows], rows.ops[source], starts), decided


def find_pairs(region_ids: Sequence[int], run: RunColumns) -> RunPairs:
    """The prewrite–commit and prewrite–rollback pairs of a run of entries events, in order
    (``region_ids[j]`` is the region of the run's event j)."""
    out = RunPairs(n_events=len(run))
    joined = np.flatnonzero(~run.all_committed)  # COMMITTED rows never touch the cache
    if not len(joined):
        return out
    event_starts = run.starts
    lengths = event_starts[joined + 1] - event_starts[joined]
    starts = np.zeros(len(joined) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    # the joined rows' positions in the run (None: every row, the run's arrays as they are)
    which = None if len(joined) == len(run) else _rows_of(event_starts[joined], lengths)
    rows = run.rows if which is None else run.rows.take(which)
    types, keys, start_ts = rows.types, rows.keys, rows.start_ts
    out.joined_rows = which
    joined_ids = joined.tolist()
    regions = np.repeat(np.array([region_ids[j] for j in joined_ids], dtype=np.int64), lengths)
    found = _span_pairs([region_ids[j] for j in joined_ids], starts, types, start_ts, keys)
    first, second = found if found is not None else _joined_pairs(types, regions, keys, start_ts)
    paired = out.paired = np.zeros(len(types), dtype=bool)
    if not len(first):
        return out
    paired[first] = True
    paired[second] = True
    prewrite_of = np.full(len(types), -1, dtype=np.int64)
    commits = types[second] == _COMMIT
    prewrite_of[second[commits]] = first[commits]
    out.joined_start = np.full(len(run), -1, dtype=np.int64)
    out.joined_end = np.full(len(run), -1, dtype=np.int64)
    out.joined_start[joined], out.joined_end[joined] = starts[:-1], starts[1:]
    out.values = rows.values
    out.ops = rows.ops
    out.prewrite_of = prewrite_of
    out.pair_regions = regions[first]
    out.pair_rows = first
    out.keys = keys
    out.pair_start_ts = start_ts[first]
    return out


def _joined_pairs(types: np.ndarray, regions: np.ndarray, keys: pa.Array,
                  start_ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of any run, by a join on (region, key, start_ts): (prewrite rows, their
    commit or rollback rows), ordered by prewrite row."""
    rows = np.flatnonzero(types != _COMMITTED)  # COMMITTED rows never touch the cache
    if len(rows) == len(types):
        first, second = _two_row_groups(regions, keys, start_ts)
    else:
        first, second = _two_row_groups(regions[rows], keys.take(pa.array(rows)), start_ts[rows])
        first, second = rows[first], rows[second]  # back to row numbers in the run
    ok = (types[first] == _PREWRITE) & ((types[second] == _COMMIT) | (types[second] == _ROLLBACK))
    first, second = first[ok], second[ok]
    order = np.argsort(first, kind="stable")
    return first[order], second[order]


def _span_pairs(regions: list[int], starts: np.ndarray, types: np.ndarray,
                       start_ts: np.ndarray, keys: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """The pairs of a run in the upstream's usual shape, found without a join; None when the
    run has another shape (then ``_joined_pairs`` decides). ``types``, ``start_ts``, ``keys``:
    the run's joined rows (event j holds rows starts[j]..starts[j + 1]).

    The shape, in *spans* (the stretches of one event's rows with one type and start_ts: one
    transaction's rows in one region; capture writes a region's transactions of one poll as
    one event, so an event holds many spans): every span is all PREWRITE or all COMMIT rows,
    and the spans of one (region, start_ts) are a PREWRITE span alone, a COMMIT span alone,
    or a PREWRITE span followed by a COMMIT span with the same keys in the same order, the
    prewrite's keys distinct. Then every (region, key, start_ts) of a run row lies in one
    such group, and it holds exactly two rows, a PREWRITE then a COMMIT, iff the group is a
    prewrite–commit pair of spans: row i of the prewrite pairs with row i of the commit —
    what the join finds."""
    # type and start_ts change only where a span starts
    change = np.flatnonzero((types[1:] != types[:-1]) | (start_ts[1:] != start_ts[:-1])) + 1
    span_regions = np.asarray(regions, dtype=np.int64)
    is_start = np.zeros(len(types) + 1, dtype=bool)
    is_start[starts] = True
    if not is_start[change].all():  # spans inside events: split the events at them
        is_start[change] = True
        spans = np.flatnonzero(is_start)
        span_regions = span_regions[np.searchsorted(starts, spans[:-1], side="right") - 1]
        starts = spans
    first_rows = starts[:-1]
    span_types, span_ts = types[first_rows], start_ts[first_rows]
    if not ((span_types == _PREWRITE) | (span_types == _COMMIT)).all():
        return None
    # the spans of each (region, start_ts), in row order: one alone makes no pair (its rows
    # are all of one type); two must be a PREWRITE span then a COMMIT span; more: another shape
    n_spans = len(first_rows)
    order = np.lexsort((np.arange(n_spans), span_ts, span_regions))
    r, t = span_regions[order], span_ts[order]
    opens = np.ones(n_spans, dtype=bool)
    opens[1:] = (r[1:] != r[:-1]) | (t[1:] != t[:-1])
    group_starts = np.flatnonzero(opens)
    sizes = np.diff(np.append(group_starts, n_spans))
    if (sizes > 2).any():
        return None
    twos = group_starts[sizes == 2]
    prewrite_spans, commit_spans = order[twos], order[twos + 1]
    if not ((span_types[prewrite_spans] == _PREWRITE) & (span_types[commit_spans] == _COMMIT)).all():
        return None
    if not len(twos):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    by_prewrite = np.argsort(prewrite_spans)
    prewrite_spans, commit_spans = prewrite_spans[by_prewrite], commit_spans[by_prewrite]
    lengths = starts[prewrite_spans + 1] - starts[prewrite_spans]
    if (starts[commit_spans + 1] - starts[commit_spans] != lengths).any():
        return None
    first, second = _rows_of(starts[prewrite_spans], lengths), _rows_of(starts[commit_spans], lengths)
    tails = _record_key_tails(keys)
    if tails is not None:  # record keys of one table: equal iff their handles' bytes are
        if not (tails[first] == tails[second]).all():
            return None
    elif not all(keys.slice(p, n).equals(keys.slice(c, n)) for p, c, n in
                 zip(starts[prewrite_spans].tolist(), starts[commit_spans].tolist(), lengths.tolist())):
        return None
    if not _distinct_in_spans(keys, starts[prewrite_spans], lengths, first, tails):
        return None
    return first, second


def _rows_of(lo: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Rows lo[i] .. lo[i] + lengths[i] for every i, one after the other."""
    before = np.cumsum(lengths) - lengths
    return np.repeat(lo - before, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


def _distinct_in_spans(keys: pa.Array, span_starts: np.ndarray, span_lengths: np.ndarray, rows: np.ndarray,
                        tails: np.ndarray | None) -> bool:
    """Whether no two keys of one span of ``keys`` (``span_lengths[i]`` rows from
    ``span_starts[i]``) are equal (``rows``: the spans' rows, concatenated). Keys of one width that share all but their last 8 bytes (record keys
    of one table) are compared as big-endian uint64 after one sort of every span's rows at
    once (no duplicate at all: none within a span either) and, only if some key repeats, a sort
    per span; other keys are hashed per span. ``tails``: ``_record_key_tails(keys)``."""
    spans = zip(span_starts.tolist(), span_lengths.tolist())
    if tails is not None:
        s = np.sort(tails[rows])
        if not (s[1:] == s[:-1]).any():
            return True
        for lo, n in spans:
            s = np.sort(tails[lo:lo + n])
            if (s[1:] == s[:-1]).any():
                return False
        return True
    return all(int(pc.count_distinct(keys.slice(lo, n)).as_py()) == n for lo, n in spans)


def _record_key_tails(keys: pa.Array) -> np.ndarray | None:
    """For binary ``keys`` of one width of at least 8 bytes that all share the bytes before
    their last 8 (record keys of one table): those last 8 bytes as big-endian uint64 (equal
    keys iff equal tails); else None."""
    n = len(keys)
    if n == 0 or not pa.types.is_binary(keys.type) or keys.null_count or keys.buffers()[2] is None:
        return None
    offsets = np.frombuffer(keys.buffers()[1], dtype=np.int32)[keys.offset:keys.offset + n + 1]
    lo, hi = int(offsets[0]), int(offsets[-1])
    width = (hi - lo) // n
    if width < 8 or hi - lo != n * width or not (np.diff(offsets) == width).all():
        return None
    data = np.frombuffer(keys.buffers()[2], dtype=np.uint8)
    prefix = width - 8
    if prefix >= 8:  # the prefix as two overlapping uint64 per key: bytes [0, 8) and [prefix - 8, prefix)
        for at in (lo, lo + prefix - 8):
            head = np.ndarray((n,), dtype="<u8", buffer=data, offset=at, strides=(width,))
            if not (head == head[0]).all():
                return None
    else:
        mat = data[lo:hi].reshape(n, width)
        if not (mat[:, :prefix] == mat[0, :prefix]).all():
            return None
    return np.ndarray((n,), dtype=">u8", buffer=data, offset=lo + width - 8, strides=(width,)).astype(np.uint64)


def _two_row_groups(regions: np.ndarray, keys: pa.Array, start_ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups of rows with equal (region, key, start_ts) that hold exactly two rows: the
    positions of their first and second row (in input order)."""
    n = len(regions)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    # record keys of one table compare as their handles' bytes: no hashing of every key
    tails = _record_key_tails(keys)
    key_ids = tails if tails is not None else pc.dictionary_encode(keys).indices.to_numpy().astype(np.int64)
    order = np.lexsort((start_ts, key_ids, regions))  # stable: a group's rows stay in input order
    r, k, s = regions[order], key_ids[order], start_ts[order]
    new = np.empty(n, dtype=bool)
    new[0] = True
    new[1:] = (r[1:] != r[:-1]) | (k[1:] != k[:-1]) | (s[1:] != s[:-1])
    group_start = np.flatnonzero(new)
    size = np.diff(np.append(group_start, n))
    two = group_start[size == 2]
    return order[two], order[two + 1]


__all__ = ["EventPairs", "RunPairs", "RunStage", "decided_stage", "find_pairs", "run_stage"]
