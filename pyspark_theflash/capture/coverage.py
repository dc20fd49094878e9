"""What the replica holds of a key range, as capture has written it: every version committed
at or below a *floor* ts (which may differ along the range), and the versions above the floor
written one by one since. Only versions are counted: a committed version, once in the binlog,
stays in the replica (its GC removes only versions below the safe point that a newer one
replaces, and capture's PD service safe point stays below every floor).

A region registered again over a range capture has covered (a region error, a leader move,
a split or a merge) asks TiKV's feed only for the versions above the range's least floor
(``checkpoint_ts``: TiKV's incremental scan, ``DeltaScanner`` from that ts, gives those and
every open lock) and writes, as a ``RegionSnapshot`` with ``since_ts``, the versions the
replica does not hold yet and the open locks. TiCDC re-registers a region from its checkpoint
the same way (tiflow ``cdc/kv/shared_client.go``, the range lock's resolved ts). A restarted
capture starts from the floors its binlog proves (capture/resume.py; the versions counted above
them are not kept). Without a coverage (a fresh capture, a range nothing is proved of) the
registration starts from 0 and its snapshot replaces the range whole.
"""
from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Iterable, Iterator, NamedTuple, Sequence, Union, overload

from pyspark_theflash.capture.range_claims import ranges_overlap
from pyspark_theflash.codec.keys import encode_region_key
from pyspark_theflash.codec.key_ranges import RangeMembers
from pyspark_theflash.proto import binlog_pb2

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from pyspark_theflash.capture.feed_columns import LiveBatch

Floor = tuple[bytes, bytes, int]  # (start, end, ts): PD-encoded range, end b"" = +inf
PENDING_MAX = 256  # batches kept uncounted above the floor before they are counted one by one


def _clip(start: bytes, end: bytes, lo: bytes, hi: bytes) -> tuple[bytes, bytes] | None:
    s = max(start, lo)
    if not end:
        e = hi
    elif not hi:
        e = end
    else:
        e = min(end, hi)
    return (s, e) if not e or s < e else None


def _pd_key(raw_key: bytes) -> bytes:
    return bytes(encode_region_key(raw_key))


