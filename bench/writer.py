"""The writer job, timed end to end in its own process: a binlog of bank transfers from the
mini cluster, applied by `theflash writer run --until-caught-up`; beside it, the store-only
rate of `bench/ingest.py --two-phase --skip-delta` measured in the same run; then the latency
of a reader's flush request answered by a running writer whose poll interval is a minute.

    .venv/bin/python bench/writer.py                    # 3000 transactions of 2 rows, 4 regions
    .venv/bin/python bench/writer.py --txns 20000 --rows-per-txn 10 --binlog /tmp/bank-20k
                                                        # --binlog: build it once, reuse it after

The binlog is written before any clock starts (by the mini cluster, ~50 s for 20k transactions:
the producer is not what is measured). The writer's figures: wall seconds of the whole process
(interpreter start and imports included, the issue's figure), and the same run's own apply
time (from its first read to caught up and flushed, from the writer's log), each as binlog rows
(PREWRITE and COMMIT rows each count) and committed rows per second. The ratio compares
committed rows per second with ingest's operations per second (each a committed row).
Prints the figures and ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build_binlog(binlog: Path, cluster_dir: Path, args: argparse.Namespace) -> None:
    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.tidb import make_column, record_key

    with MiniCluster(cluster_dir, binlog_dir=binlog, resolved_ts_interval=0) as up:
        table = up.create_table("bank.accounts", [make_column("id", "BIGINT", not_null=True),
                                                  make_column("balance", "BIGINT")], primary_key=["id"])
        step = max(1, args.accounts // args.regions)
        for h in range(step, args.accounts, step):
            up.split_at(record_key(table, h))
        up.run_txn(lambda t: [t.insert("bank.accounts", {"id": i, "balance": 1000}) for i in range(args.accounts)],
                   one_pc=False)
        rng = random.Random(1)
        for n in range(args.txns):
            ids = rng.sample(range(args.accounts), args.rows_per_txn)
            up.run_txn(lambda t, ids=ids: [t.update("bank.accounts", {"id": i, "balance": rng.randint(0, 9999)})
                                           for i in ids], one_pc=(n % 2 == 0))
        up.advance_resolved_ts()


def run_writer(binlog: Path, store: Path, log: Path) -> dict[str, float]:
    """One `writer run --until-caught-up` on a fresh store: wall seconds of the process, the
    seconds from its first read to its exit (its log's first and last lines), its counts."""
    from pyspark_theflash import latch as latch_mod
    from pyspark_theflash.store import Store

    shutil.rmtree(store, ignore_errors=True)
    log.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pyspark_theflash", "writer", "run", "--binlog", binlog.as_uri(), "--store",
           str(store), "--until-caught-up", "--log", str(log)]
    started, cpu0 = time.perf_counter(), os.times()
    run = subprocess.run(cmd, capture_output=True, text=True)
    took, cpu1 = time.perf_counter() - started, os.times()
    if run.returncode != 0:
        raise SystemExit(f"writer run failed:\n{run.stderr}")
    with latch_mod.connect(store) as latch:
        status = latch.writer_status() or {}
    with Store.open(store, readonly=True) as flash:  # committed rows: the versions the store holds
        committed = sum(int((t["delta"] or {}).get("rows", 0)) + int((t["stable"] or {}).get("rows", 0))
                        for t in flash.status()["tables"])
    return {"wall_s": took, "cpu_s": (cpu1.children_user - cpu0.children_user) + (cpu1.children_system - cpu0.children_system),
            "apply_s": _logged_seconds(log), "events": int(status["events_total"]), "rows": int(status["rows_total"]),
            "committed": committed}


def _logged_seconds(log: Path) -> float:
    """Seconds between the writer's first log line (it logs when it starts reading) and its
    last (stopped, after the final flush), from their timestamps."""
    stamps = [line[:23] for line in log.read_text().splitlines() if line[:4].isdigit()]
    first, last = (time.mktime(time.strptime(s[:19], "%Y-%m-%d %H:%M:%S")) + int(s[20:23]) / 1000
                   for s in (stamps[0], stamps[-1]))
    return last - first


