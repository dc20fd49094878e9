"""Load TPC-H into the mini cluster through its table API: ``MiniCluster.bulk_insert`` (Arrow
tables, vectorised encoding, 1PC transactions of ``--txn-rows``) against the row-by-row
``Txn.insert`` path, side by side in one run.

    .venv/bin/python bench/load.py                      # SF 0.1 (~866k rows), row path on 20k lineitem rows
    .venv/bin/python bench/load.py --sf 0.01 --sample 5000 --two-phase

The data comes from duckdb's ``tpch`` extension (``CALL dbgen(sf=...)``, the extension loaded
from the ``duckdb-extension-tpch`` wheel), generated before any clock starts. Tables are
created with TiDB types and TiDB's usual keys (clustered composite keys on lineitem and
partsupp). Both clusters write a real binlog (segment files).

* bulk:     every table through ``bulk_insert`` (timed: encode + checks + commits + binlog;
  wall and CPU seconds, as the machine may be shared);
* row path: the first ``--sample`` lineitem rows through ``Txn.insert``, ``--row-txn`` rows a
  transaction (timed the same way); the projected time of the whole load at that rate;
* checkpoint: the incremental checkpoint after the bulk load (all of it changed), and how long
  it held the store lock; then a second one with nothing changed.

Read back: row counts of every table and a sample of lineitem rows compared with the input.
Ends with one JSON line of the figures.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.tidb import make_column, record_range

TARGET_S = 15.0
# TPC-H with TiDB types: (column, SQL type); every column NOT NULL, as the spec has them.
TPCH: dict[str, tuple[list[tuple[str, str]], list[str]]] = {
    "region": ([("r_regionkey", "INT"), ("r_name", "CHAR(25)"), ("r_comment", "VARCHAR(152)")], ["r_regionkey"]),
    "nation": ([("n_nationkey", "INT"), ("n_name", "CHAR(25)"), ("n_regionkey", "INT"), ("n_comment", "VARCHAR(152)")],
               ["n_nationkey"]),
    "supplier": ([("s_suppkey", "BIGINT"), ("s_name", "CHAR(25)"), ("s_address", "VARCHAR(40)"), ("s_nationkey", "INT"),
                  ("s_phone", "CHAR(15)"), ("s_acctbal", "DECIMAL(15,2)"), ("s_comment", "VARCHAR(101)")], ["s_suppkey"]),
    "customer": ([("c_custkey", "BIGINT"), ("c_name", "VARCHAR(25)"), ("c_address", "VARCHAR(40)"),
                  ("c_nationkey", "INT"), ("c_phone", "CHAR(15)"), ("c_acctbal", "DECIMAL(15,2)"),
                  ("c_mktsegment", "CHAR(10)"), ("c_comment", "VARCHAR(117)")], ["c_custkey"]),
    "part": ([("p_partkey", "BIGINT"), ("p_name", "VARCHAR(55)"), ("p_mfgr", "CHAR(25)"), ("p_brand", "CHAR(10)"),
              ("p_type", "VARCHAR(25)"), ("p_size", "INT"), ("p_container", "CHAR(10)"),
              ("p_retailprice", "DECIMAL(15,2)"), ("p_comment", "VARCHAR(23)")], ["p_partkey"]),
    "partsupp": ([("ps_partkey", "BIGINT"), ("ps_suppkey", "BIGINT"), ("ps_availqty", "INT"),
                  ("ps_supplycost", "DECIMAL(15,2)"), ("ps_comment", "VARCHAR(199)")], ["ps_partkey", "ps_suppkey"]),
    "orders": ([("o_orderkey", "BIGINT"), ("o_custkey", "BIGINT"), ("o_orderstatus", "CHAR(1)"),
                ("o_totalprice", "DECIMAL(15,2)"), ("o_orderdate", "DATE"), ("o_orderpriority", "CHAR(15)"),
                ("o_clerk", "CHAR(15)"), ("o_shippriority", "INT"), ("o_comment", "VARCHAR(79)")], ["o_orderkey"]),
    "lineitem": ([("l_orderkey", "BIGINT"), ("l_partkey", "BIGINT"), ("l_suppkey", "BIGINT"), ("l_linenumber", "INT"),
                  ("l_quantity", "DECIMAL(15,2)"), ("l_extendedprice", "DECIMAL(15,2)"),
                  ("l_discount", "DECIMAL(15,2)"), ("l_tax", "DECIMAL(15,2)"), ("l_returnflag", "CHAR(1)"),
                  ("l_linestatus", "CHAR(1)"), ("l_shipdate", "DATE"), ("l_commitdate", "DATE"),
                  ("l_receiptdate", "DATE"), ("l_shipinstruct", "CHAR(25)"), ("l_shipmode", "CHAR(10)"),
                  ("l_comment", "VARCHAR(44)")], ["l_orderkey", "l_linenumber"]),
}


def generate(sf: float) -> dict[str, pa.Table]:
    """TPC-H at scale factor ``sf`` from duckdb's tpch extension (loaded from its wheel)."""
    import duckdb

    spec = importlib.util.find_spec("duckdb_extension_tpch")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("duckdb-extension-tpch is not installed: pip install -e '.[test]'")
    extension = next(Path(spec.submodule_search_locations[0]).rglob("tpch.duckdb_extension"))
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{extension}'")
    con.execute(f"CALL dbgen(sf={sf})")
    return {name: con.execute(f"SELECT * FROM {name}").to_arrow_table() for name in TPCH}


def create_tables(cluster: MiniCluster) -> None:
    for name, (cols, key) in TPCH.items():
        cluster.create_table(f"tpch.{name}", [make_column(c, t, not_null=True) for c, t in cols], primary_key=key)


