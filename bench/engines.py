"""The two store engines side by side: the same change stream, the same reads.

    .venv/bin/python bench/engines.py                       # 300k upserts/deletes over 150k keys
    .venv/bin/python bench/engines.py --rows 1000000 --keys 500000 --batch 50000

The stream and its binlog events are bench/ingest.py's (``--rows`` operations in batches of
``--batch`` over ``--keys`` handles, ``--delete-ratio`` deletes; id BIGINT PRIMARY KEY, v BIGINT,
x DOUBLE, s VARCHAR(16)), applied to a store of each engine with the writer's pipelined flush.

* native: the TxnMergeTree store (``Store``).
* clickhouse: the same ``Store`` with ``ClickHouseEngine`` attached (each flush's committed rows
  go into a ClickHouse MergeTree table inside the flush's edit, and the store lists records of
  their statistics instead of writing part files; reads come from ClickHouse).

Reads at the last ts, each the best of ``--repeat``, before GC (as flushed: every version
still there) and after ``gc(last ts)`` (native: compacted to one stable part per partition;
clickhouse: old versions deleted in place):

* full scan — every column, one Arrow table;
* selective filter — ``v < 2**31 + 1%`` of v's range (about 1% of rows);
* projection — two columns (``id``, ``x``);
* group-by — ``count, sum(x)`` by the first letter of ``s`` (native: the snapshot read, then
  Arrow's hash aggregate; clickhouse: one SQL query over the snapshot, ``theflash sql``'s path).

Plus bench/ingest.py's delta-rs baseline (MERGE per batch; the same four reads through
``DeltaTable``) unless ``--skip-delta``. Every engine's answers are checked against the
native engine's. Prints a table with ratios (clickhouse / native: > 1 means slower) and ends
with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest  # noqa: E402  (bench/ingest.py: the stream, the events, the Delta baseline)

from pyspark_theflash.binlog.position import Position  # noqa: E402
from pyspark_theflash.store import Store, col  # noqa: E402

QUALIFIED = f"{ingest.DB}.{ingest.TABLE}"
V_CUT = 2**31 + (2**62 - 2**31) // 100
READS = ("full_scan", "filter", "projection", "group_by")


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[Any, float]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def canonical(t: pa.Table, columns: list[str]) -> pa.Table:
    t = t.select(columns)
    return t.take(pc.sort_indices(t, [(c, "ascending") for c in columns])).combine_chunks()


def groups(t: pa.Table) -> dict[str, tuple[int, float]]:
    return {r["k"]: (int(r["n"]), round(float(r["total"]), 3)) for r in t.to_pylist()}


def arrow_group_by(t: pa.Table) -> pa.Table:
    keyed = pa.table({"k": pc.utf8_slice_codeunits(t.column("s"), 0, 1), "x": t.column("x")})
    out = keyed.group_by("k").aggregate([("x", "count"), ("x", "sum")])
    return out.rename_columns(["k", "n", "total"]) if out.column_names[0] == "k" else pa.table(
        {"k": out.column("k"), "n": out.column("x_count"), "total": out.column("x_sum")})


def prepare_events(stream: list[Any], args: argparse.Namespace) -> tuple[list[Any], list[list[Any]], int]:
    regions = ingest.Regions(bounds=[args.keys * (i + 1) // args.regions for i in range(args.regions - 1)],
                             index=[0] * args.regions)
    opening = ingest.initial_events(regions)
    prepared, ts = [], ingest.BASE_TS
    for b in stream:
        events, ts = ingest.batch_events(b, regions, ts, args.txn_rows, False)
        prepared.append(events)
    return opening, prepared, ts


def run_engine(kind: str, path: Path, stream: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    opening, prepared, ts = prepare_events(stream, args)
    store = Store.open(str(path))
    engine = None
    open_s = 0.0
    if kind == "clickhouse":
        from pyspark_theflash.engine import open_writer_engine

        t0 = time.perf_counter()
        engine = open_writer_engine(store, "clickhouse")
        open_s = time.perf_counter() - t0
    store.put_schema(ingest.DB, ingest.table_info())
    store.write(opening, Position(0, 0))
    store.flush()
    t0, c0 = time.perf_counter(), time.process_time()
    for i, events in enumerate(prepared):
        store.write(events, Position(0, i + 1))
        store.flush(wait=False)
    store.sync()
    ingest_s, ingest_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    prepared.clear()
    out: dict[str, Any] = {"ingest_s": ingest_s, "ingest_cpu_s": ingest_cpu_s, "open_s": open_s, "ts": ts}
    out["before_gc"] = run_reads(kind, store, engine, ts, args.repeat)
    t0 = time.perf_counter()
    (engine or store).gc(ts)
    out["gc_s"] = time.perf_counter() - t0
    out["after_gc"] = run_reads(kind, store, engine, ts, args.repeat)
    out["disk_bytes"] = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    if engine is not None:
        out["clickhouse_bytes"] = sum(f.stat().st_size for f in (path / "clickhouse").rglob("*") if f.is_file())
        engine.close()
    else:
        store.close()
    return out


def run_reads(kind: str, store: Store, engine: Any, ts: int, repeat: int) -> dict[str, Any]:
    if engine is None:
        def scan(**kw: Any) -> pa.Table:
            return store.scan_table(QUALIFIED, ts, **kw)

        def group_by() -> pa.Table:
            return arrow_group_by(scan(columns=["s", "x"]))
    else:
        from pyspark_theflash.engine.clickhouse.calculator import snapshot_query
        from pyspark_theflash.store.parts import output_schema
        from pyspark_theflash.store.store import table_for_read

        with store.snapshot() as view:
            info = table_for_read(view, QUALIFIED, ts, "current")

        def scan(**kw: Any) -> pa.Table:
            return pa.Table.from_batches(list(engine.scan(info, ts, **kw)),
                                         schema=output_schema(info, kw.get("columns"), kw.get("hidden", ())))

        sql = snapshot_query(engine, f"SELECT substring(s, 1, 1) AS k, count() AS n, sum(x) AS total "
                                     f"FROM {QUALIFIED} GROUP BY k ORDER BY k", ts)

        def group_by() -> pa.Table:
            lease = store.leases.acquire(ts, 600.0, holder="bench group-by")
            try:
                return engine.directory.arrow(sql)
            finally:
                store.leases.release(lease.id)

    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    results["full_scan"], timings["full_scan"] = best_of(repeat, lambda: scan())
    results["filter"], timings["filter"] = best_of(repeat, lambda: scan(predicate=col("v") < V_CUT))
    results["projection"], timings["projection"] = best_of(repeat, lambda: scan(columns=["id", "x"]))
    results["group_by"], timings["group_by"] = best_of(repeat, group_by)
    return {"s": timings, "results": results}


def run_delta_reads(path: Path, stream: list[Any], repeat: int) -> dict[str, Any]:
    from deltalake import DeltaTable

    d = ingest.run_delta(path, stream)
    timings: dict[str, float] = {}
    results: dict[str, Any] = {}
    results["full_scan"], timings["full_scan"] = best_of(repeat, lambda: DeltaTable(str(path)).to_pyarrow_table())
    results["filter"], timings["filter"] = best_of(
        repeat, lambda: DeltaTable(str(path)).to_pyarrow_dataset().to_table(filter=pc.field("v") < V_CUT))
    results["projection"], timings["projection"] = best_of(
        repeat, lambda: DeltaTable(str(path)).to_pyarrow_table(columns=["id", "x"]))
    results["group_by"], timings["group_by"] = best_of(
        repeat, lambda: arrow_group_by(DeltaTable(str(path)).to_pyarrow_table(columns=["s", "x"])))
    return {"ingest_s": d["ingest_s"], "ingest_cpu_s": d["ingest_cpu_s"], "reads": {"s": timings, "results": results}}


def check_same(reference: dict[str, Any], other: dict[str, Any], who: str) -> None:
    for read, cols in (("full_scan", ["id", "v", "x", "s"]), ("filter", ["id", "v", "x", "s"]),
                       ("projection", ["id", "x"])):
        a = canonical(reference[read].cast(pa.schema([reference[read].schema.field(c) for c in reference[read].column_names])), cols)
        b = canonical(other[read].select(cols).cast(a.schema), cols)
        assert a.equals(b), f"{who}: {read} differs from the native engine's ({a.num_rows} vs {b.num_rows} rows)"
    assert groups(reference["group_by"]) == groups(other["group_by"]), f"{who}: group-by differs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000, help="upserts + deletes in the stream")
    parser.add_argument("--keys", type=int, default=150_000, help="distinct handles the stream touches")
    parser.add_argument("--batch", type=int, default=30_000, help="operations per batch (one write + flush)")
    parser.add_argument("--delete-ratio", type=float, default=0.1)
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--txn-rows", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="each read: best of this many")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", help="where to put the stores (default: a temp dir, removed after)")
    parser.add_argument("--skip-delta", action="store_true", help="no delta-rs baseline")
    args = parser.parse_args(argv)

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="theflash-engines-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        stream = ingest.make_stream(args.rows, args.keys, args.batch, args.delete_ratio, args.seed)
        live = ingest.expected_rows(stream)
        print(f"stream: {args.rows} ops over {args.keys} keys, {len(stream)} batches of {args.batch}, "
              f"{args.delete_ratio:.0%} deletes, {live} live rows at the end", flush=True)
        native = run_engine("native", work / "native", stream, args)
        ch = run_engine("clickhouse", work / "clickhouse", stream, args)
        for phase in ("before_gc", "after_gc"):
            assert native[phase]["results"]["full_scan"].num_rows == live
            check_same(native[phase]["results"], ch[phase]["results"], f"clickhouse ({phase})")
        delta = None if args.skip_delta else run_delta_reads(work / "delta", stream, args.repeat)
        if delta is not None:
            check_same(native["after_gc"]["results"], delta["reads"]["results"], "delta")

        rate = lambda r: args.rows / r["ingest_s"]  # noqa: E731
        print(f"\n{'':28}{'native':>10}{'clickhouse':>12}{'ch/native':>11}" + ("" if delta is None else f"{'delta':>10}"))
        print(f"{'ingest rows/s':28}{rate(native):>10,.0f}{rate(ch):>12,.0f}{native['ingest_s'] / ch['ingest_s']:>10.2f}x"
              + ("" if delta is None else f"{rate(delta):>10,.0f}"))
        print(f"{'gc / compaction s':28}{native['gc_s']:>10.3f}{ch['gc_s']:>12.3f}{ch['gc_s'] / native['gc_s']:>10.2f}x")
        result: dict[str, Any] = {
            "rows": args.rows, "keys": args.keys, "batch": args.batch, "live_rows": live,
            "native_rows_per_s": round(rate(native)), "clickhouse_rows_per_s": round(rate(ch)),
            "ingest_ratio_clickhouse_over_native": round(ch["ingest_s"] / native["ingest_s"], 2),
            "native_gc_s": round(native["gc_s"], 3), "clickhouse_gc_s": round(ch["gc_s"], 3),
            "clickhouse_session_open_s": round(ch["open_s"], 3),
            "native_disk_bytes": native["disk_bytes"], "clickhouse_store_disk_bytes": ch["disk_bytes"],
            "clickhouse_tables_bytes": ch["clickhouse_bytes"],
        }
        if delta is not None:
            result["delta_rows_per_s"] = round(rate(delta))
        for phase in ("before_gc", "after_gc"):
            for read in READS:
                n, c = native[phase]["s"][read], ch[phase]["s"][read]
                line = f"{read + ' (' + phase.replace('_', ' ') + ')':28}{n:>10.4f}{c:>12.4f}{c / n:>10.2f}x"
                result[f"native_{read}_{phase}_s"] = round(n, 4)
                result[f"clickhouse_{read}_{phase}_s"] = round(c, 4)
                result[f"ratio_{read}_{phase}"] = round(c / n, 2)
                if delta is not None and phase == "after_gc":
                    d = delta["reads"]["s"][read]
                    line += f"{d:>10.4f}"
                    result[f"delta_{read}_s"] = round(d, 4)
                print(line)
        print(json.dumps(result))
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
