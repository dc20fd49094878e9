"""Many serialized events decoded at once: the protobuf wire format read with array operations.

A writer catching up reads thousands of small events per poll; parsing each into a
``binlog_pb2.Event`` and then joining each event's ``RowBatch`` fields into the run's arrays
costs a Python step (and a dozen objects) per event. :func:`decode_events` instead reads the
wire format of all of them at once: one step per *field* of the message, each step a few
NumPy operations over every event (tag varint, value varint or length, next field). What it
yields is an :class:`EventBatch`:

* per event: region id, raft index, epoch, and whether it is a *columnar entries event* — an
  ``Entries`` in the batch form with nothing but the store's fields (count, types, ops,
  start_ts, commit_ts, ttl, txn_size, key, value, primary), which validates as
  ``rows.columns`` would accept it;
* the rows of every columnar entries event joined into one :class:`~.rows.RunColumns` (the
  fields gathered from the read's bytes, offsets rebased), so a store slices a run's rows out
  of it instead of joining them per event;
* every other event (admin, snapshot, resolved ts, DDL, the rows form, async-commit fields,
  unknown fields, anything malformed) parsed as before with ``Event.FromString`` — only
  those, and only when asked for (``batch[i]``, the ``Sequence[Event]`` view).

Nothing is decided differently: an event the array reader does not take is exactly the
message ``FromString`` makes of it, and a columnar entries event's rows are exactly what
``rows.run_columns`` makes of its parsed form (tests/unit/test_binlog_event_batch.py checks both
on random and damaged events).
"""
from __future__ import annotations

from typing import Iterator, Sequence, overload

import numpy as np
import pyarrow as pa
from google.protobuf.message import DecodeError

from pyspark_theflash.binlog import region_runs
from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.proto import binlog_pb2

_MAX_TYPE = max(binlog_pb2.Row.Type.values())
_MAX_OP = max(binlog_pb2.OpType.values())
_INT32_MAX = (1 << 31) - 1
_PAD = 16  # zero bytes after the data: varint reads near the end stay inside the buffer
_VARINT, _LEN = 0, 2

# Event fields the array reader takes: region_id (1), index (2), epoch (3), entries (4).
_EVENT_FIELDS = {1: _VARINT, 2: _VARINT, 3: _LEN, 4: _LEN}
_EPOCH_FIELDS = {1: _VARINT, 2: _VARINT}
_ENTRIES_FIELDS = {2: _LEN, 3: _LEN}  # batch, runs; rows (1) is the row form: parsed as before
# RowBatch: count (1) and the store's arrays (2..13); the async-commit fields (14..17) are
# left to the parser (their events are parsed as before).
_BATCH_FIELDS = {1: _VARINT, **{f: _LEN for f in range(2, 14)}}


