"""A table's VIRTUAL generated columns in its Delta table: TiDB never stores them and TheFlash
computes them as it reads (``schema.generated``), so a Delta file holds their values: the parts
of such a table are converted (never named in place, where the columns read NULL), the values
computed into the file, and delta-spark (a plain Spark session, no TheFlash jar), delta-rs and
DuckDB read exactly TheFlash's rows, before and after an update of the columns they are computed
from."""
from __future__ import annotations

import decimal
from pathlib import Path
from typing import Any

import pytest

from delta_checksum_checks import check_checksum
from delta_ddl_rounds import read_with_delta_spark
from delta_readers import delta_rs_rows, duckdb_rows, duckdb_with_delta
from flash_rig import FlashRig, wait_for
from pyspark_theflash.lake.publish import Publisher, table_root
from pyspark_theflash.store import Store
from pyspark_theflash.upstream.tidb import make_column

TABLE = "gen.t"
COLUMNS = [
    make_column("id", "BIGINT", not_null=True),
    make_column("a", "INT"),
    make_column("g", "BIGINT", generated="`a` + 1"),                                 # VIRTUAL
    make_column("s", "VARCHAR(16)"),
    make_column("c", "VARCHAR(40)", generated="concat(upper(`s`), _utf8mb4'-', `a` * 2)", stored=True),
    make_column("sub", "VARCHAR(8)", generated="substring(lower(`s`), 2, 3)"),       # VIRTUAL
    make_column("d", "DECIMAL(8,2)"),
    make_column("dg", "DECIMAL(9,1)", generated="`d` * 3 - `a` DIV 7"),             # VIRTUAL, rounded to scale 1
]
READ = ["id", "a", "g", "s", "c", "sub", "d", "dg"]

pytestmark = pytest.mark.spark


def own_rows(store: str, ts: int) -> list[tuple[object, ...]]:
    with Store.open(store, readonly=True) as s:
        return [tuple(r.values()) for r in s.scan_table(TABLE, ts, columns=READ).sort_by("id").to_pylist()]


def resolved_past(store: str, ts: int) -> bool:
    with Store.open(store, readonly=True) as s, s.snapshot() as view:
        resolved = view.region_columns().resolved_ts
        return len(resolved) > 0 and int(resolved.min()) >= ts


def test_virtual_generated_columns_read_in_delta_as_theflash_computes_them(tmp_path: Path, delta_spark: Any) -> None:
    rig = FlashRig(tmp_path, via="binlog")
    try:
        c = rig.cluster
        c.create_database("gen")
        c.create_table(TABLE, COLUMNS, primary_key=["id"])
        with c.txn() as t:
            for i in range(1, 41):
                t.insert(TABLE, {"id": i, "a": None if i % 9 == 0 else i * 10, "s": None if i % 7 == 0 else f"Row{i}x",
                                 "d": decimal.Decimal(i) / 4})
        rig.start_writer()
        rig.wait_replicated(TABLE)
        publisher = Publisher(rig.store)
        con = duckdb_with_delta()
        seen: list[tuple[int, list[tuple[object, ...]]]] = []

        def publish() -> None:
            ts = c.get_ts()
            wait_for(lambda: resolved_past(rig.store, ts), 30, f"the store to resolve ts {ts}")
            (table,) = publisher.publish(ts).tables
            assert table.version is not None and table.converted >= 1  # (never named in place)
            seen.append((table.version, own_rows(rig.store, ts)))

        publish()
        with c.txn() as t:  # the columns they are computed from change: a delta
            for i in (3, 4, 5):
                t.update(TABLE, {"id": i, "a": -i, "s": "ChAnGeD"})
            t.delete(TABLE, 6)
        publish()
        lake = table_root(rig.store, _table_id(rig.store))
        assert seen[0][1][0] == (1, 10, 11, "Row1x", "ROW1X-20", "ow1", decimal.Decimal("0.25"), decimal.Decimal("-0.3"))  # -0.25: half away from 0
        for version, want in seen:
            assert delta_rs_rows(lake, version, READ) == want, f"delta-rs at version {version}"
            assert duckdb_rows(con, lake, version, READ) == want, f"DuckDB at version {version}"
            check_checksum(lake, version, con)   # the converted files' sizes and vectors, counted
        assert seen[1][1][2][:3] == (3, -3, -2)
        reads = [(str(lake), "versionAsOf", str(version), READ) for version, _ in seen]
        got = delta_spark.call(read_with_delta_spark, reads, timeout=600)  # (the run's delta-spark session)
        for (version, want), rows in zip(seen, got):
            assert rows == want, f"delta-spark at version {version}"
    finally:
        rig.close()


def _table_id(store: str) -> int:
    with Store.open(store, readonly=True) as s, s.snapshot() as view:
        return int(view.table(TABLE).id)
