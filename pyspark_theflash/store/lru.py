"""A per-process cache of values derived from immutable part files, bounded by bytes."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

V = TypeVar("V")


class BytesLRU(Generic[V]):
    """Values by key, least recently used dropped first once their sizes exceed ``capacity``
    bytes. Thread-safe; a value bigger than the whole capacity is returned but not kept. Keys
    name immutable things (part files never change and their names are never reused), so a
    value never goes stale."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: "OrderedDict[Hashable, tuple[V, int]]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], tuple[V, int]]) -> V:
        """The value of ``key``; ``load()`` gives (value, size in bytes) on a miss (called
        outside the lock: two threads may both load a key, and one of them is kept)."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit[0]
        value, size = load()
        with self._lock:
            if key not in self._items and size <= self.capacity:
                self._items[key] = (value, size)
                self._bytes += size
                while self._bytes > self.capacity:
                    _key, (_value, dropped) = self._items.popitem(last=False)
                    self._bytes -= dropped
        return value

    def __len__(self) -> int:
        return len(self._items)
