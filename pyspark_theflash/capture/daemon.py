"""Running capture in the background, as the writer runs: a detached process
(``theflash capture start`` / ``run --daemon``) whose pid file sits beside the binlog
(``capture.pid``, written once it holds the binlog), ``stop`` = SIGTERM, then wait for it to
save its state and exit."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from pyspark_theflash.capture.errors import CaptureError
from pyspark_theflash.capture.status import PID_FILE
from pyspark_theflash.processes import process_is_gone


class CaptureNotRunningError(CaptureError):
    """No live capture process owns the binlog directory."""


def pid_path(binlog: str | os.PathLike[str]) -> Path:
    return Path(binlog) / PID_FILE


def write_pid_file(binlog: str | os.PathLike[str]) -> None:
    path = pid_path(binlog)
    tmp = path.with_name(PID_FILE + ".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(path)


def remove_pid_file(binlog: str | os.PathLike[str]) -> None:
    try:
        if read_pid(binlog) == os.getpid():
            pid_path(binlog).unlink()
    except FileNotFoundError:
        pass


def read_pid(binlog: str | os.PathLike[str]) -> int | None:
    try:
        return int(pid_path(binlog).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def running_pid(binlog: str | os.PathLike[str]) -> int | None:
    """The pid of the live capture process that owns ``binlog``, or None."""
    pid = read_pid(binlog)
    return pid if pid is not None and not process_is_gone(pid) else None


def start_detached(run_argv: Sequence[str], binlog: str, log_file: str, timeout_s: float = 300.0) -> int:
    """Start ``theflash capture run <run_argv>`` detached (its own session, output to
    ``log_file``); its pid once it is up (its pid file names it: it holds the binlog, its ports
    listen, the tables are checked). Raises CaptureError with the log's last lines when it exits
    first, and, naming it, when it is not up within ``timeout_s`` (it goes on starting)."""
    log_path = Path(log_file).resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen([sys.executable, "-m", "pyspark_theflash", "capture", "run", *run_argv],
                                stdin=devnull, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if read_pid(binlog) == proc.pid:
            return proc.pid
        code = proc.poll()
        if code is not None:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            raise CaptureError(f"capture exited with status {code} before it was up; {log_path} ends:\n"
                               + "\n".join(tail))
        time.sleep(0.05)
    raise CaptureError(f"capture (pid {proc.pid}) is not up after {timeout_s:g}s and goes on starting: see {log_path} "
                       f"and `theflash capture status --binlog {binlog}`")


def stop(binlog: str, timeout_s: float = 60.0) -> int:
    """SIGTERM the capture that owns ``binlog`` and wait until it exits; its pid."""
    pid = running_pid(binlog)
    if pid is None:
        raise CaptureNotRunningError(f"no capture is running for --binlog {binlog} (no live pid in {pid_path(binlog)})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while not process_is_gone(pid):
        if time.monotonic() > deadline:
            raise CaptureError(f"capture pid {pid} did not exit within {timeout_s:g}s of SIGTERM")
        time.sleep(0.05)
    return pid
