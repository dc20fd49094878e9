"""Every TiDB type the orders workload writes (signed and unsigned integers, BIT, YEAR, TIME,
DECIMAL, FLOAT/DOUBLE, DATE, DATETIME, TIMESTAMP, CHAR/VARCHAR/TEXT, ENUM, SET, JSON, BINARY,
BLOB), in tables with int handles, clustered composite keys and no key, replicated through the
mini cluster, capture and the writer, read from the published Delta tables by delta-rs and DuckDB
as exactly TheFlash's rows at each round's ts, in the Delta types of docs/delta.md."""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from delta_bank_rounds import resolved_past
from delta_readers import duckdb_with_delta
from flash_rig import FlashRig, wait_for
from pyspark_theflash.lake import delta_log
from pyspark_theflash.lake.publish import Publisher, Round
from pyspark_theflash.lake.types import value_schema
from pyspark_theflash.store import Store
from pyspark_theflash.upstream.workloads import OrdersWorkload

TABLES = ("shop.customers", "shop.orders", "shop.order_items")


def _value(v: Any) -> Any:
    # an instant is an instant: readers name UTC differently (zoneinfo's Etc/UTC, datetime's UTC)
    return v.astimezone(datetime.timezone.utc).isoformat() if isinstance(v, datetime.datetime) and v.tzinfo else v


def canonical(t: Any) -> list[str]:
    return sorted(repr(tuple(_value(v) for v in r.values())) for r in pa.table(t).to_pylist())


def test_every_tidb_type_reads_the_same_from_delta_rs_and_duckdb_as_from_theflash(tmp_path: Path) -> None:
    import deltalake

    rig = FlashRig(tmp_path)
    try:
        # 25 transactions a second: the test waits on the writer's rounds, and as fast as they went
        # they only took CPU from the writer (these four modules: 47.6 -> 38.8 CPU s, issue 54)
        orders = OrdersWorkload(rig.cluster, threads=2, seed=3, rate=25)
        orders.setup()
        rig.start_writer(interval_s=0.05)
        for table in TABLES:
            rig.wait_replicated(table)
        orders.start()
        publisher = Publisher(rig.store)
        rounds: list[Round] = []
        try:
            for _ in range(2):
                before = orders.stats.committed
                wait_for(lambda: orders.stats.committed >= before + 20, 60, "the orders workload to commit")

                upstream_ts = rig.cluster.get_ts()  # the round must hold what committed so far

                wait_for(lambda: resolved_past(publisher, upstream_ts), 60, "the store to resolve past the workload's commits")
                rounds.append(publisher.publish())
        finally:
            orders.stop()
        rig.stop_writer()
        con = duckdb_with_delta()
        seen: dict[str, int] = {}
        with Store.open(rig.store, readonly=True) as store:
            for done in rounds:
                for pub in done.tables:
                    if pub.table not in TABLES:
                        continue
                    log = delta_log.replay(Path(pub.root))
                    version = log.version_at(done.ts)
                    assert version is not None
                    own = store.scan_table(pub.table, done.ts)
                    want = canonical(own.cast(value_schema(own.schema)))
                    seen[pub.table] = seen.get(pub.table, 0) + len(want)
                    dt = deltalake.DeltaTable(pub.root, version=version)
                    got = deltalake.QueryBuilder().register("t", dt).execute("select * from t").read_all()
                    assert canonical(got) == want, f"delta-rs: {pub.table} version {version}"
                    got = con.sql(f"select * from delta_scan('{pub.root}', version => {version})").arrow()
                    assert canonical(got) == want, f"DuckDB: {pub.table} version {version}"
        assert all(seen.get(t, 0) > 0 for t in TABLES), f"rows compared per table: {seen}"
    finally:
        rig.close()