def table_rows(cluster: MiniCluster, name: str) -> int:
    """Live keys of a table (its record range), counted in the store's sorted key list."""
    info = cluster.table_info("tpch", name)
    lo, hi = record_range(info["id"])
    return len(cluster.store.scan(lo, hi, cluster.get_ts()))


def _same(sql_type: str, expected: Any, got: Any) -> bool:
    if sql_type.startswith("CHAR"):
        return bool(got == expected.rstrip(" "))  # CHAR values are stored without trailing spaces
    if isinstance(expected, Decimal):
        return Decimal(got) == expected
    if isinstance(expected, dt.date):
        return got == expected
    return bool(got == expected)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sf", type=float, default=0.1)
    ap.add_argument("--sample", type=int, default=20_000, help="lineitem rows for the row-by-row path")
    ap.add_argument("--row-txn", type=int, default=1000, help="rows per transaction on the row path")
    ap.add_argument("--txn-rows", type=int, default=10_000)
    ap.add_argument("--two-phase", action="store_true", help="bulk_insert with one_pc=False")
    ap.add_argument("--keep", action="store_true", help="keep the cluster directories")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    data = generate(args.sf)
    total = sum(t.num_rows for t in data.values())
    print(f"generated TPC-H SF {args.sf}: {total:,} rows in {time.perf_counter() - t0:.1f}s "
          f"({', '.join(f'{k} {v.num_rows:,}' for k, v in data.items())})", flush=True)
    root = Path(tempfile.mkdtemp(prefix="theflash-load-"))
    try:
        # ---- bulk
        bulk = MiniCluster(root / "bulk", binlog_dir=root / "bulk-binlog", resolved_ts_interval=0.1,
                           checkpoint_interval_s=None)
        create_tables(bulk)
        per_table: dict[str, float] = {}
        start, cpu = time.perf_counter(), time.process_time()
        for name, table in data.items():
            t = time.perf_counter()
            bulk.bulk_insert(f"tpch.{name}", table, txn_rows=args.txn_rows, one_pc=not args.two_phase)
            per_table[name] = time.perf_counter() - t
        bulk_s, bulk_cpu_s = time.perf_counter() - start, time.process_time() - cpu
        bulk_rate = total / bulk_s
        print(f"bulk_insert: {total:,} rows in {bulk_s:.2f}s ({bulk_cpu_s:.2f}s CPU) = {bulk_rate:,.0f} rows/s "
              f"(target <= {TARGET_S:.0f}s; {', '.join(f'{k} {v:.2f}s' for k, v in per_table.items())})", flush=True)
        checkpoint = bulk.checkpoint()
        again = bulk.checkpoint()
        print(f"checkpoint after the load: {checkpoint.records:,} records in {checkpoint.seconds:.2f}s, store lock held "
              f"{checkpoint.locked_s * 1000:.1f} ms; next one (nothing changed): {again.seconds * 1000:.1f} ms", flush=True)

        counts = {name: table_rows(bulk, name) for name in data}
        assert counts == {name: t.num_rows for name, t in data.items()}, counts
        lineitem = data["lineitem"]
        types = dict(TPCH["lineitem"][0])
        step = max(lineitem.num_rows // 200, 1)
        for i in range(0, lineitem.num_rows, step):
            want = lineitem.slice(i, 1).to_pylist()[0]
            got = bulk.get_row("tpch.lineitem", (want["l_orderkey"], want["l_linenumber"]))
            assert got is not None and all(_same(types[k], v, got[k]) for k, v in want.items()), (want, got)
        print(f"read back: row counts of all {len(data)} tables and {len(range(0, lineitem.num_rows, step))} "
              "lineitem rows equal the input", flush=True)
        bulk.close()

        # ---- row by row
        rows = MiniCluster(root / "rows", binlog_dir=root / "rows-binlog", resolved_ts_interval=0.1,
                           checkpoint_interval_s=None)
        create_tables(rows)
        sample = lineitem.slice(0, args.sample).to_pylist()
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(sample), args.row_txn):
            with rows.txn() as txn:
                for row in sample[i:i + args.row_txn]:
                    txn.insert("tpch.lineitem", row)
        row_s, row_cpu_s = time.perf_counter() - start, time.process_time() - cpu
        row_rate = len(sample) / row_s
        rows.close()
        print(f"Txn.insert:  {len(sample):,} lineitem rows in {row_s:.2f}s ({row_cpu_s:.2f}s CPU) = {row_rate:,.0f} rows/s "
              f"({1e6 / row_rate:.0f} us/row; the whole load would take {total / row_rate:.0f}s)", flush=True)
        ratio = bulk_rate / row_rate
        print(f"bulk_insert / Txn.insert: {ratio:.1f}x rows/s; SF {args.sf} loads in {bulk_s:.1f}s "
              f"({'within' if bulk_s <= TARGET_S else 'OVER'} the {TARGET_S:.0f}s target)", flush=True)
        print(json.dumps({
            "bench": "load", "sf": args.sf, "rows": total, "txn_rows": args.txn_rows, "one_pc": not args.two_phase,
            "bulk_s": round(bulk_s, 3), "bulk_cpu_s": round(bulk_cpu_s, 3), "bulk_rows_per_s": round(bulk_rate),
            "row_path_rows": len(sample), "row_path_s": round(row_s, 3), "row_path_cpu_s": round(row_cpu_s, 3), "row_path_rows_per_s": round(row_rate), "ratio": round(ratio, 2),
            "checkpoint_records": checkpoint.records, "checkpoint_s": round(checkpoint.seconds, 3),
            "checkpoint_lock_ms": round(checkpoint.locked_s * 1000, 2), "target_s": TARGET_S,
            "per_table_s": {k: round(v, 3) for k, v in per_table.items()},
        }))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
