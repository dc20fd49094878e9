"""PD's timestamp oracle: ts = physical_ms << 18 | logical, strictly increasing across
restarts.

Like PD, the oracle persists a high-water mark of the physical clock a window ahead
(``window_ms``) and never hands out a physical time beyond it without saving a new one
first; after a restart it starts above the saved mark, so no timestamp is ever repeated
even when the wall clock went backwards.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from pyspark_theflash.codec.tso import compose_ts  # the one TSO layout

LOGICAL_BITS = 18
MAX_LOGICAL = 1 << LOGICAL_BITS




class TimestampOracle:
    """Thread-safe, persisted TSO. ``path`` None keeps it in memory only (tests of other parts)."""

    def __init__(self, path: Path | None, window_ms: int = 3000) -> None:
        self._path = path
        self._window_ms = window_ms
        self._mu = threading.Lock()
        self._physical = 0
        self._logical = 0
        self._saved_limit = 0
        if path is not None and path.exists():
            saved = json.loads(path.read_text())
            # Everything below the saved limit may have been handed out before the restart.
            self._physical = int(saved["high_water_ms"]) + 1
            self._saved_limit = self._physical

    def get_ts(self, count: int = 1) -> int:
        """Reserve ``count`` consecutive timestamps and return the last of them."""
        count = max(1, count)
        with self._mu:
            now = int(time.time() * 1000)
            if now > self._physical:
                self._physical, self._logical = now, 0
            if self._logical + count >= MAX_LOGICAL:
                self._physical, self._logical = self._physical + 1, 0
            self._logical += count
            if self._physical >= self._saved_limit:
                self._save(self._physical + self._window_ms)
            return compose_ts(self._physical, self._logical)

    def current(self) -> int:
        """The last timestamp handed out (0 before the first)."""
        with self._mu:
            return compose_ts(self._physical, self._logical) if self._physical else 0

    def _save(self, limit_ms: int) -> None:
        if self._path is not None:
            tmp = self._path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"high_water_ms": limit_ms}))
            os.replace(tmp, self._path)
        self._saved_limit = limit_ms