class EventBatch(Sequence[binlog_pb2.Event]):
    """Events decoded by :func:`decode_events`: a ``Sequence[Event]`` (an event is parsed from
    its bytes only when asked for) plus the arrays a store applies them with."""

    def __init__(self, payloads: Sequence[bytes], region_ids: np.ndarray,
                 indexes: np.ndarray, epoch_versions: np.ndarray, conf_versions: np.ndarray, columnar: np.ndarray,
                 rows: binlog_rows.RowColumns | None, row_starts: np.ndarray,
                 sources: np.ndarray | None = None, runs: dict[int, int] | None = None) -> None:
        self._payloads = payloads
        # the payload each event comes from: itself, but for the runs of an event of many
        # regions (binlog/region_runs.py), which are events of their own here
        self.sources = np.arange(len(columnar), dtype=np.int64) if sources is None else sources
        self._runs = runs or {}  # event -> its run number, for the runs of an event of many regions
        self._split: dict[int, list[binlog_pb2.Event]] = {}  # such a payload split (region_runs.split)
        self.region_ids = region_ids        # int64 per event (columnar events only; else 0)
        self.indexes = indexes              # int64 idem
        self.epoch_versions = epoch_versions  # int64 idem (0: no epoch)
        self.conf_versions = conf_versions
        self.columnar = columnar            # bool per event: a columnar entries event
        self.rows = rows                    # the columnar events' rows joined (None: no such event)
        self.row_starts = row_starts        # int64 per event + 1: its rows in ``rows`` (none if not columnar)
        self._parsed: dict[int, binlog_pb2.Event] = {}

    def __len__(self) -> int:
        return len(self.columnar)

    @overload
    def __getitem__(self, i: int) -> binlog_pb2.Event: ...

    @overload
    def __getitem__(self, i: slice) -> list[binlog_pb2.Event]: ...

    def __getitem__(self, i: int | slice) -> binlog_pb2.Event | list[binlog_pb2.Event]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        event = self._parsed.get(i)
        if event is None:
            if not 0 <= i < len(self):
                raise IndexError(i)
            source = int(self.sources[i])
            run = self._runs.get(i)
            if run is None:
                event = binlog_pb2.Event.FromString(self._payloads[source])
            else:  # one run of an event of many regions, as the single-region event it means
                split = self._split.get(source)
                if split is None:
                    split = self._split[source] = region_runs.split(
                        binlog_pb2.Event.FromString(self._payloads[source]))
                event = split[run]
            self._parsed[i] = event
        return event

    def __iter__(self) -> Iterator[binlog_pb2.Event]:
        for i in range(len(self)):
            yield self[i]

    def parsed_indices(self) -> np.ndarray:
        """The events that are not columnar entries events (admin, snapshot, DDL, ...)."""
        return np.flatnonzero(~self.columnar)

    def row_count(self) -> int:
        """Rows of every Entries event (either form)."""
        n = int(self.row_starts[-1])
        for i in self.parsed_indices().tolist():
            event = self[i]
            if event.WhichOneof("payload") == "entries":
                n += binlog_rows.row_count(event.entries)
        return n

    def run(self, events: Sequence[int]) -> binlog_rows.RunColumns | None:
        """The rows of ``events`` (columnar entries events, in order) as one RunColumns —
        a slice of the joined rows when they are consecutive; None if one is not columnar."""
        if not len(events):
            return None
        ev = np.asarray(events, dtype=np.int64)
        if self.rows is None or not self.columnar[ev].all():
            return None
        lo, hi = self.row_starts[ev], self.row_starts[ev + 1]
        lengths = hi - lo
        starts = np.zeros(len(ev) + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        if (lo[1:] == hi[:-1]).all():  # consecutive rows: a slice, no copy
            return binlog_rows.RunColumns(self.rows.slice(int(lo[0]), int(hi[-1])), starts)
        which = np.repeat(lo - starts[:-1], lengths) + np.arange(int(starts[-1]), dtype=np.int64)
        return binlog_rows.RunColumns(self.rows.take(which), starts)


def parsed_events(events: Sequence[binlog_pb2.Event]) -> Iterator[binlog_pb2.Event]:
    """The events of ``events`` that must be looked at one by one: of an ``EventBatch``, those
    that are not columnar entries events (DDL, admin, snapshot, ...); of any other sequence,
    every event."""
    if isinstance(events, EventBatch):
        for i in events.parsed_indices().tolist():
            yield events[i]
    else:
        yield from events


def decode_events(payloads: Sequence[bytes]) -> EventBatch:
    """Serialized events (each a ``binlog_pb2.Event``) decoded at once (see the module doc)."""
    n = len(payloads)
    lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=n)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    buf = np.frombuffer(b"".join([*payloads, bytes(_PAD)]), dtype=np.uint8)  # one copy, the padding in it
    ok = np.ones(n, dtype=bool)
    ev = _scan(buf, starts, ends, _EVENT_FIELDS, ok)
    ok &= ev.present(4)  # entries; an event without it is another kind: parsed
    epoch = _scan(buf, *ev.span(3), _EPOCH_FIELDS, ok)
    entries = _scan(buf, *ev.span(4), _ENTRIES_FIELDS, ok)
    ok &= entries.present(2)  # the batch form; else the row form (or no rows): parsed
    batch = _scan(buf, *entries.span(2), _BATCH_FIELDS, ok)
    region_ids, indexes = ev.value(1), ev.value(2)
    epoch_versions, conf_versions = epoch.value(1), epoch.value(2)
    counts = batch.value(1)
    big = np.uint64(1 << 63)  # beyond int64: left to the parser
    ok &= (counts <= _INT32_MAX) & (region_ids < big) & (indexes < big) & (epoch_versions < big) & (conf_versions < big)
    many = entries.present(3)  # an event of many regions (binlog/region_runs.py): no region or index of its own
    ok &= ~many | ((region_ids == 0) & (indexes == 0) & ~ev.present(3))
    rows, row_starts = _join(buf, batch, counts, ok)
    region_ids[~ok] = indexes[~ok] = epoch_versions[~ok] = conf_versions[~ok] = 0
    out = EventBatch(payloads, region_ids.astype(np.int64),
                     indexes.astype(np.int64), epoch_versions.astype(np.int64), conf_versions.astype(np.int64), ok,
                     rows, row_starts)
    if many.any():
        out = _expand_runs(out, buf, entries, many, counts)
    return out


