"""MiniCluster.bulk_insert: an Arrow table in, the same TiDB keys and row v2 bytes as the
row-by-row Txn.insert path out, committed as real 1PC/2PC transactions that the real writer
replicates; duplicate keys refused as TiDB's INSERT refuses them; tables in regions of their own."""
from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pytest

from flash_rig import FlashRig, wait_for
from pyspark_theflash.binlog import open_source, rows as binlog_rows
from pyspark_theflash.codec import encode_region_key
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.schema import arrow_schema
from pyspark_theflash.store import Store
from pyspark_theflash.upstream.bulk import lock_ttl_ms
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream_client.errors import DuplicateKeyError, SchemaError
from pyspark_theflash.upstream.tidb import make_column, record_range, table_info_of
from pyspark_theflash.upstream.workloads import OrdersWorkload, orders_columns


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[MiniCluster]:
    c = MiniCluster(tmp_path / "data", binlog_dir=tmp_path / "binlog", resolved_ts_interval=0)
    yield c
    c.close()


def stored(cluster: MiniCluster, qualified: str) -> dict[bytes, bytes]:
    """Record key -> row value bytes of every live row of a table, read from the KV layer."""
    info = cluster.table_info(*qualified.split("."))
    return dict(cluster.store.scan(*record_range(info["id"]), cluster.get_ts()))


