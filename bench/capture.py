"""`theflash capture` throughput and freshness, beside the mini cluster's own binlog writer.

    .venv/bin/python bench/capture.py                          # 20 s of the bank workload, 2 TiKV stores
    .venv/bin/python bench/capture.py --seconds 10 --rate 500 --probes 40

The mini cluster (serving PD, TiKV stores and TiDB's status port on loopback) runs the bank
workload at ``--rate`` transactions/s for ``--seconds``, writing its own binlog as it commits
(the baseline: the log written in the committing process, no network). In the same run:

* **live capture**: ``theflash capture`` (in its own process, as an operator runs it) follows
  the cluster over the wire into a binlog directory; its events/s and rows/s over the run
  against the mini cluster's own binlog over the same seconds;
* **initial copy**: a second capture started after the workload, copying every retained
  version (rows/s of the snapshots);
* **freshness through capture** (commit → readable): the writer (its own process) applies the
  live capture's binlog; ``--probes`` times a marker row is committed, and the clock runs until
  the store's regions of the table all hold a resolved ts at or above its commit ts — the
  moment a ``pd://`` read at that ts may start;
* **read planning through pd://**: ``--probes`` plans of ``bank.accounts`` at a fresh ts
  (TSO from PD, learner read on resolved ts, locks over TiKV), p50/p99 from "read asked" to
  "plan ready", while the workload writes.

Prints the figures with the ratio against the mini cluster's own writer and ends with one JSON
line. The commit rate the Python mini cluster reaches on this machine bounds ``--rate``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

TABLE = "bank.accounts"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def log_counts(binlog: Path) -> tuple[int, int]:
    """(events, rows) of a binlog directory (snapshot writes count as rows)."""
    from pyspark_theflash.binlog import open_source
    from pyspark_theflash.binlog.rows import row_count

    events = rows = 0
    with open_source(str(binlog)) as source:
        while batch := source.read(20_000, 0.0):
            for pe in batch:
                events += 1
                kind = pe.event.WhichOneof("payload")
                if kind == "entries":
                    rows += row_count(pe.event.entries)
                elif kind == "snapshot":
                    rows += len(pe.event.snapshot.writes)
    return events, rows


def wait_until(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.02)


def min_resolved(store: str, table_id: int) -> int:
    from pyspark_theflash.scan.planner import covering_regions
    from pyspark_theflash.store import Store

    try:
        with Store.open(store, readonly=True) as s, s.snapshot() as view:
            regions = [r for r, _ in covering_regions(view, table_id)]
            return min((int(r.resolved_ts) for r in regions), default=0)
    except Exception:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=300.0, help="bank transactions per second")
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--stores", type=int, default=2)
    parser.add_argument("--probes", type=int, default=30)
    args = parser.parse_args()

    from pyspark_theflash.scan import plan
    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.workloads import BankWorkload

    work = Path(tempfile.mkdtemp(prefix="theflash-bench-capture-"))
    # each child's output goes to a file in the work directory, shown if the run fails
    logs = {"capture": work / "capture.log", "writer": work / "writer.log"}
    children: list[subprocess.Popen[bytes]] = []
    cluster = MiniCluster(work / "cluster", work / "own-binlog", resolved_ts_interval=0.1, region_split_keys=1000)
    try:
        addr = cluster.serve(binlog_port=None, stores=args.stores)
        pd, status = addr["pd"], addr["status"]
        bank = BankWorkload(cluster, accounts=args.accounts, initial=1000, seed=3, threads=2, rate=args.rate)
        bank.setup()
        table_id = cluster.table_info("bank", "accounts")["id"]
        theflash = [sys.executable, "-m", "pyspark_theflash"]
        live_dir, store = work / "live-binlog", str(work / "store")
        capture = subprocess.Popen(theflash + ["capture", "--pd", pd, "--tidb", status, "--binlog", str(live_dir)],
                                   stdout=logs["capture"].open("wb"), stderr=subprocess.STDOUT)
        children.append(capture)
        # the writer refuses a binlog directory that does not exist yet: capture creates it
        wait_until(lambda: live_dir.is_dir() or capture.poll() is not None, 60, "capture to create its binlog")
        writer = subprocess.Popen(theflash + ["writer", "run", "--binlog", f"file://{live_dir}", "--store", store,
                                              "--upstream", pd, "--interval", "50ms", "--flush-interval", "50ms"],
                                  stdout=logs["writer"].open("wb"), stderr=subprocess.STDOUT)
        children.append(writer)
        wait_until(lambda: min_resolved(store, table_id) > 0, 120, "the replica's first resolved ts")
        own_before = log_counts(work / "own-binlog")
        live_before = log_counts(live_dir)

        print(f"bank workload at {args.rate:g} txn/s for {args.seconds:g}s; capture and writer in their own processes",
              flush=True)
        bank.start()
        started = time.monotonic()
        freshness: list[float] = []
        planning: list[float] = []
        probe_gap = args.seconds / max(1, args.probes)
        for i in range(args.probes):
            # freshness: one marker commit, then the time until the replica resolved past it
            handle = i % args.accounts
            cluster.run_txn(lambda t, h=handle: t.update(TABLE, {"id": h, "balance": t.get(TABLE, h)["balance"]}))
            committed_at, commit_ts = time.monotonic(), cluster.get_ts()
            wait_until(lambda: min_resolved(store, table_id) >= commit_ts, 60, "the replica to resolve a commit")
            freshness.append((time.monotonic() - committed_at) * 1000)
            asked = time.monotonic()
            with plan(store, TABLE, {"store": store, "upstream": pd}) as p:
                planning.append((time.monotonic() - asked) * 1000)
                assert p.ts > 0
            time.sleep(max(0.0, started + (i + 1) * probe_gap - time.monotonic()))
        bank.stop()
        elapsed = time.monotonic() - started
        commits = bank.stats.committed
        final = cluster.get_ts()
        wait_until(lambda: min_resolved(store, table_id) >= final, 120, "the replica to catch up")
        caught_up = time.monotonic() - started
        own = [a - b for a, b in zip(log_counts(work / "own-binlog"), own_before)]
        live = [a - b for a, b in zip(log_counts(live_dir), live_before)]
        for child in children:
            child.terminate()
            child.wait(30)
        children.clear()

        copy_dir = work / "copy-binlog"
        copy_started = time.monotonic()
        subprocess.run(theflash + ["capture", "--pd", pd, "--tidb", status, "--binlog", str(copy_dir),
                                   "--until-ts", str(cluster.get_ts())], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        copy_s = time.monotonic() - copy_started
        copy_events, copy_rows = log_counts(copy_dir)
    except BaseException:
        for name, path in logs.items():
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-15:]
                print(f"--- the last lines of {name}'s output:", *tail, sep="\n", file=sys.stderr)
        raise
    finally:
        for child in children:
            child.kill()
        cluster.close()
        shutil.rmtree(work, ignore_errors=True)

    own_rows_s, live_rows_s = own[1] / elapsed, live[1] / caught_up
    figures = {
        "bench": "capture", "seconds": round(elapsed, 1), "commits_per_s": round(commits / elapsed, 1),
        "own_events_per_s": round(own[0] / elapsed), "own_rows_per_s": round(own_rows_s),
        "capture_events_per_s": round(live[0] / caught_up), "capture_rows_per_s": round(live_rows_s),
        "ratio": round(live_rows_s / own_rows_s, 3) if own_rows_s else None,
        "initial_copy_rows_per_s": round(copy_rows / copy_s), "initial_copy_rows": copy_rows,
        "freshness_p50_ms": round(percentile(freshness, 0.5)), "freshness_p99_ms": round(percentile(freshness, 0.99)),
        "plan_p50_ms": round(percentile(planning, 0.5)), "plan_p99_ms": round(percentile(planning, 0.99)),
    }
    print(f"commits                {commits} in {elapsed:.1f}s ({figures['commits_per_s']}/s)")
    print(f"mini cluster's binlog  {figures['own_events_per_s']} events/s, {figures['own_rows_per_s']} rows/s (baseline)")
    print(f"through capture        {figures['capture_events_per_s']} events/s, {figures['capture_rows_per_s']} rows/s "
          f"(ratio {figures['ratio']}x; caught up {caught_up - elapsed:.1f}s after the workload stopped)")
    print(f"initial copy           {copy_rows} rows in {copy_s:.1f}s ({figures['initial_copy_rows_per_s']} rows/s)")
    print(f"commit -> readable     p50 {figures['freshness_p50_ms']} ms, p99 {figures['freshness_p99_ms']} ms "
          "(every region of the table resolved past the commit in the store)")
    print(f"read asked -> planned  p50 {figures['plan_p50_ms']} ms, p99 {figures['plan_p99_ms']} ms (pd://)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