def _expand_runs(batch: EventBatch, buf: np.ndarray, entries: _Fields, many: np.ndarray,
                 counts: np.ndarray) -> EventBatch:
    """``batch`` with each event of many regions made the events of its runs: columnar ones,
    their rows the run's slice of the joined rows, where the event's batch took the array path;
    events parsed (split) when asked for otherwise."""
    n = len(batch.columnar)
    per = np.ones(n, dtype=np.int64)
    arrays: dict[int, region_runs.RunsArrays] = {}
    spans = entries.span(3)
    for i in np.flatnonzero(many).tolist():
        message = binlog_pb2.RegionRuns()
        try:
            message.ParseFromString(buf[int(spans[0][i]):int(spans[1][i])].tobytes())
            arrays[i] = region_runs.runs_arrays(message, int(counts[i]))
        except (region_runs.MalformedRegionRunsError, DecodeError):  # split when asked for: that raises, naming it
            batch.columnar[i] = False
            continue
        per[i] = len(arrays[i])
    sources = np.repeat(np.arange(n, dtype=np.int64), per)
    first = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(per, out=first[1:])
    region_ids, indexes = batch.region_ids[sources], batch.indexes[sources]
    epochs, confs, columnar = batch.epoch_versions[sources], batch.conf_versions[sources], batch.columnar[sources]
    starts = batch.row_starts[:-1][sources]
    runs: dict[int, int] = {int(first[i]): 0 for i in np.flatnonzero(many).tolist() if i not in arrays}
    for i, a in arrays.items():
        at = slice(int(first[i]), int(first[i + 1]))
        region_ids[at], indexes[at], epochs[at], confs[at] = a.region_ids, a.indexes, a.epoch_versions, a.conf_versions
        if len(a) and columnar[at.start]:
            starts[at] = batch.row_starts[i] + a.row_offsets[:-1]
        else:  # not on the array path (or no runs): no rows here, read from its split
            region_ids[at] = indexes[at] = epochs[at] = confs[at] = 0
        runs.update(zip(range(at.start, at.stop), range(len(a))))
    row_starts = np.append(starts, batch.row_starts[-1])
    return EventBatch(batch._payloads, region_ids, indexes, epochs, confs, columnar, batch.rows, row_starts,
                      sources, runs)


class _Fields:
    """What ``_scan`` found per message: each wanted field's varint value or (start, length)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.values: dict[int, np.ndarray] = {}   # field -> uint64 value (varint)
        self.starts: dict[int, np.ndarray] = {}   # field -> start in buf (length-delimited)
        self.lengths: dict[int, np.ndarray] = {}
        self.seen: dict[int, np.ndarray] = {}     # field -> bool per message

    def present(self, field: int) -> np.ndarray:
        return self.seen.get(field, np.zeros(self.n, dtype=bool))

    def value(self, field: int) -> np.ndarray:
        return self.values.get(field, np.zeros(self.n, dtype=np.uint64)).copy()

    def span(self, field: int) -> tuple[np.ndarray, np.ndarray]:
        """(start, end) of a length-delimited field (empty where absent)."""
        start = self.starts.get(field, np.zeros(self.n, dtype=np.int64))
        return start, start + self.lengths.get(field, np.zeros(self.n, dtype=np.int64))

    def length(self, field: int) -> np.ndarray:
        return self.lengths.get(field, np.zeros(self.n, dtype=np.int64))


def _varints(buf: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The varints at ``pos``: (value as uint64, byte count; 0 where it is not a valid varint
    of at most 10 bytes). One step per byte of the longest one, over those still going."""
    first = buf[pos]
    value = (first & 0x7F).astype(np.uint64)
    size = np.ones(len(pos), dtype=np.int64)
    going = np.flatnonzero(first >= 0x80)
    shift = 7
    while len(going):
        if shift >= 70:  # more than 10 bytes: not a varint
            size[going] = 0
            break
        b = buf[pos[going] + size[going]]
        value[going] |= (b & 0x7F).astype(np.uint64) << np.uint64(shift)
        size[going] += 1
        going = going[b >= 0x80]
        shift += 7
    return value, size


