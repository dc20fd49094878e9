"""The current registrations as columns: what a resolved ts is checked against and moves.

TiKV sends one ``ResolvedTs`` listing every region of a connection that advanced, each second
(``BATCH_RESOLVED_TS``): at 100,000 regions that is 100,000 region ids a message. Looking each
up in capture's dict of registrations, checking it and setting its resolved ts was a Python
step per region and message (docs/capture.md, "Many regions"). :class:`RegionTable` holds one
row per current registration — region id, generation, store, whether initialised, the resolved
ts written and the ts its coverage was last raised to — in arrays by slot: a registration keeps
its slot for its life (``add``, ``remove``; a freed slot is reused), and its ``RegionFeed``
reads and writes those fields in its row. One message's ids are found with one ``searchsorted``
over an index by id, built again (one sort, no Python step per region) only after a
registration began or ended, and checked and moved with a few array operations.
"""
from __future__ import annotations

import itertools
from typing import Iterator, Sequence

import numpy as np

from pyspark_theflash.capture.lock_resolution import LaggingRegion
from pyspark_theflash.capture.region_feed import RegionFeed
from pyspark_theflash.codec.tso import LOGICAL_BITS

_FREE = -1  # the id of a slot no registration holds


class RegionTable:
    """Columns over the current registrations, a row (slot) each (``add``/``remove``)."""

    def __init__(self) -> None:
        self.ids = np.zeros(0, np.int64)
        self.gens = np.zeros(0, np.int64)
        self.stores = np.zeros(0, np.int64)
        self.ready = np.zeros(0, bool)           # initialised: its resolved ts may move
        self.sent = np.zeros(0, bool)            # its request is sent to the store (capture/registration_pacer.py)
        self.resolved = np.zeros(0, np.uint64)   # the resolved ts written for it (RegionFeed.resolved_ts)
        self.covered = np.zeros(0, np.uint64)    # its coverage's floors rise to it (RegionFeed.covered_ts)
        # its region's last binlog index: one counter per region across its registrations, here
        # while the region has a current registration and in ``_index_ended`` while it has none
        # (a dict of every region's was ~44 bytes a region)
        self.index = np.zeros(0, np.int64)
        self._index_ended: dict[int, int] = {}
        # the range of each region's last registration that ended with none after it (a current
        # one's is its RegionFeed's): a resolved ts speaks of the range it was given for
        self._range_ended: dict[int, tuple[bytes, bytes]] = {}
        self.by_slot: list[RegionFeed | None] = []  # the RegionFeed of each slot (None: free)
        self._free: list[int] = []
        # region id -> its current registration (its row: ``slot``): one per region, and capture's
        # only map of them (``Capture.feeds``; a second dict of slots was ~44 bytes a region)
        self.by_id: dict[int, RegionFeed] = {}
        self._slots_by_id: np.ndarray | None = None    # the used slots in region-id order (None: build again)
        self._sorted_ids = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.by_slot) - len(self._free)

    def add(self, feed: RegionFeed) -> None:
        """A registration began: its row holds its resolved ts and readiness from now on. (A row
        of the same region still here is a registration this one replaces: it ends.)"""
        stale = self.by_id.get(feed.id)
        if stale is not None:
            self.remove(stale)
        if self._free:
            slot = self._free.pop()
        else:
            slot = len(self.by_slot)
            if slot == len(self.ids):
                self._grow(max(64, 2 * slot))
            self.by_slot.append(None)
        resolved, ready = feed.resolved_ts, feed.initialized
        self.ids[slot], self.gens[slot], self.stores[slot] = feed.id, feed.gen, feed.store_id
        self.ready[slot], self.resolved[slot], self.covered[slot] = ready, resolved, feed.covered_ts
        self.sent[slot] = False
        self.index[slot] = self._index_ended.pop(feed.id, 0)
        self._range_ended.pop(feed.id, None)
        self.by_slot[slot] = feed
        self.by_id[feed.id] = feed
        feed.attach(self, slot)
        self._slots_by_id = None

    def remove(self, feed: RegionFeed) -> None:
        """A registration ended: its fields go back to its ``RegionFeed``, its slot is free."""
        slot = feed.slot
        if not 0 <= slot < len(self.by_slot) or self.by_slot[slot] is not feed:
            return  # not one of this table's rows (ended already)
        feed.detach()
        del self.by_id[feed.id]
        if self.index[slot]:
            self._index_ended[feed.id] = int(self.index[slot])
        self._range_ended[feed.id] = (feed.start, feed.end)
        self.by_slot[slot] = None
        self.ids[slot], self.ready[slot] = _FREE, False
        self._free.append(slot)
        self._slots_by_id = None

    def _grow(self, cap: int) -> None:
        def grown(a: np.ndarray, fill: object) -> np.ndarray:
            out = np.full(cap, fill, a.dtype)
            out[:len(a)] = a
            return out

        self.ids, self.gens, self.stores = grown(self.ids, _FREE), grown(self.gens, 0), grown(self.stores, 0)
        self.ready, self.resolved, self.covered = grown(self.ready, False), grown(self.resolved, 0), \
            grown(self.covered, 0)
        self.index = grown(self.index, 0)
        self.sent = grown(self.sent, False)

    def used(self) -> np.ndarray:
        """The slots of the current registrations, in region-id order."""
        if self._slots_by_id is None:
            n = len(self.by_slot)
            slots = np.flatnonzero(self.ids[:n] != _FREE)
            self._slots_by_id = slots[np.argsort(self.ids[slots], kind="stable")]
            self._sorted_ids = self.ids[self._slots_by_id]
        return self._slots_by_id

    def find(self, region_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each id, the slot of its registration and whether it has one at all (the table
        must hold a registration: a slot is always a used one)."""
        slots = self.used()
        assert len(slots), "find in an empty region table"
        pos = np.minimum(np.searchsorted(self._sorted_ids, region_ids), len(slots) - 1)
        return slots[pos], self._sorted_ids[pos] == region_ids

    def _live(self) -> np.ndarray:
        """Per slot, whether a current registration holds it: a mask, no sort (``used`` sorts the
        slots by id again after every registration that began or ended, which a registration
        storm does every loop)."""
        live: np.ndarray = self.ids[:len(self.by_slot)] != _FREE
        return live

    def least_resolved(self) -> int:
        """The least resolved ts over the current registrations (0 without one)."""
        live = self._live()
        return int(self.resolved[:len(live)][live].min()) if live.any() else 0

    def all_resolved(self) -> bool:
        """Whether every current registration has a resolved ts written (and there is one)."""
        live = self._live()
        return bool(live.any()) and bool((self.resolved[:len(live)][live] > 0).all())

    def count_ready(self) -> int:
        live = self._live()
        return int(self.ready[:len(live)][live].sum())

    def mark_sent(self, feed: RegionFeed) -> None:
        """The registration's request is sent to its store: it is in flight until initialised."""
        self.sent[feed.slot] = True

    def in_flight_by_store(self) -> dict[int, int]:
        """Per store, its current registrations sent and not yet initialised (no sort of the
        whole table: a mask over the rows, then the few in flight counted by store)."""
        n = len(self.by_slot)
        flying = self._live() & self.sent[:n] & ~self.ready[:n]
        stores, counts = np.unique(self.stores[:n][flying], return_counts=True)
        return dict(zip(stores.tolist(), counts.tolist()))

    def lagging(self, ts: int, lag_ms: int) -> list[LaggingRegion]:
        """The initialised registrations whose resolved ts is ``lag_ms`` or more behind ``ts``
        (a fresh PD ts), found as arrays: asked at every DDL poll, up to 20 times a second."""
        used = self.used()
        resolved = self.resolved[used].astype(np.int64)
        behind = used[self.ready[used] & (resolved > 0) & ((ts >> LOGICAL_BITS) - (resolved >> LOGICAL_BITS) >= lag_ms)]
        return [LaggingRegion(f.id, f.start, f.end, f.resolved_ts)
                for f in (self.by_slot[i] for i in behind.tolist()) if f is not None]

    def last_range(self, region_id: int) -> tuple[bytes, bytes] | None:
        """The range of the region's last registration by this process (None: it has had none)."""
        feed = self.by_id.get(region_id)
        return (feed.start, feed.end) if feed is not None else self._range_ended.get(region_id)

    # each region's binlog index (its events are numbered 1, 2, ... across its registrations)

    def last_index(self, region_id: int) -> int:
        """The index of the region's last event written (0: none)."""
        feed = self.by_id.get(region_id)
        return int(self.index[feed.slot]) if feed is not None else self._index_ended.get(region_id, 0)

    def raise_index(self, region_id: int, index: int) -> None:
        """The region's event ``index`` is written (read back from the binlog)."""
        feed = self.by_id.get(region_id)
        if feed is not None:
            self.index[feed.slot] = max(int(self.index[feed.slot]), index)
        elif index > self._index_ended.get(region_id, 0):
            self._index_ended[region_id] = index

    def next_indexes(self, region_ids: Sequence[int]) -> list[int]:
        """Each region's next index, taken: one step of NumPy where every region has a current
        registration and none is named twice (a message's runs: one a region)."""
        by_id = self.by_id
        found = [by_id.get(rid) for rid in region_ids]
        if all(f is not None for f in found) and len(set(region_ids)) == len(region_ids):
            slots = np.fromiter((f.slot for f in found if f is not None), np.int64, len(found))
            self.index[slots] += 1
            out: list[int] = self.index[slots].tolist()
            return out
        return [self.next_index(rid) for rid in region_ids]

    def next_index(self, region_id: int) -> int:
        """The region's next index, taken."""
        feed = self.by_id.get(region_id)
        if feed is not None:
            self.index[feed.slot] += 1
            return int(self.index[feed.slot])
        index = self._index_ended.get(region_id, 0) + 1
        self._index_ended[region_id] = index
        return index

    def indexes(self) -> Iterator[tuple[int, int]]:
        """(region id, last index) of every region with an event written, as of this call (copied
        now, made as iterated: the state file is written from another thread)."""
        ended = list(self._index_ended.items())
        used = self.used()
        written = used[self.index[used] > 0]
        ids, index = self.ids[written], self.index[written]  # (copies)
        return itertools.chain(ended, _pairs(ids, index))

    def any_index(self) -> bool:
        """Whether any region has an event written."""
        return bool(self._index_ended) or bool((self.index[self.used()] > 0).any())


def greatest_resolved(raised: Sequence[tuple[np.ndarray, int]]) -> list[tuple[int, int]]:
    """Resolved ts events as (region ids, ts), folded: each region once, with its greatest ts
    (a resolved ts lists every region, several a second; what keeps the greatest per region
    takes them so, once, instead of a step per region and event)."""
    if not raised:
        return []
    ids, tss = greatest_resolved_arrays(raised)
    return list(zip(ids.tolist(), tss.tolist()))


def greatest_resolved_arrays(raised: Sequence[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
    """``greatest_resolved`` as two arrays: the region ids in order, and the greatest ts of each."""
    ids = np.concatenate([np.asarray(i, np.int64) for i, _ in raised])
    tss = np.concatenate([np.full(len(i), t, np.int64) for i, t in raised])
    return _greatest(ids, tss)


def _greatest(ids: np.ndarray, tss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((tss, ids))
    ids, tss = ids[order], tss[order]
    last = np.append(ids[1:] != ids[:-1], True)
    return ids[last], tss[last]


class ResolvedFold:
    """Resolved ts events folded as they come into each region's greatest ts, until taken
    (``take``): the first event's regions become a sorted column, and each next event raises
    the ones it lists with a bisection and a maximum; regions it adds wait beside it and are
    sorted in at the take. A capture's resolved ts events list the same regions event after
    event, so what kept every event to sort them at the take (400,000 pairs a second at
    10,000 regions, 17 ms of the resume points' 19 ms fold) is one pass an event."""

    def __init__(self) -> None:
        self._ids = np.zeros(0, np.int64)
        self._ts = np.zeros(0, np.int64)
        self._rest: list[tuple[np.ndarray, int]] = []  # events' regions not in the column
        # the last event whose regions were all in the column, and their places in it
        self._last: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0, np.intp))

    def __bool__(self) -> bool:
        return bool(len(self._ids)) or bool(self._rest)

    def add(self, region_ids: np.ndarray, ts: int) -> None:
        region_ids = np.asarray(region_ids, np.int64)
        if not len(region_ids):
            return
        if not len(self._ids):
            self._ids = np.unique(region_ids)  # (sorted, each once)
            self._ts = np.full(len(self._ids), ts, np.int64)
            return
        last_ids, last_at = self._last
        if len(region_ids) == len(last_ids) and np.array_equal(region_ids, last_ids):
            at = last_at  # the regions of the event before, in the same order: their places too
        else:
            at = np.minimum(np.searchsorted(self._ids, region_ids), len(self._ids) - 1)
            known = self._ids[at] == region_ids
            if not known.all():
                self._rest.append((region_ids[~known], ts))
                at = at[known]
            else:
                self._last = (region_ids, at)
        self._ts[at] = np.maximum(self._ts[at], ts)  # (a region listed twice gets the same ts twice)

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        """The region ids in order and the greatest ts of each since the last take; empties it."""
        ids, tss = self._ids, self._ts
        if self._rest:
            ids, tss = _greatest(np.concatenate([ids, *(i for i, _ in self._rest)]),
                                 np.concatenate([tss, *(np.full(len(i), t, np.int64) for i, t in self._rest)]))
        self._ids, self._ts, self._rest = np.zeros(0, np.int64), np.zeros(0, np.int64), []
        self._last = (np.zeros(0, np.int64), np.zeros(0, np.intp))
        return ids, tss


class WrittenResolved:
    """Each region's greatest resolved ts written to the binlog, as two arrays in region-id
    order (a dict of them was ~100 bytes a region). A resolved ts event (``add``: the moved
    regions' ids and the ts) raises the regions it finds at once, a bisection and a maximum over
    arrays; regions not listed yet are kept as they come and folded in when next asked. (Kept
    until asked, every event of a second, 10,000 regions each, was one sort of 400,000 pairs
    on capture's loop when the state was taken: 20-50 ms of CPU that commits waited out.)"""

    CHUNK = 4096  # (region, ts) pairs made Python ints at once (``items``)

    def __init__(self, saved: dict[int, int] | None = None) -> None:
        pairs = sorted((saved or {}).items())
        self._ids = np.array([r for r, _ in pairs], np.int64)
        self._ts = np.array([t for _, t in pairs], np.int64)
        self._raised: list[tuple[np.ndarray, int]] = []
        # the last event whose regions were all in the arrays, and their places there
        self._last: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0, np.intp))

    def add(self, region_ids: np.ndarray, ts: int) -> None:
        ids, region_ids = self._ids, np.asarray(region_ids, np.int64)
        if len(ids) and len(region_ids):
            last_ids, last_at = self._last
            if len(region_ids) == len(last_ids) and np.array_equal(region_ids, last_ids):
                at, known = last_at, None  # the regions of the event before, in its order: their places too
            else:
                at = np.minimum(np.searchsorted(ids, region_ids), len(ids) - 1)
                known = ids[at] == region_ids
                if known.all():
                    self._last, known = (region_ids, at), None
                else:
                    at = at[known]  # (an event lists a region once)
            if len(at):
                # a new array, not the old one changed in place: ``items`` hands out the arrays
                self._ts = raised = self._ts.copy()
                raised[at] = np.maximum(raised[at], ts)
            if known is None:
                return
            region_ids = region_ids[~known]
        self._raised.append((region_ids, ts))

    def _settle(self) -> None:
        if not self._raised:
            return
        raised, self._raised = self._raised, []
        ids = np.concatenate([self._ids, *(np.asarray(i, np.int64) for i, _ in raised)])
        tss = np.concatenate([self._ts, *(np.full(len(i), t, np.int64) for i, t in raised)])
        order = np.lexsort((tss, ids))
        ids, tss = ids[order], tss[order]
        last = np.append(ids[1:] != ids[:-1], True)  # each region once, with its greatest ts
        self._ids, self._ts = ids[last], tss[last]
        self._last = (np.zeros(0, np.int64), np.zeros(0, np.intp))  # (the places moved)

    def get(self, region_id: int, default: int = 0) -> int:
        self._settle()
        i = int(np.searchsorted(self._ids, region_id))
        return int(self._ts[i]) if i < len(self._ids) and self._ids[i] == region_id else default

    def __len__(self) -> int:
        self._settle()
        return len(self._ids)

    def items(self) -> Iterator[tuple[int, int]]:
        """(region id, ts) in region-id order as of this call, made a chunk at a time as iterated
        (the arrays are replaced, never changed in place: ``_settle``)."""
        self._settle()
        return _pairs(self._ids, self._ts, self.CHUNK)

    def as_dict(self) -> dict[int, int]:
        return dict(self.items())


def _pairs(a: np.ndarray, b: np.ndarray, chunk: int = 4096) -> Iterator[tuple[int, int]]:
    """(a[i], b[i]) as Python ints, made ``chunk`` at a time."""
    for lo in range(0, len(a), chunk):
        yield from zip(a[lo:lo + chunk].tolist(), b[lo:lo + chunk].tolist())
