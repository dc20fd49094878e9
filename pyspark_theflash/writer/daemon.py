"""Running the writer in the background: a detached process, its pid file in the store
directory, and ``stop`` = SIGTERM then wait for it to finish its batch and exit."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from pyspark_theflash.store.manifest import WRITER_PID_FILE as PID_FILE
from pyspark_theflash.writer.errors import WriterError, WriterNotRunningError

if TYPE_CHECKING:
    from pyspark_theflash.latch.local import LocalLatch


def pid_path(store: str | os.PathLike[str]) -> Path:
    return Path(store) / PID_FILE


def write_pid_file(store: str | os.PathLike[str]) -> Path:
    path = pid_path(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(PID_FILE + ".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(path)
    return path


def remove_pid_file(store: str | os.PathLike[str]) -> None:
    path = pid_path(store)
    try:
        if int(path.read_text().strip() or 0) == os.getpid():
            path.unlink()
    except (FileNotFoundError, ValueError):
        pass


def read_pid(store: str | os.PathLike[str]) -> int | None:
    try:
        return int(pid_path(store).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    from pyspark_theflash.processes import process_is_gone

    return not process_is_gone(pid)


def start_detached(run_argv: Sequence[str], store: str, log_file: str, timeout_s: float = 60.0) -> int:
    """Start ``theflash writer run <run_argv>`` detached (own session, output to ``log_file``);
    return its pid once it is up: it holds the store's write latch and has published its status
    (after its upstream and binlog answered and its read service listens, loop.py). Raises WriterError with
    the log's tail when it exits (or fails) first: a ``--serve`` port in use is the command's error."""
    from pyspark_theflash.latch.local import LocalLatch

    log_path = Path(log_file).resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pyspark_theflash", "writer", "run", *run_argv],
            stdin=devnull,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    # The latch is opened once the writer wrote its pid file (it holds the latch then), and never
    # created here: a store directory this command made would be one the writer did not create,
    # and a run that fails before it is up removes only a directory it created (loop.py).
    latch: LocalLatch | None = None
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                tail = log_path.read_text(errors="replace").splitlines()[-15:]
                raise WriterError(f"the writer exited with status {code} before it was up; {log_path} ends:\n"
                                  + "\n".join(tail))
            if latch is None and read_pid(store) == proc.pid:
                try:
                    latch = LocalLatch(store, create=False)
                except sqlite3.OperationalError:
                    # No latch to open: the writer failed and removed the store it made. Its exit
                    # is seen at the next poll; the latch is tried again while it lives.
                    latch = None
            if latch is not None and _is_up(latch, store, proc.pid):
                return proc.pid
            time.sleep(0.05)
        raise WriterError(f"the writer (pid {proc.pid}) was not up (the write latch held, its upstream and binlog "
                          f"answering, its read service started) within {timeout_s:g}s; see {log_path}")
    finally:
        if latch is not None:
            latch.close()


def _is_up(latch: "LocalLatch", store: str, pid: int) -> bool:
    """The writer ``pid`` holds the latch and the pid file, and has published a status that is
    not a failure (a failed run publishes one too, then exits: the caller sees the exit)."""
    holder = latch.holder()
    if holder is None or holder.pid != pid or read_pid(store) != pid:
        return False
    status = latch.writer_status()
    return status is not None and status.get("pid") == pid and status.get("state") != "failed"


def stop(store: str, timeout_s: float = 60.0) -> int:
    """SIGTERM the store's writer and wait until it exits; returns its pid."""
    pid = read_pid(store)
    if pid is None or not _alive(pid):
        raise WriterNotRunningError(f"no running writer for store {store} (no live pid in {pid_path(store)})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            raise WriterError(f"writer pid {pid} did not exit within {timeout_s}s of SIGTERM; it may be in a long flush or compaction")
        time.sleep(0.05)
    return pid
