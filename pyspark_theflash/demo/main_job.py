"""The demo: the whole product on the embedded default, as three processes and a Spark session.

    upstream (mini cluster + bank and orders workloads, dying transactions, region splits)
      └─ binlog over gRPC ─► writer (`theflash writer run`) ─► store directory
                                                               ▲
    this process: a local Spark session reading `format("theflash")` at fresh snapshot ts

It prints what a data engineer wants to see: every bank total exact while transfers run,
how far the replica trails the upstream, and two tables read at one ts with no torn
transaction between them. Exit status 0 only when every check held.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

from pyspark_theflash.codec.tso import physical_ms

STARTUP_TIMEOUT_S = 120.0
SERVING = re.compile(r"serving upstream (\S+)\s+binlog (\S+)\s+status (\S+)")


@dataclass
class DemoConfig:
    workdir: str | None = None
    queries: int = 8
    rate: float = 40.0
    accounts: int = 200
    initial: int = 1000  # the bank workload's opening balance per account
    query_gap_s: float = 1.5
    keep: bool = False


class DemoFailure(Exception):
    """A step of the demo could not run; the message says which and where its log is."""


def say(text: str = "") -> None:
    print(text, flush=True)


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
                    raise DemoFailure(f"{self.name} exited with status {self.proc.returncode}; see {self.log_path}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DemoFailure(f"{self.name} did not start within {timeout_s:.0f}s; see {self.log_path}")
                self._seen.wait(min(left, 0.5))

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise DemoFailure(f"{self.name} exited with status {self.proc.returncode}; see {self.log_path}")

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


@contextlib.contextmanager
def working_directory(config: DemoConfig) -> Iterator[Path]:
    """The given directory, or a temporary one removed afterwards unless the demo failed
    (its logs are what a user needs then) or ``keep`` was asked for."""
    if config.workdir:
        path = Path(config.workdir).resolve()
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="theflash-demo-"))
    keep = config.keep
    try:
        yield path
    except BaseException:
        keep = True
        raise
    finally:
        if keep:
            say(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


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
    raise DemoFailure(f"the writer did not bring in {', '.join(names)} within {timeout_s:.0f}s")


def store_lag_ms(store_dir: Path, now_ts: int) -> float:
    """How far the replica trails the upstream: now minus the oldest region's resolved ts."""
    from pyspark_theflash.store import Store

    with Store.open(store_dir, readonly=True) as store, contextlib.closing(store.snapshot()) as view:
        resolved = [r.resolved_ts for r in view.regions() if r.resolved_ts]
    if not resolved:
        return float("nan")
    return max(0.0, physical_ms(now_ts) - physical_ms(min(resolved)))


