"""The order of the single writer's manifest edits (``EditLock``).

Flushes, compactions, GC and schema edits commit one at a time, in order. A pipelined flush
takes the lock in its caller and its background thread releases it once its edit is done (a
``threading.Lock`` may be released by any thread), so no other edit comes between its
partition read and its commit; a flush called while one is in flight may follow it, taking
the lock over instead (``flush.FlushPipeline``). A pipelined flush that failed ends every
further edit and write: its failure is kept here and raised to each of them.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator


class EditLock:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        # Pipelined flushes in flight: who holds or hands on the lock, who waits for it.
        self.chain_mutex = threading.Lock()
        self.waiters = 0  # threads waiting in ``editing()`` (a flush then follows none)
        self.failure: BaseException | None = None  # a pipelined flush failed: no more edits or writes
        self.failure_reported = False

    @contextlib.contextmanager
    def editing(self) -> Iterator[None]:
        """The edit lock (after any pending pipelined flush), refusing if that flush failed."""
        with self.chain_mutex:
            self.waiters += 1  # no further pipelined flush follows the pending one
        try:
            self.lock.acquire()
        finally:
            with self.chain_mutex:
                self.waiters -= 1
        try:
            self.raise_failure()
            yield
        finally:
            self.lock.release()

    def raise_failure(self) -> None:
        if self.failure is not None:
            self.failure_reported = True
            raise self.failure
