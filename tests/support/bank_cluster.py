"""A mini cluster in its own process for the writer's end-to-end tests: serves the upstream,
status port and binlog (file and gRPC), creates ``bank.accounts`` split over several regions,
and runs the bank workload (1PC transfers that keep the total constant) until told to stop.

    python tests/support/bank_cluster.py --data D --binlog B --ready FILE [--accounts 20]

Writes {"upstream", "status", "binlog_grpc", "binlog_file", "total", "accounts"} to FILE when
serving. SIGUSR1: stop the workload, then write {"ts", "balances"} (the table at a fresh ts)
to FILE.final. SIGTERM: shut down.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import threading
from pathlib import Path

from pyspark_theflash.stop_signals import set_from_handler
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.tidb import make_column, record_key

TABLE = "bank.accounts"
INITIAL_BALANCE = 1000


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--binlog", required=True)
    parser.add_argument("--ready", required=True)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--pause-ms", type=float, default=2.0, help="sleep between transfers")
    args = parser.parse_args()

    cluster = MiniCluster(args.data, binlog_dir=args.binlog, resolved_ts_interval=0.05, segment_bytes=256 << 10)
    addresses = cluster.serve()
    table = cluster.create_table(
        TABLE, [make_column("id", "BIGINT", not_null=True), make_column("balance", "BIGINT")], primary_key=["id"]
    )
    cluster.create_table("shop.items", [make_column("id", "BIGINT", not_null=True), make_column("name", "VARCHAR(64)")], primary_key=["id"])
    step = max(1, args.accounts // args.regions)
    for handle in range(step, args.accounts, step):
        cluster.split_at(record_key(table, handle))

    def seed(txn) -> None:
        for i in range(args.accounts):
            txn.insert(TABLE, {"id": i, "balance": INITIAL_BALANCE})
        txn.insert("shop.items", {"id": 1, "name": "not replicated when --tables bank.*"})

    cluster.run_txn(seed, one_pc=False)
    ready = Path(args.ready)
    _write_json(ready, {
        "upstream": addresses["upstream"],
        "status": "http://" + addresses["status"].removeprefix("http://"),
        "binlog_grpc": addresses["binlog"],
        "binlog_file": Path(args.binlog).resolve().as_uri(),
        "accounts": args.accounts,
        "total": args.accounts * INITIAL_BALANCE,
        "pid": os.getpid(),
    })

    stop_workload = threading.Event()
    finished = threading.Event()
    rng = random.Random(7)

    def transfer(txn) -> None:
        a, b = rng.sample(range(args.accounts), 2)
        amount = rng.randint(1, 50)
        src, dst = txn.get(TABLE, a), txn.get(TABLE, b)
        txn.update(TABLE, {"id": a, "balance": src["balance"] - amount})
        txn.update(TABLE, {"id": b, "balance": dst["balance"] + amount})

    def workload() -> None:
        n = 0
        while not stop_workload.is_set():
            cluster.run_txn(transfer, one_pc=(n % 3 != 0))  # a third 2PC: locks, commits, resolved ts
            n += 1
            stop_workload.wait(args.pause_ms / 1000)
        finished.set()

    worker = threading.Thread(target=workload, daemon=True)
    worker.start()

    def on_usr1(*_: object) -> None:
        set_from_handler(stop_workload)

    stopped = threading.Event()
    signal.signal(signal.SIGUSR1, on_usr1)
    # Event.set inside a handler can deadlock the main thread waiting on it (stop_signals.py)
    signal.signal(signal.SIGTERM, lambda *_: set_from_handler(stopped))
    while not stopped.is_set():
        if stop_workload.is_set() and finished.wait(0.05) and not Path(args.ready + ".final").exists():
            ts = cluster.get_ts()
            rows = cluster.scan_table(TABLE, ts)
            _write_json(Path(args.ready + ".final"), {"ts": ts, "balances": {str(r["id"]): r["balance"] for r in rows}})
        stopped.wait(0.05)
    stop_workload.set()
    worker.join(10)
    cluster.close()


if __name__ == "__main__":
    main()