class Coverage:
    """One registration's coverage of its range (``floors`` tile it, in key order)."""

    # (one per written registration: slots, and its containers made when first filled)
    __slots__ = ("floors", "_above", "_by_ts", "_pending", "_kept")

    def __init__(self, floors: list[Floor]) -> None:
        self.floors = floors
        self._above: set[tuple[bytes, int]] | None = None  # (raw key, commit ts) above the floor there
        self._by_ts: list[tuple[int, bytes]] = _NONE     # the same, a heap by commit ts (for pruning)
        # a whole snapshot's versions, counted when the floor first rises (most are at or
        # below it then): a big region's snapshot is not copied into a set to be pruned at once
        self._pending: list[_Pending] = _NONE
        # batches that went through a rise with versions still above the floor: counted when
        # asked (_settle), or dropped by a later rise past them
        self._kept: list[_Versions | _BatchVersions] = _NONE

    @property
    def start(self) -> bytes:
        return self.floors[0][0]

    @property
    def end(self) -> bytes:
        return self.floors[-1][1]

    def least_floor(self) -> int:
        return min(ts for _, _, ts in self.floors)

    def floor(self, pd_key: bytes) -> int:
        for s, e, ts in self.floors:
            if s <= pd_key and (not e or pd_key < e):
                return ts
        return 0

    def holds(self, raw_key: bytes, commit_ts: int) -> bool:
        """Does the replica hold this version, as far as capture wrote it?"""
        self._settle()
        above = self._above
        return (above is not None and (raw_key, commit_ts) in above) or commit_ts <= self.floor(_pd_key(raw_key))

    def pending(self) -> int:
        """Batches of versions not yet counted one by one (``raise_floor`` drops those at or
        below the floor; a caller raises it when they pile up)."""
        return len(self._pending)

    def add(self, raw_key: bytes, commit_ts: int) -> None:
        """A version written to the binlog for this range."""
        if commit_ts <= self.least_floor():
            return
        if self._above is None:
            self._above, self._by_ts = set(), []
        if (raw_key, commit_ts) not in self._above:
            self._above.add((raw_key, commit_ts))
            heapq.heappush(self._by_ts, (commit_ts, raw_key))

    def add_later(self, writes: Sequence[binlog_pb2.SnapshotWrite]) -> None:
        """A snapshot's versions (``SnapshotWrite``), counted when the floor next rises."""
        self._pend(writes)

    def add_columns(self, raw_keys: pa.BinaryArray, commit_ts: np.ndarray) -> None:
        """Live versions written to the binlog, as columns (an Arrow binary array of raw keys and
        a uint64 array): counted, like a snapshot's, when the floor next rises (most are at or
        below it then), so no Python object is made per row. A row whose commit ts is 0 (a
        PREWRITE, a ROLLBACK) is not a version and is never counted."""
        self._pend(_Versions(raw_keys, commit_ts))

    def add_batch(self, rows: LiveBatch, lo: int = 0, n: int | None = None, newest: int | None = None) -> None:
        """Live versions as the C match wrote them (feed_columns.LiveBatch; rows lo..lo + n of
        it, whose greatest commit ts is ``newest``, when it holds many regions' rows): as
        ``add_columns``, their keys made an array only if some stay above the floor when it rises."""
        self._pend(_BatchVersions(rows, lo, rows.count if n is None else n,
                                  rows.max_commit_ts if newest is None else newest))

    def _pend(self, writes: _Pending) -> None:
        if self._pending is _NONE:
            self._pending = []
        self._pending.append(writes)

    def raise_floor(self, ts: int) -> None:
        """The range's resolved ts reached ``ts``: every version at or below it is in the
        binlog (written before the resolved ts that says so)."""
        if ts <= self.least_floor():
            return
        pending, self._pending = self._pending, _NONE
        floors: list[Floor] = []
        for s, e, f in self.floors:
            f = max(f, ts)
            if floors and floors[-1][2] == f and floors[-1][1] == s:
                floors[-1] = (floors[-1][0], e, f)
            else:
                floors.append((s, e, f))
        self.floors = floors
        least = self.least_floor()
        if self._above is not None:
            while self._by_ts and self._by_ts[0][0] <= least:
                cts, key = heapq.heappop(self._by_ts)
                self._above.discard((key, cts))
            if not self._above:
                self._above, self._by_ts = None, _NONE
        # Batches with versions above the floor stay batches (most of theirs are at or below it
        # by the next rise): counted one by one only when asked (``_settle``), or when they pile
        # up, so that what is kept stays bounded.
        batches = (_Versions, _BatchVersions)
        if self._kept or pending:
            self._kept = [w for w in [*self._kept, *pending] if isinstance(w, batches) and w.newest > least] or _NONE
        for writes in pending:
            if not isinstance(writes, batches):
                self._count(writes, least)
        if len(self._kept) > PENDING_MAX:
            self._settle()

    def _settle(self) -> None:
        """The kept batches' versions above the floor, counted one by one."""
        kept, self._kept = self._kept, _NONE
        least = self.least_floor()
        for writes in kept:
            self._count(writes, least)

    def _count(self, writes: _Pending, least: int) -> None:
        """Versions above ``least`` of a batch or a snapshot's writes, one by one."""
        if isinstance(writes, (_Versions, _BatchVersions)):
            if writes.newest <= least:  # the usual case: every version is at or below the floor
                return
            writes = writes.above(least)
        for w in writes:
            if w.commit_ts > least:
                self.add(bytes(w.key), int(w.commit_ts))

    def above_in(self, lo: bytes, hi: bytes) -> Iterable[tuple[bytes, int]]:
        pending = ((bytes(w.key), int(w.commit_ts)) for writes in [*self._kept, *self._pending]
                   for w in (writes.above(0) if isinstance(writes, (_Versions, _BatchVersions)) else writes))
        for key, cts in [*(self._above or ()), *pending]:
            pd = _pd_key(key)
            if lo <= pd and (not hi or pd < hi):
                yield key, cts

    def counted_above(self) -> int:
        """How many versions above the floor are counted one by one. (Not ``__len__``: a
        coverage that counts none still says what the replica holds up to its floors, and
        must not test false.)"""
        self._settle()
        return len(self._above) if self._above is not None else 0


# the empty list every coverage without pending batches shares (never appended to: replaced)
_NONE: list = []  # type: ignore[type-arg]


class _Version(NamedTuple):
    key: bytes
    commit_ts: int


class _BatchVersions:
    """A LiveBatch's versions, pending: its newest commit ts known, its columns built only if
    some of them stay above the floor (``above``)."""

    __slots__ = ("rows", "lo", "n", "newest")

    def __init__(self, rows: LiveBatch, lo: int, n: int, newest: int) -> None:
        self.rows, self.lo, self.n, self.newest = rows, lo, n, newest

    def above(self, ts: int) -> "_Versions":
        lo, n = self.lo, self.n
        return _Versions(self.rows.keys.slice(lo, n), self.rows.commit_ts[lo:lo + n]).above(ts)


