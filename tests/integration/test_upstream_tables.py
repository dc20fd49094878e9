"""The mini cluster's TiDB table API: every type the codec handles round-trips through
row v2 and the Percolator store; int handle, clustered common handle and _tidb_rowid tables;
add/drop column with origin defaults; what survives a restart."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from pyspark_theflash.codec import decode_common_handle_key, decode_record_key
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream_client.errors import DuplicateKeyError, RowNotFoundError, SchemaError, TxnAbortedError
from pyspark_theflash.upstream.tidb import make_column, record_key
from pyspark_theflash.upstream.workloads import OrdersWorkload, orders_columns


@pytest.fixture
def cluster(tmp_path: Path):
    c = MiniCluster(tmp_path / "data", resolved_ts_interval=0)
    yield c
    c.close()


def same(expected: dict[str, Any], got: dict[str, Any]) -> None:
    for name, value in expected.items():
        if isinstance(value, (dict, list)):  # JSON comes back as its text
            assert json.loads(got[name]) == value, name
        else:
            assert got[name] == value, name


def test_every_type_round_trips_including_nulls(cluster: MiniCluster) -> None:
    orders = OrdersWorkload(cluster)
    orders.setup()
    rng = random.Random(11)
    for seed in range(30):
        customer = orders._customer_row(rng, "FR", seed)
        order = orders._order_row(rng, seed, ("FR", seed))
        item = orders._item_row(rng, seed, 0)
        with cluster.txn() as t:
            t.insert("shop.customers", customer)
            t.insert("shop.orders", order)
            rowid = t.insert("shop.order_items", item)
        same(customer, cluster.get_row("shop.customers", ("FR", seed)))
        same(order, cluster.get_row("shop.orders", seed))
        same(item, cluster.get_row("shop.order_items", rowid))
    types = {t for cols in orders_columns().values() for _, t, _ in cols}
    assert {"JSON", "BIT(64)", "TIME(3)", "YEAR", "TIMESTAMP(6)", "BIGINT UNSIGNED", "DECIMAL(12,2)"} <= types


def test_handles_int_common_and_rowid(cluster: MiniCluster) -> None:
    a = cluster.create_table("d.ints", [make_column("id", "INT"), make_column("v", "VARCHAR(8)")], primary_key=["id"])
    b = cluster.create_table("d.names", [make_column("name", "VARCHAR(16)"), make_column("n", "INT")], primary_key=["name", "n"])
    c = cluster.create_table("d.heap", [make_column("v", "INT")])
    assert (a["pk_is_handle"], b["is_common_handle"], c["pk_is_handle"] or c["is_common_handle"]) == (True, True, False)
    assert len({a["id"], b["id"], c["id"]}) == 3
    with cluster.txn() as t:
        t.insert("d.ints", {"id": -5, "v": "neg"})
        t.insert("d.names", {"name": "zoë", "n": 2})
        first, second = t.insert("d.heap", {"v": 1}), t.insert("d.heap", {"v": 2})
    assert (first, second) == (1, 2)
    assert decode_record_key(record_key(a, -5)) == (a["id"], -5)
    table_id, datums = decode_common_handle_key(record_key(b, ("zoë", 2)))
    assert table_id == b["id"] and [d.value for d in datums] == ["zoë".encode(), 2]
    assert cluster.get_row("d.ints", -5) == {"id": -5, "v": "neg"}
    assert cluster.get_row("d.names", ("zoë", 2)) == {"name": "zoë", "n": 2}
    assert cluster.scan_table("d.heap") == [{"v": 1, "_tidb_rowid": 1}, {"v": 2, "_tidb_rowid": 2}]
    with pytest.raises(DuplicateKeyError):
        with cluster.txn() as t:
            t.insert("d.ints", {"id": -5, "v": "again"})
    with pytest.raises(RowNotFoundError):
        with cluster.txn() as t:
            t.delete("d.ints", 99)
    with cluster.txn() as t:
        t.update("d.ints", {"id": -5, "v": "upd"})
        t.delete("d.heap", 1)
    assert cluster.get_row("d.ints", -5)["v"] == "upd"
    assert [r["_tidb_rowid"] for r in cluster.scan_table("d.heap")] == [2]


def test_added_column_reads_its_origin_default_in_old_rows_and_drop_hides_it(cluster: MiniCluster) -> None:
    cluster.create_table("d.t", [make_column("id", "BIGINT"), make_column("v", "INT")], primary_key=["id"])
    with cluster.txn() as t:
        t.insert("d.t", {"id": 1, "v": 10})
    old_ts = cluster.get_ts()
    info = cluster.add_column("d.t", make_column("score", "DECIMAL(6,2)"), default="1.50")
    with cluster.txn() as t:
        t.insert("d.t", {"id": 2, "v": 20, "score": "3.25"})
    rows = {r["id"]: r for r in cluster.scan_table("d.t")}
    assert str(rows[1]["score"]) == "1.50" and str(rows[2]["score"]) == "3.25"
    dropped = cluster.drop_column("d.t", "v")
    assert dropped["schema_version"] > info["schema_version"]
    assert [sorted(r) for r in cluster.scan_table("d.t")] == [["id", "score"], ["id", "score"]]
    # a read at a past ts decodes with the schema in force then, as TiDB's stale read does
    assert cluster.scan_table("d.t", old_ts) == [{"id": 1, "v": 10}]
    with pytest.raises(SchemaError):
        cluster.drop_column("d.t", "id")


def test_restart_keeps_tables_rows_and_row_id_allocation(tmp_path: Path) -> None:
    c = MiniCluster(tmp_path / "d", resolved_ts_interval=0)
    c.create_table("d.heap", [make_column("v", "INT")])
    with c.txn() as t:
        t.insert("d.heap", {"v": 1})
    version = c.table_info("d", "heap")["schema_version"]
    c.close()
    c = MiniCluster(tmp_path / "d", resolved_ts_interval=0)
    try:
        assert c.list_tables() == [("d", "heap")]
        assert c.table_info("d", "heap")["schema_version"] == version
        with c.txn() as t:
            assert t.insert("d.heap", {"v": 2}) == 2
        assert [r["v"] for r in c.scan_table("d.heap")] == [1, 2]
    finally:
        c.close()


def test_restart_onto_a_new_binlog_directory_starts_it_with_snapshots_of_the_data(tmp_path: Path) -> None:
    c = MiniCluster(tmp_path / "d", tmp_path / "log1", resolved_ts_interval=0)
    c.create_table("d.t", [make_column("id", "BIGINT"), make_column("v", "INT")], primary_key=["id"])
    with c.txn() as t:
        t.insert("d.t", {"id": 1, "v": 10})
    c.close()
    c = MiniCluster(tmp_path / "d", tmp_path / "log2", resolved_ts_interval=0)
    try:
        from pyspark_theflash.binlog import open_source

        with open_source(str(tmp_path / "log2")) as source:
            events = [pe.event for pe in source.read(10, 1.0)]
        # one snapshot per region (the table's region of its own among them), nothing else
        assert [e.region_id for e in events] == [r.id for r in c.regions()]
        assert all(e.HasField("snapshot") and e.index == c.read_index(e.region_id) for e in events)
        assert [len(e.snapshot.writes) for e in events if e.snapshot.writes] == [1]
    finally:
        c.close()
    with pytest.raises(Exception, match="does not continue the log"):
        MiniCluster(tmp_path / "d", tmp_path / "log1", resolved_ts_interval=0)


def _col(info: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in info["cols"] if c["name"]["O"] == name)


def test_modify_column_in_place_keeps_the_id_and_a_reorg_rewrites_every_row_under_a_new_one(cluster: MiniCluster) -> None:
    cluster.create_table("d.t", [make_column("id", "BIGINT"), make_column("n", "INT"), make_column("s", "VARCHAR(4)")],
                         primary_key=["id"])
    cluster.run_txn(lambda t: [t.insert("d.t", {"id": i, "n": i * 10, "s": "ab"}) for i in range(3)])
    before = cluster.get_ts()
    for column, sql in (("n", "BIGINT"), ("s", "VARCHAR(40)")):  # widening: in place
        info = cluster.modify_column("d.t", column, make_column(column, sql))
        assert _col(info, column)["id"] == _col(cluster.table_info_at("d.t", before), column)["id"]
    rows_before_reorg = cluster.scan_records("d.t")[2]
    info = cluster.modify_column("d.t", "n", make_column("n", "VARCHAR(10)"))  # a type change: reorg
    assert _col(info, "n")["id"] == info["max_col_id"] == 4 and _col(info, "n")["offset"] == 1
    rows_after = cluster.scan_records("d.t")[2]
    assert [k for k, _ in rows_after] == [k for k, _ in rows_before_reorg]
    assert all(a != b for (_, a), (_, b) in zip(rows_before_reorg, rows_after))  # every row rewritten
    assert cluster.scan_table("d.t") == [{"id": i, "n": str(i * 10), "s": "ab"} for i in range(3)]
    assert cluster.scan_table("d.t", before) == [{"id": i, "n": i * 10, "s": "ab"} for i in range(3)]
    version = info["schema_version"]
    with pytest.raises(SchemaError, match="out of the range"):  # a narrowing the data refuses: nothing changes
        cluster.run_txn(lambda t: t.update("d.t", {"id": 1, "n": "99999999"}))
        cluster.modify_column("d.t", "n", make_column("n", "SMALLINT"))
    assert cluster.table_info("d", "t")["schema_version"] == version


def test_a_transaction_that_encoded_rows_for_an_older_schema_is_aborted_and_retried(cluster: MiniCluster) -> None:
    cluster.create_table("d.t", [make_column("id", "BIGINT"), make_column("n", "INT")], primary_key=["id"])
    t = cluster.txn()
    t.insert("d.t", {"id": 1, "n": 1})  # encoded for this schema version
    cluster.add_column("d.t", make_column("m", "INT"), default=7)
    with pytest.raises(TxnAbortedError, match="information schema is changed"):
        t.commit()
    attempts = []

    def body(t: Any) -> None:
        attempts.append(t.start_ts)
        t.insert("d.t", {"id": 1, "n": 1, "m": 2})
        if len(attempts) == 1:
            cluster.drop_column("d.t", "n")  # changes the schema under the first attempt
    with pytest.raises(SchemaError, match="no column 'n'"):
        cluster.run_txn(body)  # the retry encodes for the new schema: the app's statement fails there
    assert len(attempts) == 2
    assert cluster.scan_table("d.t") == []


def test_rename_truncate_drop_and_create_each_make_one_table_per_name_at_every_ts(cluster: MiniCluster) -> None:
    cluster.create_table("d.a", [make_column("id", "BIGINT"), make_column("v", "INT")], primary_key=["id"],
                         row_format=1)
    cluster.run_txn(lambda t: t.insert("d.a", {"id": 1, "v": 1}))
    assert all(v[0] != 0x80 for _, v in cluster.scan_records("d.a")[2])  # row format v1
    first = cluster.get_ts()
    cluster.rename_table("d.a", "d.b")
    assert cluster.table_info("d", "b")["id"] == cluster.table_info_at("d.a", first)["id"]
    cluster.truncate_table("d.b")
    cluster.run_txn(lambda t: t.insert("d.b", {"id": 2, "v": 2}))
    truncated = cluster.get_ts()
    assert all(v[0] != 0x80 for _, v in cluster.scan_records("d.b")[2])  # the new id keeps the format
    cluster.drop_table("d.b")
    cluster.create_table("d.b", [make_column("id", "BIGINT")], primary_key=["id"])
    assert cluster.scan_table("d.a", first) == [{"id": 1, "v": 1}]
    assert cluster.scan_table("d.b", truncated) == [{"id": 2, "v": 2}]
    assert cluster.scan_table("d.b") == []
    with pytest.raises(SchemaError):
        cluster.scan_table("d.a")  # renamed away
    ids = {cluster.table_info_at("d.a", first)["id"], cluster.table_info_at("d.b", truncated)["id"],
           cluster.table_info("d", "b")["id"]}
    assert len(ids) == 3


def test_schema_versions_survive_a_restart(tmp_path: Path) -> None:
    with MiniCluster(tmp_path / "data", tmp_path / "binlog", resolved_ts_interval=0) as c:
        c.create_table("d.t", [make_column("id", "BIGINT"), make_column("n", "INT")], primary_key=["id"])
        c.run_txn(lambda t: t.insert("d.t", {"id": 1, "n": 5}))
        before = c.get_ts()
        c.modify_column("d.t", "n", make_column("n", "VARCHAR(3)"))
    with MiniCluster(tmp_path / "data", tmp_path / "binlog", resolved_ts_interval=0) as c:
        assert c.scan_table("d.t", before) == [{"id": 1, "n": 5}]
        assert c.scan_table("d.t") == [{"id": 1, "n": "5"}]


def test_new_and_updated_orders_have_totals_of_one_plausible_range(cluster: MiniCluster) -> None:
    """The demo sums totals by status: a new order's total is drawn as an updated one's is
    (0.00 to 9,999.99), never to 10^10 beside a few thousand."""
    from decimal import Decimal

    orders = OrdersWorkload(cluster, seed=3, count=60, threads=1)
    orders.setup()
    rng = random.Random(5)
    totals = [orders._order_row(rng, n, ("FR", n))["total"] for n in range(200)]
    assert all(t is None or Decimal(0) <= t < Decimal(10_000) for t in totals), max(t for t in totals if t is not None)
    orders.run()
    rows = cluster.scan_table("shop.orders")
    assert rows and {r["status"] for r in rows} > {"new"}
    assert all(r["total"] is None or r["total"] < Decimal(10_000) for r in rows)


def test_the_ddl_history_read_after_a_tso_lists_every_schema_change_committed_below_it(cluster: MiniCluster) -> None:
    """TiDB reads ``/ddl/history`` at a fresh ts, so a TSO taken before the read bounds every
    job it must list; capture's DDL frontier stands on that (a TSO, then the history: resolved
    ts are capped there). Schema changes on one thread, that pair read on another: no change
    committed at or below the TSO is missing from the history read after it."""
    import threading

    from pyspark_theflash.schema.ddl_jobs import ddl_of_job

    cluster.create_table("ddl.t", [make_column("id", "BIGINT", not_null=True)], primary_key=["id"])
    stop = threading.Event()
    reads: list[tuple[int, set[int]]] = []

    def poll() -> None:
        while not stop.is_set():
            frontier = cluster.get_ts()
            ddls = (ddl_of_job(j) for j in cluster.ddl_history())
            reads.append((frontier, {int(d.commit_ts) for d in ddls if d is not None}))

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        committed = [int(cluster.truncate_table("ddl.t")["update_timestamp"]) for _ in range(150)]
    finally:
        stop.set()
        poller.join()
    assert len(reads) > 10 and all(committed)
    missing = [(ts, frontier) for frontier, listed in reads for ts in committed if ts <= frontier and ts not in listed]
    assert not missing, f"{len(missing)} schema change(s) committed below a TSO, not listed after it: {missing[:3]}"
