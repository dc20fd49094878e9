"""Change reads and change streams: throughput against a Parquet scan, and a stream's lag.

    .venv/bin/python bench/changes.py                          # 200k rows, 20 s of commits at 1,000/s
    .venv/bin/python bench/changes.py --rows 500000 --rate 500 --seconds 30

Phase 1, throughput, in one run: a table of ``--rows`` rows is loaded, then a tenth of them is
updated once, so the change read (before the load, now] holds 1.2 × rows changes (an insert per
row, a preimage and a postimage per update) over merge-on-read parts. Its changes/s through the connector jar (``format(
"theflash")`` with ``changes_from``, written to Spark's ``noop`` sink), through Arrow Flight
(``get_flight_info`` + ``do_get`` of every stream from ``theflash serve``) and, as the baseline,
Spark's scan of the same change rows from a Parquet file (``spark.read.parquet``, ``noop``).

Phase 2, lag: the mini cluster commits one-row transactions at ``--rate`` per second for
``--seconds`` while a streaming query through the jar (``readStream.format("theflash")``,
``starting_ts=latest``, 100 ms trigger) writes each batch with ``foreachBatch``; a change's lag
is the wall time its batch is written minus its commit's physical time (``_commit_timestamp``).
Prints p50/p99/max over every change and the commit rate reached, and ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

TABLE = "chb.items"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def best_of(runs: int, fn) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="commits per second in the lag phase")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3, help="throughput runs per path (best counts)")
    args = parser.parse_args()

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.flight as flight
    import pyarrow.parquet as pq
    from flash_rig import FlashRig, wait_for

    from pyspark_theflash.scan.change_stream import ChangeStream
    from pyspark_theflash.service import serve
    from pyspark_theflash.spark.session import theflash_session
    from pyspark_theflash.upstream.tidb import make_column

    tmp = Path(tempfile.mkdtemp(prefix="theflash-bench-changes-"))
    rig = FlashRig(tmp, gc_life_time_s=3600)
    out: dict[str, float] = {}
    try:
        rig.cluster.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("name", "VARCHAR(24)"),
                                         make_column("qty", "INT"), make_column("price", "DOUBLE")], primary_key=["id"])
        n = args.rows
        t0 = rig.cluster.get_ts()
        base = pa.table({"id": pa.array(range(n), pa.int64()), "name": [f"name-{i:08d}" for i in range(n)],
                         "qty": pa.array([i % 97 for i in range(n)], pa.int32()),
                         "price": pa.array([i * 0.5 for i in range(n)], pa.float64())})
        rig.cluster.bulk_insert(TABLE, base, txn_rows=20_000)
        for start in range(0, n // 10, 5000):  # a tenth of the rows updated once: pre- and postimages
            with rig.cluster.txn() as t:
                for i in range(start, min(n // 10, start + 5000)):
                    t.update(TABLE, {"id": i, "qty": (i % 97) + 1})
        t1 = rig.cluster.get_ts()
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated(TABLE)
        wait_for(lambda: ChangeStream(rig.store, TABLE, {"upstream": rig.upstream}).resolved_ts() >= t1, 600,
                 "the writer to apply the load")

        with serve(rig.store, port=0) as running:
            spark = theflash_session(master="local[2]", app_name="theflash-bench-changes", server=running.http_url)
            # --- phase 1: throughput -----------------------------------------------------------
            client = flight.FlightClient(running.flight_location)
            request = {"table": TABLE, "snapshot_ts": t1, "changes_from": t0}

            def by_flight() -> pa.Table:
                info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(request)))
                return pa.concat_tables(client.do_get(e.ticket).read_all() for e in info.endpoints)

            changes = by_flight()
            total = changes.num_rows
            parquet = str(tmp / "changes.parquet")
            pq.write_table(changes, parquet)

            def by_jar() -> None:
                (spark.read.format("theflash").option("snapshot_ts", str(t1)).option("changes_from", str(t0))
                 .load(TABLE).write.format("noop").mode("overwrite").save())

            def by_parquet() -> None:
                spark.read.parquet(parquet).write.format("noop").mode("overwrite").save()

            by_jar()
            by_parquet()  # warm both
            out["changes"] = total
            out["flight_changes_per_s"] = total / best_of(args.runs, by_flight)
            out["jar_changes_per_s"] = total / best_of(args.runs, by_jar)
            out["parquet_rows_per_s"] = total / best_of(args.runs, by_parquet)
            print(f"{total:,} changes: jar {out['jar_changes_per_s']:,.0f}/s, Flight {out['flight_changes_per_s']:,.0f}/s, "
                  f"Parquet scan {out['parquet_rows_per_s']:,.0f} rows/s "
                  f"(jar/Parquet {out['jar_changes_per_s'] / out['parquet_rows_per_s']:.2f})")

            # --- phase 2: lag at a steady commit rate ----------------------------------------------
            lags: list[float] = []
            mu = threading.Lock()

            def on_batch(df, _batch_id) -> None:  # type: ignore[no-untyped-def]
                got = df.select("_commit_ts").toArrow()
                now_ms = time.time() * 1000
                ms = pc.shift_right(got.column("_commit_ts"), 18).to_numpy()
                with mu:
                    lags.extend(float(now_ms - m) for m in ms)

            query = (spark.readStream.format("theflash").option("starting_ts", "latest").load(TABLE)
                     .writeStream.foreachBatch(on_batch).option("checkpointLocation", str(tmp / "ckpt"))
                     .trigger(processingTime="100 milliseconds").start())
            wait_for(lambda: query.lastProgress is not None, 120, "the stream's first batch")
            with mu:
                lags.clear()  # the snapshot batch is not a lag
            stop = time.monotonic() + args.seconds
            commits = 0
            began = time.monotonic()
            while time.monotonic() < stop:
                with rig.cluster.txn() as t:
                    t.update(TABLE, {"id": commits % n, "qty": commits})
                commits += 1
                wait = began + commits / args.rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            rate = commits / (time.monotonic() - began)
            last = rig.cluster.get_ts()
            wait_for(lambda: ChangeStream(rig.store, TABLE, {"upstream": rig.upstream}).resolved_ts() >= last, 120,
                     "the store to resolve the last commit")
            query.processAllAvailable()
            query.stop()
            out["commits_per_s"] = rate
            out["lag_p50_ms"] = percentile(lags, 0.5)
            out["lag_p99_ms"] = percentile(lags, 0.99)
            out["lag_max_ms"] = max(lags) if lags else float("nan")
            out["lag_changes"] = len(lags)
            print(f"stream lag at {rate:,.0f} commits/s ({len(lags):,} changes): p50 {out['lag_p50_ms']:.0f} ms, "
                  f"p99 {out['lag_p99_ms']:.0f} ms, max {out['lag_max_ms']:.0f} ms")
            spark.stop()
    finally:
        rig.close()
    print(json.dumps({"bench": "changes", **out}))


if __name__ == "__main__":
    main()