def run_demo(config: DemoConfig) -> int:
    with working_directory(config) as work, contextlib.ExitStack() as stack:
        store_dir = work / "store"
        say("TheFlash for Spark: demo on the embedded mini cluster")
        say(f"  working directory {work}")
        say("")
        say("[1/5] upstream: mini cluster with the bank and orders workloads "
            f"({config.rate:g} txn/s each; some transactions die after prewrite; regions split)")
        upstream = Child("upstream", theflash(
            "upstream", "--data", str(work / "cluster"), "--serve", "0",
            "--workload", "bank,orders", "--rate", str(config.rate), "--accounts", str(config.accounts),
            "--faults", "dying=0.03,rollback=0.02", "--region-split-keys", "150", "--lock-grace", "1",
        ), work / "upstream.log")
        stack.callback(upstream.stop)
        m = upstream.wait_for(SERVING, STARTUP_TIMEOUT_S)
        upstream_addr, binlog_addr, status_addr = m.group(1), m.group(2), m.group(3)
        say(f"      upstream {upstream_addr}   binlog {binlog_addr}   status {status_addr}")

        say("[2/5] writer: binlog stream -> store (poll interval 100ms)")
        writer = Child("writer", theflash(
            "writer", "run", "--binlog", binlog_addr, "--store", str(store_dir),
            "--upstream", upstream_addr, "--interval", "100ms",
        ), work / "writer.log")
        stack.callback(writer.stop)
        wait_for_tables(store_dir, ["bank.accounts", "shop.orders", "shop.order_items"], STARTUP_TIMEOUT_S)
        say(f"      store {store_dir}")

        say("[3/5] Spark: starting a local session")
        from pyspark.sql import functions as F

        from pyspark_theflash.spark.session import theflash_session
        from pyspark_theflash.upstream.client import connect

        spark = theflash_session(master="local[2]", app_name="theflash-demo")
        spark.sparkContext.setLogLevel("ERROR")
        stack.callback(spark.stop)
        client = connect(upstream_addr)
        stack.callback(client.close)

        def read(table: str, ts: int) -> Any:
            return (spark.read.format("theflash").option("store", str(store_dir))
                    .option("upstream", upstream_addr).option("snapshot_ts", str(ts)).load(table))

        expected = config.accounts * config.initial
        say(f"[4/5] bank.accounts while transfers run: the total must be {expected} at every snapshot")
        say(f"      {'#':>2}  {'snapshot ts':>20}  {'accounts':>8}  {'total':>9}  {'check':>5}  "
            f"{'query ms':>8}  {'replica lag ms':>14}")
        latencies: list[float] = []
        lags: list[float] = []
        failures = 0
        for i in range(1, config.queries + 1):
            upstream.check_alive()
            writer.check_alive()
            ts = client.get_ts()
            began = time.monotonic()
            row = read("bank.accounts", ts).agg(F.count("*").alias("n"), F.sum("balance").alias("total")).first()
            elapsed_ms = (time.monotonic() - began) * 1000
            lag = store_lag_ms(store_dir, client.get_ts())
            ok = row["n"] == config.accounts and row["total"] == expected
            failures += not ok
            latencies.append(elapsed_ms)
            lags.append(lag)
            say(f"      {i:>2}  {ts:>20}  {row['n']:>8}  {row['total']:>9}  {'ok' if ok else 'FAIL':>5}  "
                f"{elapsed_ms:>8.0f}  {lag:>14.0f}")
            time.sleep(config.query_gap_s)

        say("[5/5] shop.orders and shop.order_items at one snapshot ts")
        ts = client.get_ts()
        orders, items = read("shop.orders", ts), read("shop.order_items", ts)
        orphans = items.join(orders, items.order_id == orders.id, "left_anti").count()
        by_status = (orders.groupBy("status").agg(F.count("*").alias("orders"), F.sum("total").alias("revenue"))
                     .orderBy("status").collect())
        n_items = items.count()
        say(f"      ts {ts}: {sum(r['orders'] for r in by_status)} orders, {n_items} items, "
            f"{orphans} items without their order ({'ok' if orphans == 0 else 'FAIL'})")
        for r in by_status:
            say(f"        {str(r['status']):>10}  {r['orders']:>6} orders  revenue {r['revenue']}")
        failures += orphans != 0

        say("")
        say("Report")
        say(f"  bank totals exact      {config.queries - min(failures, config.queries)}/{config.queries}")
        say(f"  query latency          median {statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms "
            "(includes the learner read: waiting for every region to reach the snapshot)")
        finite = [x for x in lags if x == x]
        if finite:
            say(f"  replica lag            median {statistics.median(finite):.0f} ms, max {max(finite):.0f} ms "
                "(upstream now minus the oldest region's resolved ts in the store)")
        say(f"  cross-table snapshot   {'consistent' if orphans == 0 else 'TORN'}")
        say(f"  logs                   {work / 'upstream.log'}, {work / 'writer.log'}")
        if failures:
            raise DemoFailure(f"{failures} checks failed; see the logs above")
        say("DEMO PASSED")
        return 0
