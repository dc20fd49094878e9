"""The read benchmarks' upstream and writer, each in a process of its own, as they run in
production: TiDB/TiKV on other machines, the writer a job beside Spark.

``UpstreamProcess`` runs this file as a child (``python bench/live_rig.py ROOT``): a mini
cluster serving its upstream gRPC API, writing its binlog under ``ROOT/binlog``, that loads
the benchmark table and runs the live update workload when asked. Requests and answers are
JSON lines on the child's stdin and stdout. ``WriterProcess`` is ``theflash writer run`` on
that binlog. Neither shares the benchmark's Python interpreter, so the Spark driver's planning
is not slowed by their threads holding its GIL (they still share the machine's cores).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TABLE = "bench.wide"


def print_log_tails(work: Path, lines: int = 10) -> None:
    """The last lines of each child's ``*.log`` in ``work`` to stderr: what a failed bench run
    shows before its error."""
    for log in sorted(work.glob("*.log")):
        print(f"--- the last lines of {log.name}:", *log.read_text(errors="replace").splitlines()[-lines:],
              sep="\n", file=sys.stderr)


def columns() -> list[tuple[str, str]]:
    cols = [("id", "BIGINT"), ("k", "INT")]
    cols += [(f"n{i}", "BIGINT") for i in range(4)]
    cols += [(f"x{i}", "DOUBLE") for i in range(3)]
    cols += [(f"s{i}", "VARCHAR(32)") for i in range(3)]
    cols += [("amount", "DECIMAL(12,2)"), ("day", "DATE"), ("at", "DATETIME"), ("flag", "TINYINT")]
    return cols


# -- the benchmark's side -----------------------------------------------------------------------
class JsonLinesChild:
    """A child process spoken to in JSON lines: one request a line on its stdin, one answer a
    line on its stdout (``{"error": ...}`` when it failed); the first line is its hello."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the upstream process ended (rc {self.process.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise SystemExit(f"the upstream process failed: {answer['error']}")
        return answer

    def ask(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.process.stdin.flush()
        return self._answer()


class UpstreamProcess(JsonLinesChild):
    """The mini cluster in a child process; each method is one request."""

    def __init__(self, root: Path) -> None:
        self.root = root
        super().__init__([sys.executable, str(Path(__file__).resolve()), str(root)])
        hello = self._answer()
        self.upstream: str = hello["upstream"]
        self.binlog: str = hello["binlog"]


    def load(self, rows: int, regions: int, chunk: int, key: str) -> float:
        return float(self.ask("load", rows=rows, regions=regions, chunk=chunk, key=key)["seconds"])

    def get_ts(self) -> int:
        return int(self.ask("ts")["ts"])

    def start_updates(self, rows: int, rate: float, per_commit: int, key: str) -> None:
        self.ask("start_updates", rows=rows, rate=rate, per_commit=per_commit, key=key)

    def finish_updates(self) -> float:
        """Stop the updates; the commits/s they reached."""
        return float(self.ask("finish_updates")["commits_per_s"])

    def close(self) -> None:
        if self.process.poll() is None:
            # A child that died meanwhile cannot answer; it is reaped (or killed) just below.
            with contextlib.suppress(SystemExit, BrokenPipeError, OSError):
                self.ask("close")
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class WriterProcess:
    """``theflash writer run`` on the upstream's binlog into ``store``, until ``stop``."""

    def __init__(self, upstream: UpstreamProcess, store: str, interval_s: float = 0.1) -> None:
        self.log = open(Path(store).parent / "writer.log", "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pyspark_theflash.cli", "writer", "run", "--binlog", upstream.binlog,
             "--store", store, "--upstream", upstream.upstream, "--interval", str(interval_s),
             "--flush-interval", str(interval_s)], stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        if self.process.returncode not in (0, -signal.SIGINT):
            raise SystemExit(f"the writer exited with {self.process.returncode}: see {self.log.name}")


# -- the child process --------------------------------------------------------------------------
def load(cluster: Any, rows: int, regions: int, chunk: int, key: str) -> float:
    """Create the table, split it into ``regions`` and insert ``rows`` rows through the mini
    cluster's columnar ``bulk_insert`` (TiDB encodings, ``chunk`` rows a transaction)."""
    import datetime as dt
    import decimal

    import numpy as np
    import pyarrow as pa

    from pyspark_theflash.upstream.tidb import make_column, record_key

    clustered = key == "clustered"
    primary_key = ["id", "k"] if clustered else ["id"]
    table = cluster.create_table(TABLE, [make_column(n, t, not_null=(n in primary_key)) for n, t in columns()],
                                 primary_key=primary_key, clustered=True)
    assert bool(table["is_common_handle"]) == clustered
    for i in range(1, regions):
        cluster.split_at(record_key(table, (rows * i // regions, 0) if clustered else rows * i // regions))
    rng = np.random.default_rng(1)
    started = time.monotonic()
    step = max(chunk, 100_000)  # Arrow tables of this many rows; transactions of ``chunk`` rows
    for lo in range(0, rows, step):
        i = np.arange(lo, min(rows, lo + step), dtype=np.int64)
        cents = i % 100000
        cluster.bulk_insert(TABLE, pa.table({
            "id": i, "k": (i % 1000).astype(np.int32), "n0": i * 3, "n1": rng.integers(0, 1 << 40, len(i)),
            "n2": -i, "n3": i % 7, "x0": i / 7.0, "x1": rng.random(len(i)), "x2": (i % 100).astype(np.float64),
            "s0": [f"name-{v:08d}" for v in i], "s1": rng.choice(["red", "green", "blue"], len(i)),
            "s2": [f"{v % 97:04d}-tag" for v in i],
            "amount": pa.array([decimal.Decimal(int(c)).scaleb(-2) for c in cents], pa.decimal128(12, 2)),
            "day": pa.array(np.datetime64("2020-01-01") + (i % 1000).astype("timedelta64[D]"), pa.date32()),
            "at": pa.array(np.datetime64(dt.datetime(2024, 1, 1), "us") + i.astype("timedelta64[s]"), pa.timestamp("us")),
            "flag": (i % 2).astype(np.int8),
        }), txn_rows=chunk)
    return time.monotonic() - started


class LiveUpdates:
    """Paced update transactions over random rows of the whole table, on a thread."""

    def __init__(self, cluster: Any, rows: int, rate: float, per_commit: int, key: str) -> None:
        import random
        import threading

        self.cluster, self.rows, self.rate, self.per_commit, self.key = cluster, rows, rate, per_commit, key
        self.rng = random.Random(7)
        self.commits = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="live-updates", daemon=True)
        self.started = time.monotonic()
        self.thread.start()

    def _run(self) -> None:
        period = 1.0 / self.rate
        due = time.monotonic()
        while not self.stop.is_set():
            ids = self.rng.sample(range(self.rows), self.per_commit)
            try:
                with self.cluster.txn() as t:
                    for i in ids:
                        row = {"id": i, "n0": self.rng.randrange(1 << 30), "x0": self.rng.random()}
                        if self.key == "clustered":
                            row["k"] = i % 1000
                        t.update(TABLE, row)
                self.commits += 1
            except Exception as exc:  # a conflict between two of our own commits cannot happen; say so if it does
                self.errors.append(repr(exc))
            due += period
            delay = due - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
            else:
                due = time.monotonic()  # behind: no burst to catch up

    def finish(self) -> float:
        self.stop.set()
        self.thread.join()
        if self.errors:
            raise RuntimeError(f"live updates failed: {self.errors[:3]}")
        return self.commits / (time.monotonic() - self.started)


def serve(root: Path) -> None:
    from pyspark_theflash.upstream.cluster import MiniCluster

    out = sys.stdout
    sys.stdout = sys.stderr  # anything the cluster prints stays off the answer channel
    cluster = MiniCluster(root / "cluster", binlog_dir=root / "binlog", resolved_ts_interval=0.05)
    updates: LiveUpdates | None = None
    try:
        addresses = cluster.serve(binlog_port=None)
        out.write(json.dumps({"upstream": addresses["upstream"], "binlog": (root / "binlog").resolve().as_uri()}) + "\n")
        out.flush()
        for line in sys.stdin:
            request = json.loads(line)
            op = request.pop("op")
            try:
                if op == "load":
                    answer: dict[str, Any] = {"seconds": load(cluster, **request)}
                elif op == "ts":
                    answer = {"ts": int(cluster.get_ts())}
                elif op == "start_updates":
                    updates = LiveUpdates(cluster, **request)
                    answer = {}
                elif op == "finish_updates":
                    assert updates is not None, "no updates are running"
                    answer = {"commits_per_s": updates.finish()}
                    updates = None
                elif op == "close":
                    out.write("{}\n")
                    out.flush()
                    return
                else:
                    answer = {"error": f"unknown request {op!r}"}
            except Exception as exc:
                answer = {"error": f"{op}: {type(exc).__name__}: {exc}"}
            out.write(json.dumps(answer) + "\n")
            out.flush()
    finally:
        if updates is not None:
            updates.stop.set()
        cluster.close()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    serve(Path(sys.argv[1]))
