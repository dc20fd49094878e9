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

from typing import Iterator, Sequence

import numpy as np

from pyspark_theflash.capture.region_feed import RegionFeed

_FREE = -1  # the id of a slot no registration holds


class RegionTable:
    """Columns over the current registrations, a row (slot) each (``add``/``remove``)."""

    def __init__(self) -> None:
        self.ids = np.zeros(0, np.int64)
        self.gens = np.zeros(0, np.int64)
        self.stores = np.zeros(0, np.int64)
        self.ready = np.zeros(0, bool)           # initialised: its resolved ts may move
        self.resolved = np.zeros(0, np.uint64)   # the resolved ts written for it (RegionFeed.resolved_ts)
        self.covered = np.zeros(0, np.uint64)    # its coverage's floors rise to it (RegionFeed.covered_ts)
        self.feeds: list[RegionFeed | None] = []  # the RegionFeed of each slot
        self._free: list[int] = []
        self._slot_of: dict[int, int] = {}       # region id -> its row: one row per region
        self._by_id: np.ndarray | None = None    # the used slots in region-id order (None: build again)
        self._sorted_ids = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.feeds) - len(self._free)

    def add(self, feed: RegionFeed) -> None:
        """A registration began: its row holds its resolved ts and readiness from now on. (A row
        of the same region still here is a registration this one replaces: it ends.)"""
        former = self._slot_of.get(feed.id)
        if former is not None:
            stale = self.feeds[former]
            assert stale is not None
            self.remove(stale)
        if self._free:
            slot = self._free.pop()
        else:
            slot = len(self.feeds)
            if slot == len(self.ids):
                self._grow(max(64, 2 * slot))
            self.feeds.append(None)
        resolved, ready = feed.resolved_ts, feed.initialized
        self.ids[slot], self.gens[slot], self.stores[slot] = feed.id, feed.gen, feed.store_id
        self.ready[slot], self.resolved[slot], self.covered[slot] = ready, resolved, feed.covered_ts
        self.feeds[slot] = feed
        self._slot_of[feed.id] = slot
        feed.attach(self, slot)
        self._by_id = None

    def remove(self, feed: RegionFeed) -> None:
        """A registration ended: its fields go back to its ``RegionFeed``, its slot is free."""
        slot = feed.slot
        if not 0 <= slot < len(self.feeds) or self.feeds[slot] is not feed:
            return  # not one of this table's rows (ended already)
        feed.detach()
        del self._slot_of[feed.id]
        self.feeds[slot] = None
        self.ids[slot], self.ready[slot] = _FREE, False
        self._free.append(slot)
        self._by_id = None

    def _grow(self, cap: int) -> None:
        def grown(a: np.ndarray, fill: object) -> np.ndarray:
            out = np.full(cap, fill, a.dtype)
            out[:len(a)] = a
            return out

        self.ids, self.gens, self.stores = grown(self.ids, _FREE), grown(self.gens, 0), grown(self.stores, 0)
        self.ready, self.resolved, self.covered = grown(self.ready, False), grown(self.resolved, 0), \
            grown(self.covered, 0)

    def used(self) -> np.ndarray:
        """The slots of the current registrations, in region-id order."""
        if self._by_id is None:
            n = len(self.feeds)
            slots = np.flatnonzero(self.ids[:n] != _FREE)
            self._by_id = slots[np.argsort(self.ids[slots], kind="stable")]
            self._sorted_ids = self.ids[self._by_id]
        return self._by_id

    def find(self, region_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each id, the slot of its registration and whether it has one at all (the table
        must hold a registration: a slot is always a used one)."""
        by_id = self.used()
        assert len(by_id), "find in an empty region table"
        pos = np.minimum(np.searchsorted(self._sorted_ids, region_ids), len(by_id) - 1)
        return by_id[pos], self._sorted_ids[pos] == region_ids

    def least_resolved(self) -> int:
        """The least resolved ts over the current registrations (0 without one)."""
        used = self.used()
        return int(self.resolved[used].min()) if len(used) else 0

    def all_resolved(self) -> bool:
        """Whether every current registration has a resolved ts written (and there is one)."""
        used = self.used()
        return bool(len(used)) and bool((self.resolved[used] > 0).all())

    def count_ready(self) -> int:
        return int(self.ready[self.used()].sum())


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
    order = np.lexsort((tss, ids))
    ids, tss = ids[order], tss[order]
    last = np.append(ids[1:] != ids[:-1], True)
    return ids[last], tss[last]


class WrittenResolved:
    """Each region's greatest resolved ts written to the binlog, as two arrays in region-id
    order (a dict of them was ~100 bytes a region). The resolved ts events are kept as they
    come (``add``: the moved regions' ids and the ts) and folded in at once when next asked."""

    CHUNK = 4096  # (region, ts) pairs made Python ints at once (``items``)

    def __init__(self, saved: dict[int, int] | None = None) -> None:
        pairs = sorted((saved or {}).items())
        self._ids = np.array([r for r, _ in pairs], np.int64)
        self._ts = np.array([t for _, t in pairs], np.int64)
        self._raised: list[tuple[np.ndarray, int]] = []

    def add(self, region_ids: np.ndarray, ts: int) -> None:
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

    def get(self, region_id: int, default: int = 0) -> int:
        self._settle()
        i = int(np.searchsorted(self._ids, region_id))
        return int(self._ts[i]) if i < len(self._ids) and self._ids[i] == region_id else default

    def __len__(self) -> int:
        self._settle()
        return len(self._ids)

    def items(self) -> Iterator[tuple[int, int]]:
        """(region id, ts) in region-id order, made a chunk at a time."""
        self._settle()
        ids, tss = self._ids, self._ts
        for lo in range(0, len(ids), self.CHUNK):
            yield from zip(ids[lo:lo + self.CHUNK].tolist(), tss[lo:lo + self.CHUNK].tolist())

    def as_dict(self) -> dict[int, int]:
        return dict(self.items())