def _scan(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, wanted: dict[int, int], ok: np.ndarray) -> _Fields:
    """Read the fields of messages buf[starts:ends] (only those still ``ok``), one field of
    every message per step. A message with a field not in ``wanted`` (or of another wire
    type), a field twice, or bytes that do not parse is no longer ``ok`` (it is left to the
    parser, which decides what it is)."""
    n = len(starts)
    out = _Fields(n)
    cur = starts.astype(np.int64).copy()
    live = np.flatnonzero(ok & (cur < ends))
    while len(live):
        tag, size = _varints(buf, cur[live])
        bad = size == 0
        field = (tag >> np.uint64(3)).astype(np.int64)
        wire = (tag & np.uint64(7)).astype(np.int64)
        pos = cur[live] + size
        want = np.full(len(live), -1, dtype=np.int64)
        for f, w in wanted.items():
            want[field == f] = w
        bad |= want != wire
        value, vsize = _varints(buf, np.where(bad, 0, pos))
        bad |= vsize == 0
        length_delimited = wire == _LEN
        after = pos + vsize + np.where(length_delimited, value.astype(np.int64), 0)
        bad |= (value > np.uint64(_INT32_MAX)) & length_delimited
        bad |= after > ends[live]
        for f in np.unique(field[~bad]).tolist():
            sel = (field == f) & ~bad
            msgs = live[sel]
            seen = out.seen.setdefault(f, np.zeros(n, dtype=bool))
            twice = seen[msgs]
            if twice.any():  # repeated (merged or last-wins by the parser): left to it
                ok[msgs[twice]] = False
            seen[msgs] = True
            if wanted[f] == _LEN:
                out.starts.setdefault(f, np.zeros(n, dtype=np.int64))[msgs] = (pos + vsize)[sel]
                out.lengths.setdefault(f, np.zeros(n, dtype=np.int64))[msgs] = value[sel].astype(np.int64)
            else:
                out.values.setdefault(f, np.zeros(n, dtype=np.uint64))[msgs] = value[sel]
        ok[live[bad]] = False
        cur[live] = np.where(bad, ends[live], after)
        live = live[~bad]
        live = live[ok[live] & (cur[live] < ends[live])]
    return out


