"""What a region registered again costs capture: from what the replica holds (incremental
snapshots, ``since_ts``) against every registration from checkpoint 0 (whole snapshots).

    .venv/bin/python bench/capture_rescan.py                       # 600 bank + 300 orders commits
    .venv/bin/python bench/capture_rescan.py --commits 300 --split-merge 0.1

The mini cluster (PD, two TiKV stores, TiDB's status port on loopback) runs the bank and orders
workloads with splits and merges (``--split-merge``: the share of transactions followed by one),
rolled-back and dying transactions. Two captures follow it side by side in this process, each
into its own binlog: the baseline registers every region from checkpoint 0 each time (its
snapshot rescans every version TiKV holds of the range), the other from what the replica
holds. Both run until every region resolved past the workloads' last commit; then each binlog
is applied version by version as the writer applies it and compared with the upstream's write
CF (both must hold exactly its versions). Prints the rows each wrote (snapshot rows, all rows,
bytes) and the ratio, and ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=600, help="bank transactions (orders: half as many); default 600")
    ap.add_argument("--rate", type=float, default=80.0, help="bank transactions/s (orders: half); default 80")
    ap.add_argument("--split-merge", type=float, default=0.05, help="share of transactions followed by a split or "
                                                                     "merge; default 0.05")
    args = ap.parse_args()

    from capture_rig import Running, binlog_versions, binlog_events, options, run_workloads, upstream_versions

    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.workloads import Faults

    tmp = Path(tempfile.mkdtemp(prefix="capture-rescan-"))
    cluster = MiniCluster(tmp / "up", tmp / "upstream-log", resolved_ts_interval=0.05, region_split_keys=25,
                          expired_lock_grace_s=0.5, gc_run_interval_s=None)
    cluster.serve(stores=2)
    try:
        faults = Faults(split_merge=args.split_merge, rollback=0.05, dying=0.03, dying_ttl_ms=200)
        bank, orders = run_workloads(cluster, faults, count=args.commits, rate=args.rate)
        runs = {name: Running(options(cluster, tmp / name, incremental=incremental))
                for name, incremental in (("from_zero", False), ("incremental", True))}
        started = time.monotonic()
        bank.start()
        orders.start()
        bank.join()
        orders.join()
        final = cluster.get_ts()
        for run in runs.values():
            run.wait_caught_up(final, timeout_s=300)
        seconds = time.monotonic() - started
        skipped = runs["incremental"].capture.rows_skipped
        written = {name: (run.capture.rows_written, run.capture.events_written) for name, run in runs.items()}
        for run in runs.values():
            run.stop()
        upstream = upstream_versions(cluster, final)
        figures: dict[str, object] = {"bench": "capture_rescan", "commits": bank.stats.committed + orders.stats.committed,
                                      "splits_and_merges": bank.stats.splits + bank.stats.merges
                                      + orders.stats.splits + orders.stats.merges,
                                      "seconds": round(seconds, 1), "incremental_versions_skipped": skipped}
        for name in runs:
            events = binlog_events(tmp / name)
            snaps = [ev.snapshot for ev in events if ev.WhichOneof("payload") == "snapshot"]
            held, doubled = binlog_versions(events)
            figures[f"{name}_snapshots"] = len(snaps)
            figures[f"{name}_snapshot_rows"] = sum(len(s.writes) for s in snaps)
            figures[f"{name}_rows"] = written[name][0]
            figures[f"{name}_bytes"] = sum(p.stat().st_size for p in (tmp / name).glob("*.binlog"))
            figures[f"{name}_exact"] = held == upstream and (name == "from_zero" or not doubled)
        figures["ratio_snapshot_rows"] = round(figures["incremental_snapshot_rows"] / max(1, figures["from_zero_snapshot_rows"]), 3)  # type: ignore[operator]
        figures["ratio_rows"] = round(figures["incremental_rows"] / max(1, figures["from_zero_rows"]), 3)  # type: ignore[operator]
    finally:
        cluster.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"workload               {figures['commits']} commits, {figures['splits_and_merges']} splits and merges "
          f"in {figures['seconds']} s")
    for name, label in (("from_zero", "from checkpoint 0"), ("incremental", "incremental")):
        print(f"{label:<22} {figures[f'{name}_snapshots']} snapshots, {figures[f'{name}_snapshot_rows']} snapshot rows, "
              f"{figures[f'{name}_rows']} rows, {figures[f'{name}_bytes']} bytes; versions exact: {figures[f'{name}_exact']}")
    print(f"ratio                  snapshot rows {figures['ratio_snapshot_rows']}x, all rows {figures['ratio_rows']}x "
          f"(incremental / from checkpoint 0)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
