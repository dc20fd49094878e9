"""The writer job, timed end to end in its own process: a binlog of bank transfers from the
mini cluster, applied by `theflash writer run --until-caught-up`; then the latency of a
reader's flush request answered by a running writer whose poll interval is a minute.

    .venv/bin/python bench/writer.py                    # 3000 transactions of 2 rows, 4 regions
    .venv/bin/python bench/writer.py --txns 10000 --rows-per-txn 10

Prints the figures and one JSON line. The binlog is built before the clock starts.
"""
from __future__ import annotations

import argparse
import json
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txns", type=int, default=3000)
    parser.add_argument("--rows-per-txn", type=int, default=2)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--flush-requests", type=int, default=20)
    args = parser.parse_args()

    from pyspark_theflash import latch as latch_mod
    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.tidb import make_column, record_key

    work = Path(tempfile.mkdtemp(prefix="theflash-bench-writer-"))
    try:
        binlog = work / "binlog"
        with MiniCluster(work / "cluster", binlog_dir=binlog, resolved_ts_interval=0) as up:
            addresses = up.serve()
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
                up.run_txn(lambda t, ids=ids: [t.update("bank.accounts", {"id": i, "balance": rng.randint(0, 9999)}) for i in ids],
                           one_pc=(n % 2 == 0))
            up.advance_resolved_ts()

            store = work / "store"
            cmd = [sys.executable, "-m", "pyspark_theflash", "writer", "run", "--binlog", binlog.as_uri(), "--store",
                   str(store), "--upstream", addresses["upstream"], "--until-caught-up", "--log", str(work / "run.log")]
            started = time.perf_counter()
            run = subprocess.run(cmd, capture_output=True, text=True)
            took = time.perf_counter() - started
            if run.returncode != 0:
                print(run.stderr, file=sys.stderr)
                return 1
            with latch_mod.connect(store) as latch:
                status = latch.writer_status() or {}
            events, rows = int(status["events_total"]), int(status["rows_total"])

            writer = subprocess.Popen(
                [sys.executable, "-m", "pyspark_theflash", "writer", "run", "--binlog", binlog.as_uri(), "--store",
                 str(store), "--upstream", addresses["upstream"], "--interval", "60s", "--flush-interval", "60s"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            latencies = []
            with latch_mod.connect(store) as latch:
                while (latch.writer_status() or {}).get("state") != "running" or latch.holder() is None:
                    time.sleep(0.05)
                regions = [int(r.id) for r in up.regions()]
                for i in range(args.flush_requests):
                    up.run_txn(lambda t, i=i: t.update("bank.accounts", {"id": i % args.accounts, "balance": i}))
                    read_index = {r: up.read_index(r) for r in regions}
                    t0 = time.perf_counter()
                    latch.wait_flush(latch.request_flush(regions, read_index), timeout_s=30)
                    latencies.append(time.perf_counter() - t0)
            writer.terminate()
            writer.wait(30)
        result = {
            "txns": args.txns, "rows_per_txn": args.rows_per_txn, "events": events, "rows": rows,
            "wall_s": round(took, 2), "events_per_s_wall": round(events / took), "rows_per_s_wall": round(rows / took),
            "flush_request_ms_median": round(statistics.median(latencies) * 1000, 1),
            "flush_request_ms_max": round(max(latencies) * 1000, 1),
        }
        print(f"writer run --until-caught-up: {events} events, {rows} rows in {took:.2f}s wall (process start "
              f"included): {result['events_per_s_wall']} events/s, {result['rows_per_s_wall']} rows/s")
        print(f"flush request (writer polling every 60s): median {result['flush_request_ms_median']} ms, "
              f"max {result['flush_request_ms_max']} ms over {len(latencies)} requests")
        print(json.dumps(result))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
