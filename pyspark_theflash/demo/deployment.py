"""A local deployment of the whole product for the demo and the notebook: the mini cluster
(with workloads), ``theflash capture`` and the writer as child processes, their logs in files,
addresses parsed from what they print. The path is the one a TiDB user runs: capture reads the
mini cluster through PD, TiKV's change-data feed and TiDB's status port into a binlog
directory, the writer applies it, and readers reach the cluster through ``pd://``. Everything
binds to 127.0.0.1."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pyspark_theflash.codec.tso import physical_ms
from pyspark_theflash.errors import TheFlashError

class DeploymentError(TheFlashError):
    """A process of the local deployment failed to start or died; names its log file."""


STARTUP_TIMEOUT_S = 120.0
SERVING = re.compile(r"serving upstream (\S+)\s+binlog (\S+)\s+status (\S+)\s+pd (\S+)")
CAPTURING = re.compile(r"capture: capturing (\d+) region")


class Child:
    """A subprocess whose output goes to a log file (and, until `ready`, is scanned)."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[str] = open(log_path, "w", buffering=1)
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._lines: list[str] = []
        self._seen = threading.Condition()
        self._pump = threading.Thread(target=self._drain, name=f"{name}-log", daemon=True)
        self._pump.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._log.write(line)
            with self._seen:
                self._lines.append(line)
                self._seen.notify_all()
        # Its output ended: reap it as it exits, so that it leaves no zombie behind. A Jupyter
        # kernel shutting down signals its children until none is left, zombies included, and
        # is killed (before its atexit handlers run) when that takes longer than it is given.
        self.proc.wait()
        with self._seen:
            self._seen.notify_all()

    def wait_for(self, pattern: re.Pattern[str], timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        checked = 0
        with self._seen:
            while True:
                for line in self._lines[checked:]:
                    m = pattern.search(line)
                    if m:
                        return m
                checked = len(self._lines)
                if self.proc.poll() is not None and not self._pump.is_alive():
                    raise DeploymentError(f"{self.name} exited with status {self.proc.returncode}; see {self.log_path}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeploymentError(f"{self.name} did not start within {timeout_s:.0f}s; see {self.log_path}")
                self._seen.wait(min(left, 0.5))

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise DeploymentError(f"{self.name} exited with status {self.proc.returncode}; see {self.log_path}")

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._pump.join(5)
        self._log.close()
        return self.proc.returncode


def theflash(*args: str) -> list[str]:
    return [sys.executable, "-m", "pyspark_theflash", *args]


def wait_for_tables(store_dir: Path, names: list[str], timeout_s: float) -> None:
    """Until the writer has stored the schemas of `names` (it fetches them on first sight)."""
    from pyspark_theflash.store import Store

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (store_dir / "manifest.db").exists():
            with Store.open(store_dir, readonly=True) as store, contextlib.closing(store.snapshot()) as view:
                have = {f"{t.db}.{t.name}" for t in view.tables()}
            if set(names) <= have:
                return
        time.sleep(0.2)
    raise DeploymentError(f"the writer did not bring in {', '.join(names)} within {timeout_s:.0f}s")


def store_lag_ms(store_dir: Path, now_ts: int) -> float:
    """How far the replica trails the upstream: now minus the oldest region's resolved ts."""
    from pyspark_theflash.store import Store

    with Store.open(store_dir, readonly=True) as store, contextlib.closing(store.snapshot()) as view:
        resolved = [r.resolved_ts for r in view.regions() if r.resolved_ts]
    if not resolved:
        return float("nan")
    return max(0.0, physical_ms(now_ts) - physical_ms(min(resolved)))



@dataclass
class LocalDeployment:
    """``theflash upstream --serve 0`` with workloads, and ``theflash writer run`` on its
    binlog stream into ``work/store``. Use as a context manager; ``stop()`` is idempotent."""

    work: Path
    workloads: str = "bank,orders"
    rate: float = 40.0
    accounts: int = 200
    faults: str = "dying=0.03,rollback=0.02"
    region_split_keys: int = 150
    writer_interval: str = "100ms"
    tables: tuple[str, ...] = ("bank.accounts", "shop.orders", "shop.order_items")
    stores: int = 2
    upstream_address: str = ""  # pd://... of the mini cluster: what readers and the writer use
    binlog_address: str = ""  # file://... of capture's binlog directory
    status_address: str = ""  # http://... of the mini cluster's TiDB status port
    children: list[Child] = field(default_factory=list)

    @property
    def store(self) -> Path:
        return self.work / "store"

    def start(self) -> "LocalDeployment":
        self.work.mkdir(parents=True, exist_ok=True)
        upstream = Child("upstream", theflash(
            "upstream", "--data", str(self.work / "cluster"), "--serve", "0", "--stores", str(self.stores),
            "--workload", self.workloads, "--rate", str(self.rate), "--accounts", str(self.accounts),
            "--faults", self.faults, "--region-split-keys", str(self.region_split_keys), "--lock-grace", "1",
        ), self.work / "upstream.log")
        self.children.append(upstream)
        m = upstream.wait_for(SERVING, STARTUP_TIMEOUT_S)
        self.status_address, self.upstream_address = m.group(3), m.group(4)
        binlog = self.work / "binlog"
        capture = Child("capture", theflash(
            "capture", "--pd", self.upstream_address.removeprefix("pd://"), "--tidb", self.status_address,
            "--binlog", str(binlog),
        ), self.work / "capture.log")
        self.children.append(capture)
        capture.wait_for(CAPTURING, STARTUP_TIMEOUT_S)
        self.binlog_address = f"file://{binlog}"
        writer = Child("writer", theflash(
            "writer", "run", "--binlog", self.binlog_address, "--store", str(self.store),
            "--upstream", self.upstream_address, "--interval", self.writer_interval,
        ), self.work / "writer.log")
        self.children.append(writer)
        wait_for_tables(self.store, list(self.tables), STARTUP_TIMEOUT_S)
        return self

    def check_alive(self) -> None:
        for child in self.children:
            child.check_alive()

    def stop(self) -> None:
        while self.children:  # the writer first: it finishes its batch while the upstream still serves
            self.children.pop().stop()

    def __enter__(self) -> "LocalDeployment":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
