"""Stopping a long-running command on SIGINT or SIGTERM.

A command's main thread waits on a ``threading.Event`` (``stopped.wait()``, or a loop's idle
wait) and a signal handler sets it. Python runs a handler in the main thread between two
bytecodes, and that may be inside ``Event.wait`` just as it re-acquires the event's internal
lock: ``Event.set`` called right there waits for that same, non-reentrant lock, and the
process hangs forever, deaf to further signals (a writer under CI was caught so: ``py-spy
dump`` showed ``Event.set`` in the handler above ``Condition._acquire_restore``). The handler
here sets the event from a thread of its own, which takes the lock as soon as the main
thread lets it go.
"""
from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Callable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_from_handler(stop: Callable[[], object]) -> None:
    """Call ``stop`` (which sets an Event the main thread may wait on) from a thread of its own:
    safe inside a signal handler (see the module's docstring)."""
    threading.Thread(target=stop, name="stop-signal", daemon=True).start()


def set_from_handler(event: threading.Event) -> None:
    """``event.set()`` that is safe inside a signal handler (see the module's docstring)."""
    run_from_handler(event.set)


def stop_on_signals(stop: threading.Event, note: Callable[[int], object] | None = None) -> None:
    """On SIGINT or SIGTERM call ``note(signum)`` (a log line, the signal to exit with) and
    set ``stop``. Handlers can be installed from the main thread only; elsewhere (a command
    run inside a test's thread) this does nothing and the caller stops by other means."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        if note is not None:
            note(signum)
        set_from_handler(stop)

    for signum in STOP_SIGNALS:
        signal.signal(signum, handler)
