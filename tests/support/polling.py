"""Waiting in tests: poll a condition with a deadline, never sleep blindly."""
from __future__ import annotations

import time
from typing import Any, Callable


def wait_for(predicate: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition",
             interval_s: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy and return that; fail the test
    naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)