class _Versions(Sequence[_Version]):
    """Versions as columns (Coverage.add_columns), read as SnapshotWrite-like items."""

    def __init__(self, raw_keys: pa.BinaryArray, commit_ts: np.ndarray) -> None:
        self.keys, self.commit_ts = raw_keys, commit_ts
        self.newest = int(commit_ts.max()) if len(commit_ts) else 0

    def above(self, ts: int) -> "_Versions":
        import numpy as np

        from pyspark_theflash.binlog.rows import arrow_positions

        which = np.flatnonzero(self.commit_ts > ts)
        return _Versions(self.keys.take(arrow_positions(which)), self.commit_ts[which])

    def __len__(self) -> int:
        return len(self.commit_ts)

    @overload
    def __getitem__(self, i: int) -> _Version: ...
    @overload
    def __getitem__(self, i: slice) -> list[_Version]: ...

    def __getitem__(self, i: int | slice) -> _Version | list[_Version]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return _Version(self.keys[i].as_py(), int(self.commit_ts[i]))


# what a coverage keeps uncounted: a snapshot's writes, or live versions as columns
_Pending = Union[Sequence[binlog_pb2.SnapshotWrite], _Versions, _BatchVersions]


def inherit(pieces: list[Coverage], start: bytes, end: bytes) -> Coverage | None:
    """The coverage of [start, end) that ``pieces`` (each a true statement of what the replica
    holds) give together: per key the highest floor any piece has, and every version any
    piece counts above it. None where some key of the range has no piece (or a floor of 0):
    the range is then registered from 0."""
    clipped: list[Floor] = []
    for piece in pieces:
        for s, e, ts in piece.floors:
            c = _clip(s, e, start, end)
            if c is not None and ts > 0:
                clipped.append((c[0], c[1], ts))
    if not clipped:
        return None
    # cut the range at every boundary, then take the highest floor over each cut
    bounds = sorted({start, *(s for s, _, _ in clipped), *(e for _, e, _ in clipped if e)} - {b""} | {start})
    floors: list[Floor] = []
    for i, lo in enumerate(bounds):
        hi = bounds[i + 1] if i + 1 < len(bounds) else end
        if hi and lo >= hi:
            continue
        ts = max((f for s, e, f in clipped if ranges_overlap(s, e, lo, hi) and s <= lo and (not e or (hi and e >= hi))),
                 default=0)
        if ts == 0:
            return None  # a gap: some keys of the range are not covered
        if floors and floors[-1][2] == ts and floors[-1][1] == lo:
            floors[-1] = (floors[-1][0], hi, ts)
        else:
            floors.append((lo, hi, ts))
    if not floors or floors[0][0] != start or floors[-1][1] != end:
        return None
    out = Coverage(floors)
    for piece in pieces:
        for key, cts in piece.above_in(start, end):
            if cts > out.floor(_pd_key(key)):
                out.add(key, cts)
    return out


def known_at_snapshot(pieces: list[Coverage], start: bytes, end: bytes, since_ts: int) -> Coverage:
    """What the replica holds of [start, end) when an incremental snapshot registered from
    ``since_ts`` is written: what ``pieces`` say together, and at least every version at or
    below ``since_ts`` (the registration's pieces said that much, and coverages only gain)."""
    known = inherit(pieces, start, end)
    return known if known is not None else Coverage([(start, end, since_ts)])


class EndedCoverages:
    """The coverages of ended registrations, in the order they ended, found by key range.

    A store restarting ends every registration of the store at once: at 100,000 regions tens of
    thousands of coverages, each looked at again when a registration over its range begins or
    writes its snapshot. Kept in a list, each of those walked the whole list (a quadratic storm
    of Python steps); indexed by range (``codec.key_ranges.RangeMembers``), each asks only for
    the ones over its own range."""

    def __init__(self, coverages: Iterable[Coverage] = ()) -> None:
        self._by_serial: dict[int, Coverage] = {}  # in the order added
        self._serial_of: dict[int, int] = {}      # id(coverage) -> serial (each once)
        self._ranges: RangeMembers[int] = RangeMembers()
        self._next = 0
        for c in coverages:
            self.add(c)

    def __len__(self) -> int:
        return len(self._by_serial)

    def __iter__(self) -> Iterator[Coverage]:
        return iter(list(self._by_serial.values()))

    def add(self, coverage: Coverage) -> None:
        """Keep ``coverage`` (a second add of the same one is nothing)."""
        if id(coverage) in self._serial_of:
            return
        serial, self._next = self._next, self._next + 1
        self._by_serial[serial] = coverage
        self._serial_of[id(coverage)] = serial
        self._ranges.add(serial, coverage.start, coverage.end)

    def remove(self, coverage: Coverage) -> None:
        serial = self._serial_of.pop(id(coverage), None)
        if serial is not None:
            del self._by_serial[serial]
            self._ranges.discard(serial)

    def overlapping(self, start: bytes, end: bytes) -> list[Coverage]:
        """The coverages over any part of [start, end), in the order they were added."""
        return [self._by_serial[s] for s in sorted(self._ranges.overlapping(start, end))]
