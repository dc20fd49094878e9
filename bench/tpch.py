"""The 22 TPC-H queries on ``format("theflash")`` views against Spark on a Parquet copy of the
same snapshot, side by side in one Spark session.

    .venv/bin/python bench/tpch.py                 # SF 0.1
    .venv/bin/python bench/tpch.py --sf 0.01 --repeat 1
    .venv/bin/python bench/tpch.py --path python   # the Python data source instead of the connector jar

Setup (tests/support/tpch_rig.py, the same as the differential test): duckdb's dbgen generates the
tables; they are created in the mini cluster with TiDB types (lineitem and partsupp with
clustered composite keys), split into regions, loaded through the table API (its columnar
``bulk_insert`` where the cluster has one), replicated by the writer, and compacted. One
snapshot ts is taken; the upstream's own rows at that ts, checked equal to the generated
ones, are written as Parquet.

Each side's DataFrames are loaded once and registered as temporary views, reused by all 22
queries, as a user's session would. The sides alternate query by query (load on the shared
machine hits both alike); each query runs ``--repeat`` times per side, best time kept, after
one warm-up pass of all 22 on both sides. Every answer is compared, as a sorted list of rows
(decimals exact), with Parquet's: the run reports how many of the 22 are equal. Prints per-query
seconds and ratios and the total ratio (sum of theflash times over sum of Parquet times), and
ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))


def timed_best(spark: Any, repeat: int, number: int, text: str) -> tuple[float, list[tuple[Any, ...]]]:
    import tpch_rig

    best, rows = float("inf"), []
    for _ in range(repeat):
        run = tpch_rig.run_query(spark, number, text)
        best, rows = min(best, run.seconds), run.rows
    return best, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sf", type=float, default=0.1, help="TPC-H scale factor")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per query and side (best kept)")
    parser.add_argument("--txn-rows", type=int, default=5_000, help="rows per upstream transaction while loading")
    parser.add_argument("--path", choices=("session", "python"), default="session",
                        help="the theflash side: theflash_session()'s connector jar (default) or the Python data "
                        "source (theflash_session(jvm=False)); one Spark JVM per process, so one per run")
    parser.add_argument("--partitioned", action="store_true",
                        help="lineitem and orders PARTITION BY RANGE COLUMNS on their date, a year a partition")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    import tpch_rig

    from pyspark_theflash.spark.session import close_in_process_service, theflash_session

    work = Path(tempfile.mkdtemp(prefix="theflash-bench-tpch-"))
    deployment = tpch_rig.deploy(work, args.sf, txn_rows=args.txn_rows, partitioned=args.partitioned,
                                 log=lambda m: print(m, flush=True))
    try:
        spark = theflash_session(master="local[2]", app_name="theflash-bench-tpch", jvm=args.path == "session",
                                 **{"spark.ui.showConsoleProgress": "false"})
        spark.sparkContext.setLogLevel("ERROR")
        queries = tpch_rig.queries()
        sides = {"theflash": tpch_rig.theflash_frames(spark, deployment),
                 "parquet": tpch_rig.parquet_frames(spark, deployment)}

        print("warm-up: the 22 queries once on every side ...", flush=True)
        for frames in sides.values():
            tpch_rig.register_views(frames)
            for n, text in queries.items():
                tpch_rig.run_query(spark, n, text)

        header = f"{'query':<7}{'theflash s':>12}{'parquet s':>11}{'ratio':>7}"
        print(f"\ntheflash: {args.path}\n" + header + "  equal")
        results: dict[str, dict[str, Any]] = {}
        unequal: dict[int, str] = {}
        for n, text in queries.items():
            seconds: dict[str, float] = {}
            answers: dict[str, list[tuple[Any, ...]]] = {}
            for side, frames in sides.items():
                tpch_rig.register_views(frames)
                seconds[side], answers[side] = timed_best(spark, args.repeat, n, text)
            wrong = [side for side in sides if side != "parquet" and answers[side] != answers["parquet"]]
            if wrong:
                unequal[n] = "; ".join(f"{side}: " + tpch_rig.describe_difference(answers[side], answers["parquet"])
                                       for side in wrong)
            ratio = seconds["theflash"] / seconds["parquet"]
            results[f"q{n}"] = {"theflash_s": round(seconds["theflash"], 3), "parquet_s": round(seconds["parquet"], 3),
                                "ratio": round(ratio, 2), "rows": len(answers["parquet"]), "equal": not wrong}
            line = f"Q{n:<6}{seconds['theflash']:>12.3f}{seconds['parquet']:>11.3f}{ratio:>7.2f}"
            print(line + ("  yes" if not wrong else "  NO"), flush=True)

        total = {side: sum(r[f"{side}_s"] for r in results.values()) for side in sides}
        total_ratio = total["theflash"] / total["parquet"]
        equal = 22 - len(unequal)
        print(f"\ntotal theflash {total['theflash']:.2f}s, parquet {total['parquet']:.2f}s: ratio {total_ratio:.2f}")
        print(f"equal answers: {equal}/22")
        for n, why in unequal.items():
            print(f"  Q{n}: {why}")
        figures: dict[str, Any] = {
            "bench": "tpch", "path": args.path, "sf": args.sf, "rows": deployment.rows, "snapshot_ts": deployment.ts,
            "setup_s": deployment.timings, "repeat": args.repeat,
            "queries": results, "total_theflash_s": round(total["theflash"], 3),
            "total_parquet_s": round(total["parquet"], 3), "total_ratio": round(total_ratio, 2),
            "equal": equal, "unequal": sorted(unequal)}
        print(json.dumps(figures))
        spark.stop()
    finally:
        close_in_process_service()  # its sessions' leases, before the store goes
        deployment.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
