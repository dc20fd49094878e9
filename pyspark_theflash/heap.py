"""The cyclic garbage collector's pace while a process builds a large, long-lived heap.

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
import threading
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


_paused_lock = threading.Lock()
_paused = 0  # threads inside cyclic_gc_paused()
_resume = False  # whether the first of them found the collector on


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic collector while inside: for work that allocates objects by the
    thousand, all of which live past it or die by reference count (no cycles), so each young
    collection it triggers scans them in vain. An apply allocates one or two objects per row
    (prewrites, lock keys); the collector's scans over the ever larger region caches cost about
    a third of a 2PC apply's CPU (bench/ingest.py --two-phase). Planning a read over 10,000
    regions allocates a few per region; paused over its partitioning only (not its waits):
    222 -> 208 ms of CPU (median of 6, the 10,000-region store of bench/capture_ceiling.py;
    159 ms with the collector off throughout). Threads may overlap: the last one out resumes it."""
    global _paused, _resume
    with _paused_lock:
        if _paused == 0:
            _resume = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _paused_lock:
            _paused -= 1
            if _paused == 0 and _resume:
                gc.enable()
