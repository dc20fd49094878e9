"""The writer's delta merges (``Store.merge_deltas``) on a thread of their own.

Run on the loop that applies the binlog, a merge round held every commit behind it: at
10,000 regions and 5,000 commits/s a round took 90 ms on average and up to 300 ms, once a
second, in the commit -> readable latency. A merge is the same step ``theflash store
compact`` runs beside a live writer: it plans from a snapshot, builds the merged part without
the store's write lock, and commits one short edit under it, which fails cleanly (the round is
planned again) when a flush changed the partition meanwhile. So it needs nothing of the loop:
the loop starts a round when one is due (``start``), picks up what a finished one did
(``poll``), and a failure is raised there, on the loop, as the inline merge raised it.

A store whose engine keeps the rows itself (ClickHouse) merges records only, cheap and through
the engine's session, which the loop's thread owns: it merges inline (``background=False``).
"""
from __future__ import annotations

import threading
import time
from typing import Protocol

from pyspark_theflash.store.compaction import CompactionResult


class MergingStore(Protocol):
    def merge_deltas(self) -> CompactionResult: ...


class DeltaMerger:
    """At most one merge round at a time, on a daemon thread (or inline)."""

    def __init__(self, store: MergingStore, background: bool = True) -> None:
        self.store = store
        self.background = background
        self._thread: threading.Thread | None = None
        self._done: tuple[CompactionResult, float] | None = None
        self._error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """A round now, unless one runs: on its thread, or inline (then ``poll`` has it)."""
        if self.running:
            return
        if not self.background:
            self._round()
            return
        self._thread = threading.Thread(target=self._round, name="theflash-delta-merge", daemon=True)
        self._thread.start()

    def _round(self) -> None:
        started = time.monotonic()
        try:
            result = self.store.merge_deltas()
        except BaseException as exc:  # raised on the loop by poll()
            self._error = exc
            return
        self._done = (result, time.monotonic() - started)

    def poll(self) -> tuple[CompactionResult, float] | None:
        """What the last finished round did and how long it took (once), or None; raises the
        error that ended it."""
        if self.running:
            return None
        error, self._error = self._error, None
        if error is not None:
            raise error
        done, self._done = self._done, None
        return done

    def join(self) -> None:
        """Wait for a round in flight (before the loop compacts, flushes for the last time or
        closes the store)."""
        thread = self._thread
        if thread is not None:
            thread.join()