def run_ingest(rows: int) -> dict[str, float]:
    """bench/ingest.py --two-phase --skip-delta: the store alone applying pre-built columnar
    2PC batches (50k operations a batch) with the pipelined flush."""
    cmd = [sys.executable, str(ROOT / "bench" / "ingest.py"), "--two-phase", "--skip-delta", "--rows", str(rows),
           "--keys", str(max(rows // 2, 50_000))]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"bench/ingest.py failed:\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txns", type=int, default=3000)
    parser.add_argument("--rows-per-txn", type=int, default=2)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--flush-requests", type=int, default=20)
    parser.add_argument("--binlog", help="a directory for the binlog: built there if missing, reused if present "
                                         "(it must have been built with the same --txns/--rows-per-txn/...)")
    parser.add_argument("--runs", type=int, default=1, help="writer runs on the same binlog (each on a fresh store)")
    parser.add_argument("--ingest-rows", type=int, default=1_000_000,
                        help="operations for the bench/ingest.py --two-phase baseline (0: skip it)")
    args = parser.parse_args()

    from pyspark_theflash import latch as latch_mod
    from pyspark_theflash.upstream.cluster import MiniCluster

    work = Path(tempfile.mkdtemp(prefix="theflash-bench-writer-"))
    try:
        binlog = Path(args.binlog).resolve() if args.binlog else work / "binlog"
        cluster_dir = binlog.parent / (binlog.name + ".cluster")
        if not (binlog.is_dir() and any(binlog.iterdir())):
            t0 = time.perf_counter()
            build_binlog(binlog, cluster_dir, args)
            print(f"binlog built by the mini cluster in {time.perf_counter() - t0:.1f}s (not timed): {binlog}",
                  flush=True)
        store = work / "store"
        runs = [run_writer(binlog, store, work / "run.log") for _ in range(args.runs)]
        best = min(runs, key=lambda r: r["wall_s"])
        events, rows, committed = best["events"], best["rows"], best["committed"]
        for r in runs:
            print(f"writer run --until-caught-up: {events} events, {rows} binlog rows ({committed} committed) in "
                  f"{r['wall_s']:.2f}s wall, process start included ({r['cpu_s']:.2f}s CPU): "
                  f"{events / r['wall_s']:,.0f} events/s, {rows / r['wall_s']:,.0f} rows/s "
                  f"({committed / r['wall_s']:,.0f} committed/s); first read to exit {r['apply_s']:.2f}s: "
                  f"{rows / r['apply_s']:,.0f} rows/s", flush=True)
        result: dict[str, object] = {
            "txns": args.txns, "rows_per_txn": args.rows_per_txn, "events": events, "rows": rows,
            "committed_rows": committed, "runs": len(runs), "wall_s": round(best["wall_s"], 2),
            "cpu_s": round(best["cpu_s"], 2), "apply_s": round(best["apply_s"], 2),
            "events_per_s_wall": round(events / best["wall_s"]), "rows_per_s_wall": round(rows / best["wall_s"]),
            "committed_per_s_wall": round(committed / best["wall_s"]),
            "rows_per_s_apply": round(rows / best["apply_s"]),
            "wall_s_all": [round(r["wall_s"], 2) for r in runs],
        }
        if args.ingest_rows:
            ingest = run_ingest(args.ingest_rows)
            rate = float(ingest["theflash_rows_per_s"])
            ratio = committed / best["wall_s"] / rate
            print(f"baseline bench/ingest.py --two-phase --skip-delta --rows {args.ingest_rows}: {rate:,.0f} "
                  f"operations/s (committed rows, store only, pre-built batches); writer/ingest, committed rows per "
                  f"second wall: {ratio:.3f} (1/{1 / ratio:.1f}); from first read: "
                  f"{committed / best['apply_s'] / rate:.3f}", flush=True)
            result.update({"ingest_two_phase_rows_per_s": round(rate), "ratio_to_ingest_wall": round(ratio, 4),
                           "ratio_to_ingest_apply": round(committed / best["apply_s"] / rate, 4)})

        latencies = []
        with MiniCluster(work / "live", binlog_dir=work / "live-binlog", resolved_ts_interval=0) as up:
            addresses = up.serve()
            from pyspark_theflash.upstream.tidb import make_column

            up.create_table("bank.accounts", [make_column("id", "BIGINT", not_null=True),
                                              make_column("balance", "BIGINT")], primary_key=["id"])
            up.run_txn(lambda t: [t.insert("bank.accounts", {"id": i, "balance": 1000}) for i in range(args.accounts)])
            live_store = work / "live-store"
            writer = subprocess.Popen(
                [sys.executable, "-m", "pyspark_theflash", "writer", "run", "--binlog", (work / "live-binlog").as_uri(),
                 "--store", str(live_store), "--upstream", addresses["upstream"], "--interval", "60s",
                 "--flush-interval", "60s"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                with latch_mod.connect(live_store) as latch:
                    while (latch.writer_status() or {}).get("state") != "running" or latch.holder() is None:
                        time.sleep(0.05)
                    regions = [int(r.id) for r in up.regions()]
                    for i in range(args.flush_requests):
                        up.run_txn(lambda t, i=i: t.update("bank.accounts", {"id": i % args.accounts, "balance": i}))
                        read_index = {r: up.read_index(r) for r in regions}
                        t0 = time.perf_counter()
                        latch.wait_flush(latch.request_flush(regions, read_index), timeout_s=30)
                        latencies.append(time.perf_counter() - t0)
            finally:
                writer.terminate()
                writer.wait(30)
        result.update({"flush_request_ms_median": round(statistics.median(latencies) * 1000, 1),
                       "flush_request_ms_max": round(max(latencies) * 1000, 1)})
        print(f"flush request (writer polling every 60s): median {result['flush_request_ms_median']} ms, "
              f"max {result['flush_request_ms_max']} ms over {len(latencies)} requests")
        print(json.dumps(result))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