def workload_rows(orders: OrdersWorkload, n: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Rows of the orders workload's three tables (every TiDB type, NULLs included); JSON as text."""
    rng = random.Random(seed)
    out: dict[str, list[dict[str, Any]]] = {"customers": [], "orders": [], "order_items": []}
    for i in range(n):
        out["customers"].append(orders._customer_row(rng, rng.choice(["FR", "DE", "JP"]), i))
        out["orders"].append(orders._order_row(rng, i, ("FR", i)))
        out["order_items"].append(orders._item_row(rng, i, i % 3))
    for rows in out.values():
        for row in rows:
            for k, v in row.items():
                if isinstance(v, (dict, list)):
                    row[k] = json.dumps(v)
    return out


def test_bulk_insert_writes_the_bytes_txn_insert_writes_for_every_type(tmp_path: Path) -> None:
    one = MiniCluster(tmp_path / "one", resolved_ts_interval=0)
    bulk = MiniCluster(tmp_path / "bulk", resolved_ts_interval=0)
    try:
        OrdersWorkload(bulk).setup()
        orders = OrdersWorkload(one)
        orders.setup()
        data = workload_rows(orders, 300, seed=7)
        for name, rows in data.items():
            with one.txn() as t:
                for row in rows:
                    t.insert(f"shop.{name}", row)
            schema = arrow_schema(table_info_of(bulk.table_info("shop", name)))
            table = pa.Table.from_pylist(rows, schema=schema)
            table = table.select(list(reversed(table.column_names)))  # any column order
            assert bulk.bulk_insert(f"shop.{name}", table, txn_rows=64) == len(rows)
            expected, got = stored(one, f"shop.{name}"), stored(bulk, f"shop.{name}")
            assert len(got) == len(rows)
            assert got == expected, name  # same keys (clustered composite and rowid), same row v2 bytes
        types = {t for cols in orders_columns().values() for _, t, _ in cols}
        assert {"JSON", "BIT(64)", "TIME(3)", "YEAR", "TIMESTAMP(6)", "BIGINT UNSIGNED", "SET('vip','new','b2b')"} <= types
    finally:
        one.close()
        bulk.close()


def test_inputs_of_other_arrow_types_and_left_out_columns_take_the_default(cluster: MiniCluster) -> None:
    cluster.create_table("d.t", [
        make_column("a", "INT"), make_column("b", "SMALLINT UNSIGNED", not_null=True),
        make_column("price", "DECIMAL(10,2)"), make_column("day", "DATE"), make_column("at", "DATETIME(6)"),
        make_column("name", "VARCHAR(10)", default="none"), make_column("note", "TEXT"),
        make_column("score", "DOUBLE", default=1.5),
    ], primary_key=["a"])
    table = pa.table({
        "A": pa.array([3, 1, 2], pa.int64()),  # any case, wider ints
        "b": pa.array([True, False, True]),
        "price": pa.array([Decimal("1.005"), Decimal("-2.5"), None], pa.decimal128(12, 3)),  # rounded half away
        "day": pa.array([dt.datetime(2020, 1, 2, 3, 4), dt.datetime(1999, 12, 31), None], pa.timestamp("ms")),
        "at": pa.array([dt.date(2024, 2, 29), None, dt.date(1970, 1, 1)], pa.date32()),
        "note": pa.array(["x", None, "z"], pa.large_string()),
    })
    with pytest.raises(SchemaError, match="no column 'nope'"):
        cluster.bulk_insert("d.t", table.append_column("nope", pa.array([1, 2, 3])))
    assert cluster.bulk_insert("d.t", table) == 3
    assert cluster.scan_table("d.t") == [
        {"a": 1, "b": 0, "price": Decimal("-2.50"), "day": dt.date(1999, 12, 31), "at": None, "name": "none",
         "note": None, "score": 1.5},
        {"a": 2, "b": 1, "price": None, "day": None, "at": dt.datetime(1970, 1, 1), "name": "none", "note": "z",
         "score": 1.5},
        {"a": 3, "b": 1, "price": Decimal("1.01"), "day": dt.date(2020, 1, 2), "at": dt.datetime(2024, 2, 29),
         "name": "none", "note": "x", "score": 1.5},
    ]


def test_a_duplicate_key_in_the_input_or_already_present_names_table_and_key_and_writes_nothing(cluster: MiniCluster) -> None:
    cluster.create_table("tpch.lineitem", [make_column("l_orderkey", "BIGINT"), make_column("l_linenumber", "INT"),
                                           make_column("v", "INT")], primary_key=["l_orderkey", "l_linenumber"])
    rows = pa.table({"l_orderkey": [1, 1, 2, 1], "l_linenumber": [1, 2, 1, 2], "v": [0, 1, 2, 3]})
    with pytest.raises(DuplicateKeyError) as err:
        cluster.bulk_insert("tpch.lineitem", rows, txn_rows=1)
    assert (err.value.table, err.value.key, err.value.row) == ("tpch.lineitem", (1, 2), 3)
    assert "Duplicate entry '1-2' for key 'lineitem.PRIMARY'" in str(err.value)
    assert stored(cluster, "tpch.lineitem") == {}  # checked before the first transaction

    cluster.bulk_insert("tpch.lineitem", rows.slice(0, 3))
    with pytest.raises(DuplicateKeyError) as err:
        cluster.bulk_insert("tpch.lineitem", pa.table({"l_orderkey": [9, 2], "l_linenumber": [9, 1], "v": [0, 0]}))
    assert (err.value.key, err.value.row) == ((2, 1), 1)
    assert len(stored(cluster, "tpch.lineitem")) == 3
    with pytest.raises(DuplicateKeyError):  # the row path agrees
        with cluster.txn() as t:
            t.insert("tpch.lineitem", {"l_orderkey": 2, "l_linenumber": 1, "v": 5})
    # a deleted row's key can be inserted again
    with cluster.txn() as t:
        t.delete("tpch.lineitem", (2, 1))
    cluster.bulk_insert("tpch.lineitem", pa.table({"l_orderkey": [2], "l_linenumber": [1], "v": [7]}))
    assert cluster.get_row("tpch.lineitem", (2, 1)) == {"l_orderkey": 2, "l_linenumber": 1, "v": 7}


def test_a_nonclustered_primary_key_is_unique_in_the_input_too(cluster: MiniCluster) -> None:
    cluster.create_table("d.t", [make_column("k", "VARCHAR(8)"), make_column("v", "INT")], primary_key=["k"],
                         clustered=False)
    with pytest.raises(DuplicateKeyError) as err:
        cluster.bulk_insert("d.t", pa.table({"k": ["a", "b", "a"], "v": [1, 2, 3]}))
    assert (err.value.key, err.value.row) == ("a", 2)
    assert cluster.bulk_insert("d.t", pa.table({"k": ["a", "b"], "v": [1, 2]})) == 2
    # the failed batch used up row ids 1-3 (TiDB does not hand allocated ids back either)
    assert sorted((r["k"], r["_tidb_rowid"]) for r in cluster.scan_table("d.t")) == [("a", 4), ("b", 5)]
    with cluster.txn() as t:  # row ids continue after the batch's
        assert t.insert("d.t", {"k": "c", "v": 3}) == 6


def _entries(binlog: Path) -> list[binlog_pb2.Event]:
    with open_source(str(binlog)) as source:
        return [pe.event for pe in source.read(100_000, 0.5) if pe.event.WhichOneof("payload") == "entries"]


@pytest.mark.parametrize("one_pc", [True, False])
def test_each_batch_of_txn_rows_is_one_percolator_transaction_in_the_binlog(tmp_path: Path, one_pc: bool) -> None:
    c = MiniCluster(tmp_path / "data", binlog_dir=tmp_path / "binlog", resolved_ts_interval=0)
    try:
        info = c.create_table("d.t", [make_column("id", "BIGINT"), make_column("s", "VARCHAR(600)")], primary_key=["id"])
        rows = pa.table({"id": list(range(24, -1, -1)), "s": ["x" * (i * 20) for i in range(25)]})  # some > 255 bytes
        before = len(_entries(tmp_path / "binlog"))
        assert c.bulk_insert("d.t", rows, txn_rows=10, one_pc=one_pc) == 25
        events = _entries(tmp_path / "binlog")[before:]
        (region,) = {e.region_id for e in events}
        lo, hi = record_range(info["id"])
        assert any(r.id == region and r.start_key == encode_region_key(lo) and r.end_key == encode_region_key(hi)
                   for r in c.regions())
        cols = [binlog_rows.columns(e.entries) for e in events]
        types = [set(col.types.tolist()) for col in cols]
        if one_pc:
            assert types == [{binlog_pb2.Row.COMMITTED}] * 3
            assert [col.keys.to_pylist() == sorted(col.keys.to_pylist()) for col in cols] == [True] * 3
            assert [len(col.keys) for col in cols] == [10, 10, 5]
        else:
            assert types == [{binlog_pb2.Row.PREWRITE}, {binlog_pb2.Row.COMMIT}, {binlog_pb2.Row.COMMIT}] * 3
            for prewrite, primary, secondaries in zip(cols[0::3], cols[1::3], cols[2::3]):
                assert primary.keys.to_pylist() == [prewrite.keys[0].as_py()]
                assert set(prewrite.primaries.to_pylist()) == {prewrite.keys[0].as_py()}
                assert secondaries.keys.to_pylist() == prewrite.keys.to_pylist()[1:]
                assert len(set(prewrite.start_ts.tolist() + primary.start_ts.tolist())) == 1
        assert {r["id"]: r["s"] for r in c.scan_table("d.t")} == {i: "x" * ((24 - i) * 20) for i in range(25)}
    finally:
        c.close()


def test_lock_ttl_grows_with_the_transaction_size_as_client_go_computes_it() -> None:
    assert lock_ttl_ms(1000, 3000) == 3000
    assert lock_ttl_ms(4 << 20, 3000) == 12000  # 6 s * sqrt(4 MiB)
    assert lock_ttl_ms(1 << 40, 3000) == 20000


def test_every_table_gets_a_region_of_its_own(cluster: MiniCluster) -> None:
    a = cluster.create_table("d.a", [make_column("id", "INT"), make_column("v", "INT")], primary_key=["id"])
    b = cluster.create_table("d.b", [make_column("id", "INT"), make_column("v", "INT")], primary_key=["id"])
    bounds = {(r.start_key, r.end_key): r.id for r in cluster.regions()}
    for info in (a, b):
        lo, hi = record_range(info["id"])
        assert (encode_region_key(lo), encode_region_key(hi)) in bounds
    cluster.bulk_insert("d.a", pa.table({"id": [1, 2], "v": [1, 2]}))
    with cluster.txn() as t:
        t.insert("d.b", {"id": 1, "v": 1})
    regions = {e.region_id for e in _entries(cluster.binlog_dir)}  # type: ignore[arg-type]
    assert regions == {bounds[tuple(encode_region_key(k) for k in record_range(i["id"]))] for i in (a, b)}


def test_the_writer_replicates_bulk_transactions_1pc_and_2pc(tmp_path: Path) -> None:
    rig = FlashRig(tmp_path)
    try:
        rig.cluster.create_table("tpch.partsupp", [
            make_column("ps_partkey", "BIGINT"), make_column("ps_suppkey", "BIGINT"),
            make_column("ps_availqty", "INT", not_null=True), make_column("ps_supplycost", "DECIMAL(15,2)", not_null=True),
            make_column("ps_comment", "VARCHAR(199)", not_null=True),
        ], primary_key=["ps_partkey", "ps_suppkey"])
        rng = random.Random(3)
        n = 3000
        table = pa.table({
            "ps_partkey": pa.array([i // 4 for i in range(n)], pa.int64()),
            "ps_suppkey": pa.array([i % 4 for i in range(n)], pa.int64()),
            "ps_availqty": pa.array([rng.randrange(10_000) for _ in range(n)], pa.int32()),
            "ps_supplycost": pa.array([Decimal(rng.randrange(100_000)) / 100 for _ in range(n)], pa.decimal128(15, 2)),
            "ps_comment": pa.array(["c" * rng.randrange(0, 199) for _ in range(n)], pa.string()),
        })
        rig.cluster.bulk_insert("tpch.partsupp", table.slice(0, 2000), txn_rows=500)
        rig.cluster.bulk_insert("tpch.partsupp", table.slice(2000), txn_rows=300, one_pc=False)
        ts = rig.cluster.get_ts()
        rig.start_writer()
        rig.wait_replicated("tpch.partsupp")

        def replicated() -> pa.Table | None:
            with Store.open(rig.store, readonly=True) as store:
                got = store.scan_table("tpch.partsupp", ts)
            return got if got.num_rows == n else None

        got = wait_for(replicated, 60, "the writer to apply the bulk transactions")
        got = got.sort_by([("ps_partkey", "ascending"), ("ps_suppkey", "ascending")])
        assert got.to_pylist() == table.to_pylist()
    finally:
        rig.close()


def test_a_heap_table_takes_given_row_ids_and_allocates_after_them(cluster: MiniCluster) -> None:
    cluster.create_table("d.heap", [make_column("v", "INT")])
    assert cluster.bulk_insert("d.heap", pa.table({"v": [1, 2]})) == 2
    assert cluster.bulk_insert("d.heap", pa.table({"_tidb_rowid": [50, 40], "v": [3, 4]})) == 2
    with cluster.txn() as t:
        assert t.insert("d.heap", {"v": 5}) == 51
    assert [(r["_tidb_rowid"], r["v"]) for r in cluster.scan_table("d.heap")] == [(1, 1), (2, 2), (40, 4), (50, 3), (51, 5)]
