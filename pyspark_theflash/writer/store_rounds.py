"""The writer's store maintenance rounds (delta merges, compaction with GC) and its Delta
publication rounds, each kind on a thread of its own.

Run on the loop that applies the binlog, each round held every commit behind it: at 10,000
regions and 5,000 commits/s a delta merge round took 90 ms on average and up to 300 ms, once a
second, and a compaction 1.1-1.3 s every 30 s (commit -> readable p99 295 ms over 60 s against
170-214 ms over 20 s without one; a Delta publication round waited behind each). A round is the
step ``theflash store compact`` runs beside a live writer: it plans from a snapshot, builds its
parts without the store's write lock, and commits short edits under it, each failing cleanly
(planned again) when a flush changed the partition meanwhile; every connection it uses is its
thread's own (``Store.thread_connection``). So it needs nothing of the loop: the loop starts a
round when one is due (``start``), one at a time, picks up what a finished one did (``poll``),
and a failure is raised there, on the loop, as the inline round raised it.

A store whose engine keeps the rows itself (ClickHouse) runs its rounds inline
(``background=False``): they go through the engine's session, which the loop's thread owns.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Finished(Generic[R]):
    """A round that ended: its kind, what it returned, how long it took."""

    kind: str
    result: R
    seconds: float


class StoreRounds(Generic[R]):
    """At most one round at a time, on a daemon thread (or inline)."""

    def __init__(self, background: bool = True) -> None:
        self.background = background
        self._thread: threading.Thread | None = None
        self._done: Finished[R] | None = None
        self._error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, kind: str, work: Callable[[], R]) -> bool:
        """Run ``work`` as a round of ``kind`` now, on its thread (or inline: then ``poll`` has
        it); False when a round runs already."""
        if self.running:
            return False
        if not self.background:
            self._round(kind, work)
            return True
        self._thread = threading.Thread(target=self._round, args=(kind, work), name=f"theflash-{kind}", daemon=True)
        self._thread.start()
        return True

    def _round(self, kind: str, work: Callable[[], R]) -> None:
        started = time.monotonic()
        try:
            result = work()
        except BaseException as exc:  # raised on the loop by poll()
            self._error = exc
            return
        self._done = Finished(kind, result, time.monotonic() - started)

    def poll(self) -> Finished[R] | None:
        """The last finished round (once), or None; raises the error that ended it."""
        if self.running:
            return None
        error, self._error = self._error, None
        if error is not None:
            raise error
        done, self._done = self._done, None
        return done

    def join(self) -> None:
        """Wait for a round in flight (before the last flush or the store's close)."""
        thread = self._thread
        if thread is not None:
            thread.join()
