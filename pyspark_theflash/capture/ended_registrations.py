"""Registrations that ended while rows they took may still wait in capture's FIFO.

A registration ends (its region errored, or a reload found the region at a newer epoch) with
its live rows still held until the DDL frontier passes them, and those are written after it
ended. Capture mirrors the writer's rule that a snapshot, split or merge over part of a
region's range retires the whole region in the replica, caches and all (``Capture.
_retire_overlapping``): a registration of a retired region writes no more rows, or a COMMIT
reaches a region whose PREWRITE the retirement dropped. The current registration is found in
the region table; an ended one whose rows wait is found here, so that it too is discarded.

Each is kept until every item held before it ended is released: by then none of its rows
wait, whatever happens to its region. The items are counted as they are held and released
(both in FIFO order), so that is a comparison of two counters, not a search of the FIFO.
"""
from __future__ import annotations

from collections import deque

from pyspark_theflash.capture.region_feed import RegionFeed


class EndedRegistrations:
    """Ended registrations whose snapshot was written and whose rows may still be held."""

    def __init__(self) -> None:
        self._by_region: dict[int, list[RegionFeed]] = {}
        # (the count of items held when it ended, the registration), in the order they ended
        self._order: deque[tuple[int, RegionFeed]] = deque()

    def __len__(self) -> int:
        return len(self._order)

    def ended(self, feed: RegionFeed, held: int, released: int) -> None:
        """``feed`` ended with ``held`` items held so far, ``released`` of them released: kept
        where it wrote its snapshot and some held item (maybe one of its rows) still waits."""
        if feed.written and not feed.discarded and held > released:
            self._order.append((held, feed))
            self._by_region.setdefault(feed.id, []).append(feed)

    def released(self, released: int) -> None:
        """``released`` items are out of the FIFO: a registration that ended with no more held
        than that has nothing left waiting."""
        order = self._order
        while order and order[0][0] <= released:
            _, feed = order.popleft()
            waiting = self._by_region.get(feed.id)
            if waiting is not None:
                if feed in waiting:
                    waiting.remove(feed)
                if not waiting:
                    del self._by_region[feed.id]

    def discard(self, region_id: int) -> list[RegionFeed]:
        """The region was retired in the replica: its ended registrations write no more rows
        (marked ``discarded``, as a current one is). Returns them."""
        feeds = self._by_region.pop(region_id, [])
        for feed in feeds:
            feed.discarded = True
        return feeds
