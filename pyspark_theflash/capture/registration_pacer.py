"""Registrations sent to a store at the pace its initial scans finish.

Each registration makes TiKV's CDC endpoint queue an incremental scan of the region; it runs
``incremental-scan-concurrency`` of them at a time (6) and queues the rest, refusing a task
with ``server_is_busy`` past ``incremental-scan-concurrency-limit`` (10,000), a limit added
after a client's 1.6 million re-sent registrations took a TiKV down (tikv/tikv#16035: after a
stream breaks, a client sends every region of the store again). TiCDC keeps at most
``region-scan-limit`` (40) of a table's regions of one store scanning. Capture does the same
per store: a registration is *in flight* from its request until the region's ``INITIALIZED``
(or its end); at most ``limit`` are in flight on a store, and the others wait here, in the
order they were made, until scans finish. So 100,000 regions registered at once, or a store's
20,000 after it restarted, reach TiKV as a steady stream instead of a storm of busy errors.

The count in flight is read from the region table's columns each time (sent and not
initialised, by store), not kept as a counter: a registration that ended any way (an error, a
split, a broken stream, a newer registration of the region) leaves the count by itself.
"""
from __future__ import annotations

from collections import deque
from typing import Callable, Iterator

from pyspark_theflash.capture.region_feed import RegionFeed
from pyspark_theflash.capture.region_table import RegionTable

DEFAULT_SCAN_LIMIT = 4096  # registrations in flight per store (TiKV queues up to 10,000 scans)


class RegistrationPacer:
    """The registrations made but not sent yet, per store (``add``); ``due`` gives those the
    stores have room for now."""

    def __init__(self, limit: int = DEFAULT_SCAN_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"the registrations in flight per store must be at least 1, not {limit}")
        self.limit = limit
        self._waiting: dict[int, deque[RegionFeed]] = {}

    def __len__(self) -> int:
        """Registrations waiting to be sent."""
        return sum(len(q) for q in self._waiting.values())

    def add(self, feed: RegionFeed) -> None:
        self._waiting.setdefault(feed.store_id, deque()).append(feed)

    def forget_store(self, store_id: int) -> None:
        """The store's stream broke: its registrations ended, none of them is to be sent."""
        self._waiting.pop(store_id, None)

    def due(self, table: RegionTable, current: Callable[[RegionFeed], bool]) -> Iterator[RegionFeed]:
        """The waiting registrations to send now, in order, each still ``current`` (one that
        ended or was replaced while it waited is passed over): up to ``limit`` in flight per
        store. The caller sends each and marks it sent (``RegionTable.mark_sent``) as it is given."""
        if not self._waiting:
            return
        in_flight = table.in_flight_by_store()
        for store_id in list(self._waiting):
            waiting = self._waiting[store_id]
            room = self.limit - in_flight.get(store_id, 0)
            while waiting and room > 0:
                feed = waiting.popleft()
                if current(feed):
                    room -= 1
                    yield feed
            if not waiting:
                del self._waiting[store_id]
