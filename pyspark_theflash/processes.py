"""Processes on this host, by pid: whether one is gone (a dead owner's pid file or latch holds
nothing). Used by the latch, the writer's and capture's ``stop``."""
from __future__ import annotations

import os


def process_is_gone(pid: int) -> bool:
    """True when no process ``pid`` exists on this host (a dead writer's latch is free)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    # A zombie (killed, not yet reaped by its parent) still answers kill(0); it holds nothing.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False
