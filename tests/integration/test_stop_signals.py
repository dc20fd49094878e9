"""A stop signal reaching a command's main thread while it waits on its stop event must stop
it: the interleaving that once hung a writer under CI (``stop_signals``), made exact here."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# The child holds the stop event's internal lock, as the main thread does for an instant inside
# ``Event.wait``, and signals itself: the handler runs right there, under that lock. A handler
# that called ``Event.set`` itself would wait for the lock forever.
CHILD = textwrap.dedent("""
    import os, signal, sys, threading
    from pyspark_theflash.stop_signals import stop_on_signals

    stop = threading.Event()
    received = []
    stop_on_signals(stop, received.append)
    with stop._cond:
        os.kill(os.getpid(), signal.SIG{name})
        under_lock = list(received)  # the handler ran at the bytecode after the kill, lock still held
    if not stop.wait(10):
        sys.exit("the stop event was never set")
    print(under_lock, received)
""")


@pytest.mark.parametrize("name", ["INT", "TERM"])
def test_a_signal_arriving_while_the_main_thread_holds_the_stop_events_lock_still_stops(name: str) -> None:
    import signal

    child = subprocess.run([sys.executable, "-c", CHILD.replace("{name}", name)], capture_output=True, text=True,
                           timeout=60)
    assert child.returncode == 0, child.stderr
    signum = int(getattr(signal, "SIG" + name))
    assert child.stdout.strip() == f"[{signum}] [{signum}]"  # handled under the lock, and stopped


def test_handlers_are_installed_from_the_main_thread_only() -> None:
    import signal
    import threading

    from pyspark_theflash.stop_signals import stop_on_signals

    before = signal.getsignal(signal.SIGTERM)
    worker = threading.Thread(target=stop_on_signals, args=(threading.Event(),))
    worker.start()
    worker.join()
    assert signal.getsignal(signal.SIGTERM) is before  # no ValueError, nothing replaced
