"""Commit-to-visible latency at a steady write rate.

    .venv/bin/python bench/freshness.py                       # 50 commits/s for 20 s, writer interval 100 ms
    .venv/bin/python bench/freshness.py --rate 200 --interval 0.5

A mini cluster commits one-row transactions at ``--rate`` per second while the writer applies
the binlog to the store with poll/flush interval ``--interval``; the writer runs in its own
process (``theflash writer run``, as an operator runs it), so it competes with the producer for
cores, not for one interpreter's lock. Two latencies per commit:

* passive (phase 1, nobody reads): from the commit until the store's persisted state holds it
  (the region's applied index, as a reader sees it in the manifest, reaches the index upstream
  had right after the commit) — how stale a reader that does not wait could be; set by the
  writer's interval;
* read-your-commit (phase 2, half as many commits): a snapshot read planned right after the
  commit (every ``--probe-every``-th): snapshot ts from the TSO, learner read (read index,
  flush request answered by the writer within one poll, wait for the applied index), lock
  resolution and partitions — the time until a query that must see the commit may start.

Prints p50/p99/max of both and ends with one JSON line.
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

TABLE = "fresh.events"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="commits per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=0.1, help="writer poll/flush interval (s)")
    parser.add_argument("--probe-every", type=int, default=10, help="plan a read after every n-th commit")
    args = parser.parse_args()

    from flash_rig import FlashRig

    from pyspark_theflash.scan import plan
    from pyspark_theflash.store import Store
    from pyspark_theflash.upstream.tidb import make_column, record_range

    work = Path(tempfile.mkdtemp(prefix="theflash-bench-fresh-"))
    rig = FlashRig(work, via="binlog")  # the read-index path; bench/capture.py measures the capture path
    try:
        info = rig.cluster.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("v", "BIGINT")],
                                        primary_key=["id"])
        with rig.cluster.txn() as t:
            t.insert(TABLE, {"id": 0, "v": 0})
        writer_log = work / "writer.log"
        writer = subprocess.Popen(
            [sys.executable, "-m", "pyspark_theflash", "writer", "run", "--binlog", rig.binlog, "--store", rig.store,
             "--upstream", rig.upstream, "--interval", f"{args.interval}s", "--flush-interval", f"{args.interval}s",
             "--log", str(writer_log)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rig.wait_replicated(TABLE)
        # the table's region of its own: the commit's raft index is the region's
        region_id = rig.cluster.store.regions.locate(record_range(info["id"])[0]).id
        pending: list[tuple[int, float]] = []   # (upstream index after the commit, commit time)
        pending_mu = threading.Lock()
        passive: list[float] = []
        done = threading.Event()

        def watch() -> None:
            """Poll the manifest as a reader would; a commit is visible once applied and flushed."""
            with Store.open(rig.store, readonly=True) as store:
                while not done.is_set() or pending:
                    with store.snapshot() as view:
                        region = view.region(region_id)
                    applied = region.applied_index if region is not None else 0
                    now = time.monotonic()
                    with pending_mu:
                        while pending and pending[0][0] <= applied:
                            passive.append(now - pending.pop(0)[1])
                    if done.is_set() and pending and now - pending[-1][1] > 30:
                        raise SystemExit(f"{len(pending)} commits never became visible")
                    time.sleep(0.002)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        read_your_commit: list[float] = []
        commits = int(args.rate * args.seconds)
        started = time.monotonic()
        next_id = 0

        def commit_steadily(n: int, probe_every: int, phase_started: float) -> None:
            """``n`` commits at the steady rate; a planned read after every ``probe_every``-th."""
            nonlocal next_id
            for i in range(1, n + 1):
                delay = phase_started + i / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # the steady write rate
                next_id += 1
                with rig.cluster.txn() as t:
                    t.insert(TABLE, {"id": next_id, "v": next_id})
                committed_at = time.monotonic()
                index = rig.cluster.read_index(region_id)
                with pending_mu:
                    pending.append((index, committed_at))
                if probe_every and i % probe_every == 0:
                    probe = time.monotonic()
                    with plan(rig.store, TABLE, rig.options()) as p:
                        read_your_commit.append(time.monotonic() - probe)
                        assert p.ts > t.commit_ts

        # Phase 1: nobody reads, so only the writer's interval decides when a commit lands.
        commit_steadily(commits, 0, started)
        phase1_s = time.monotonic() - started
        wait_idle = time.monotonic() + 30
        while pending and time.monotonic() < wait_idle:
            time.sleep(0.01)
        passive_only = list(passive)
        # Phase 2: reads that must see the commit just made (learner read: flush on request).
        commit_steadily(max(1, commits // 2), args.probe_every, time.monotonic())
        done.set()
        watcher.join(60)
        elapsed = phase1_s
        from pyspark_theflash import latch as latch_mod

        with latch_mod.connect(rig.store) as latch:
            status = latch.writer_status() or {}
        writer.terminate()
        if writer.wait(60) != 0:
            print(writer_log.read_text()[-2000:], file=sys.stderr)

        def line(name: str, values: list[float]) -> dict[str, float]:
            p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
            worst = max(values) * 1000 if values else float("nan")
            print(f"{name:<22} n={len(values):<6} p50 {p50:8.1f} ms   p99 {p99:8.1f} ms   max {worst:8.1f} ms")
            return {"n": len(values), "p50_ms": round(p50, 1), "p99_ms": round(p99, 1), "max_ms": round(worst, 1)}

        print(f"{commits} commits in {elapsed:.1f}s ({commits / elapsed:.1f}/s); writer interval {args.interval * 1000:.0f} ms; "
              f"writer flushes {status.get('flushes', '?')}")
        result = {
            "bench": "freshness", "rate": args.rate, "seconds": args.seconds, "interval_s": args.interval,
            "commits": commits, "achieved_rate": round(commits / elapsed, 1),
            "passive": line("commit → in store", passive_only),
            "read_your_commit": line("commit → read planned", read_your_commit),
        }
        print(json.dumps(result))
    finally:
        rig.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
