"""The cyclic garbage collector's pace for a process that holds a large, long-lived heap.

CPython collects a generation each time allocations outnumber deallocations by its threshold
(700 objects for the youngest, then every 10 collections of the one below), and the oldest
generation whenever it grew by a quarter since its last full collection. A process that builds
a heap of millions of long-lived objects (capture registering 100,000 regions: their feeds,
ranges, claims, coverages) then scans the whole heap over and over as it grows: 19 full
collections, 4.7 s of a 15 s run at 100,000 regions (``bench/capture_ceiling.py --regions
100000 --txns 60000``, measured with ``gc.callbacks``). Young objects still die young on the
hot path, and reference counting frees everything that forms no cycle, so the young
generation is collected 70x less often and the old one 100x less, not never: a cycle of
short-lived objects is still found within 50,000 allocations."""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator

YOUNG_THRESHOLD = 50_000  # CPython's default: 700
MIDDLE_EVERY = 20  # young collections per middle one; default 10
OLD_EVERY = 100  # middle collections per full one (and the heap grown by a quarter); default 10


@contextlib.contextmanager
def long_lived_heap() -> Iterator[None]:
    """Collect cycles at the pace of a large long-lived heap while inside; the thresholds in
    force before are restored on leaving (capture may run inside a test's process)."""
    before = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_EVERY, OLD_EVERY)
    try:
        yield
    finally:
        gc.set_threshold(*before)