def _ranges(src: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """src[i], src[i] + 1, ..., src[i] + lengths[i] - 1 for every i, one after the other."""
    before = np.cumsum(lengths) - lengths
    return np.repeat(src - before, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


def _gather(buf: np.ndarray, src: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """buf[src[i]:src[i] + lengths[i]] for every i, one after the other (the non-empty spans
    are in increasing order and do not overlap). Arrow's ``take`` copies them: the spans and the
    gaps between them are the items of one binary array over ``buf``, the spans its even ones."""
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, dtype=np.uint8)
    if not lengths.all():  # an empty span may sit anywhere (an absent field: at 0)
        src, lengths = src[lengths > 0], lengths[lengths > 0]
    n = len(src)
    bounds = np.empty(2 * n, dtype=np.int64)
    bounds[0::2] = src
    bounds[1::2] = src + lengths
    items = pa.LargeBinaryArray.from_buffers(pa.large_binary(), 2 * n - 1,
                                             [None, pa.py_buffer(bounds), pa.py_buffer(buf)])
    taken = items.take(pa.array(np.arange(0, 2 * n, 2, dtype=np.int64)))
    # a view of Arrow's buffer (it stays alive with the array): read-only, and no second copy
    return np.frombuffer(taken.buffers()[2], dtype=np.uint8, count=total)


def _join(buf: np.ndarray, batch: _Fields, counts: np.ndarray, ok: np.ndarray
          ) -> tuple[binlog_rows.RowColumns | None, np.ndarray]:
    """The rows of the ``ok`` events' RowBatches joined into one RowColumns, validated as
    ``rows.columns`` validates one event; an event that does not validate is no longer ``ok``
    (the parser's path then names what is wrong with it). Returns (rows, row starts per event)."""
    counts = counts.astype(np.int64)
    for _ in range(2):  # a second pass only if the joined offsets show an event is malformed
        k = np.where(ok, counts, 0)
        for field, width, optional in ((2, 1, False), (3, 1, False), (4, 8, False), (5, 8, True), (6, 8, True),
                                       (7, 8, True)):
            length = batch.length(field)
            ok &= (length == k * width) | (optional & (length == 0))
        for off, data, optional in ((8, 9, False), (10, 11, True), (12, 13, True)):
            off_len, data_len = batch.length(off), batch.length(data)
            absent = (off_len == 0) & (data_len == 0) & (optional | (k == 0))
            shaped = off_len == 4 * (k + 1)
            first = _int32_at(buf, batch.span(off)[0], shaped)
            last = _int32_at(buf, batch.span(off)[0] + 4 * k, shaped)
            ok &= absent | (shaped & (first == 0) & (last == data_len))
        k = np.where(ok, counts, 0)
        row_starts = np.zeros(len(k) + 1, dtype=np.int64)
        np.cumsum(k, out=row_starts[1:])
        total = int(row_starts[-1])
        ev = np.flatnonzero(ok)
        kk = k[ev]
        types = _gather(buf, batch.span(2)[0][ev], kk)
        ops = _gather(buf, batch.span(3)[0][ev], kk)
        bad_codes = (types > _MAX_TYPE) | (ops > _MAX_OP)
        if bad_codes.any():
            ok[np.unique(np.repeat(ev, kk)[bad_codes])] = False
            continue
        fixed = [_fixed(buf, batch, f, ev, kk, total) for f in (4, 5, 6, 7)]
        binaries = []
        broken = np.zeros(len(ok), dtype=bool)
        for off, data in ((8, 9), (10, 11), (12, 13)):
            arr, bad = _binary(buf, batch, off, data, ev, kk, total)
            if arr is None:  # more bytes than int32 offsets hold: the parser's path splits the run
                ok[:] = False
                return None, np.zeros(len(ok) + 1, dtype=np.int64)
            broken[ev[bad]] = True
            binaries.append(arr)
        if broken.any():
            ok &= ~broken
            continue
        if not total and not len(ev):
            return None, row_starts
        rows = binlog_rows.RowColumns(types, ops, fixed[0].view("<u8"), fixed[1].view("<u8"), fixed[2].view("<u8"),
                                      fixed[3].view("<u8"), *binaries)
        return rows, row_starts
    ok[:] = False  # not reached in practice: two passes remove every malformed event
    return None, np.zeros(len(ok) + 1, dtype=np.int64)


def _int32_at(buf: np.ndarray, pos: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The little-endian int32 at ``pos`` where ``where`` (else 0)."""
    p = np.where(where, pos, 0)
    b = buf[p[:, None] + np.arange(4)].astype(np.int64)
    v = b[:, 0] | b[:, 1] << 8 | b[:, 2] << 16 | b[:, 3] << 24
    v = np.where(v >= 1 << 31, v - (1 << 32), v)
    return np.where(where, v, 0)


def _fixed(buf: np.ndarray, batch: _Fields, field: int, ev: np.ndarray, k: np.ndarray, total: int) -> np.ndarray:
    """A fixed-width (8-byte) field of the events ``ev`` joined (zeros where it is empty)."""
    present = batch.length(field)[ev] > 0
    if present.all():
        return _gather(buf, batch.span(field)[0][ev], 8 * k)
    out = np.zeros(8 * total, dtype=np.uint8)
    if present.any():
        dest = 8 * (np.cumsum(k) - k)
        out[_ranges(dest[present], 8 * k[present])] = _gather(buf, batch.span(field)[0][ev][present], 8 * k[present])
    return out


def _binary(buf: np.ndarray, batch: _Fields, off: int, data: int, ev: np.ndarray, k: np.ndarray, total: int
            ) -> tuple[pa.BinaryArray | None, np.ndarray]:
    """A binary field of the events ``ev`` joined (offsets rebased; empty items where the
    field is absent), and which of those events have offsets that decrease."""
    off_start, data_start = batch.span(off)[0][ev], batch.span(data)[0][ev]
    data_len = batch.length(data)[ev]
    has = batch.length(off)[ev] > 0
    if int(data_len.sum()) > _INT32_MAX:
        return None, np.zeros(len(ev), dtype=bool)
    # each event's offsets after the first: 4 * k bytes from its offsets' second item
    own = np.zeros(4 * total, dtype=np.uint8)
    if has.all():
        own = _gather(buf, off_start + 4, 4 * k)
    elif has.any():
        dest = 4 * (np.cumsum(k) - k)
        own[_ranges(dest[has], 4 * k[has])] = _gather(buf, off_start[has] + 4, 4 * k[has])
    base = np.cumsum(data_len) - data_len
    offsets = np.empty(total + 1, dtype=np.int32)
    offsets[0] = 0
    rel = own.view("<i4").astype(np.int64)
    offsets[1:] = rel + np.repeat(base, k)  # an absent field's items: empty, at its base
    step = np.diff(offsets.astype(np.int64))
    bad = np.zeros(len(ev), dtype=bool)
    if (step < 0).any():
        row_event = np.repeat(np.arange(len(ev)), k)
        bad[np.unique(row_event[step < 0])] = True
    joined = _gather(buf, data_start, data_len)
    arr = pa.BinaryArray.from_buffers(pa.binary(), total, [None, pa.py_buffer(offsets), pa.py_buffer(joined)])
    return arr, bad


__all__ = ["EventBatch", "decode_events", "parsed_events"]
