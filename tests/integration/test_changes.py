"""Change reads (store/changes.py through scan/session.py): every committed version in
(from_ts, to_ts] with its change type, commit ts and time, the row's values and its handle;
net changes; an update of a primary key as a delete and an insert; the same answer after
compaction and GC; a range below the GC safe point refused naming both ts."""
from __future__ import annotations

import contextlib
import datetime as dt
import pickle
from typing import Any, Iterator

import pyarrow as pa
import pytest

from change_reference import apply_changes, changes_as_tuples, upstream_changes, upstream_snapshot
from flash_rig import FlashRig, wait_for
from pyspark_theflash.scan.errors import ChangesBelowSafePointError
from pyspark_theflash.scan.session import open_change_session, read_stream
from pyspark_theflash.store import Store
from pyspark_theflash.upstream.tidb import make_column

ITEMS = "chg.items"        # an int primary key that is the handle
CLUSTERED = "chg.pairs"    # a clustered (common handle) primary key
PLAIN = "chg.notes"        # no primary key: _tidb_rowid


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashRig]:
    r = FlashRig(tmp_path_factory.mktemp("changes"), gc_life_time_s=3600)
    r.cluster.create_database("chg")
    r.cluster.create_table(ITEMS, [make_column("id", "BIGINT", not_null=True), make_column("name", "VARCHAR(16)"),
                                   make_column("qty", "INT")], primary_key=["id"])
    r.cluster.create_table(CLUSTERED, [make_column("k", "VARCHAR(8)", not_null=True), make_column("n", "INT", not_null=True),
                                       make_column("v", "INT")], primary_key=["k", "n"], clustered=True)
    r.cluster.create_table(PLAIN, [make_column("note", "VARCHAR(16)")])
    r.start_writer(interval_s=0.05)
    for table in (ITEMS, CLUSTERED, PLAIN):
        r.wait_replicated(table)
    yield r
    r.close()


def read_changes(rig: FlashRig, table: str, from_ts: int, to_ts: int, net: bool = False) -> pa.Table:
    with open_change_session(rig.store, table, from_ts, to_ts, net=net,
                             options={"upstream": rig.upstream, "partition_target_bytes": 1}) as s:
        batches = [b for n in range(len(s.streams)) for b in read_stream(s, n)]
        return pa.Table.from_batches(batches, schema=s.schema)


def kinds(t: pa.Table, *cols: str) -> list[tuple[Any, ...]]:
    return [(r["_change_type"], *(r[c] for c in cols)) for r in t.to_pylist()]


def test_each_commit_is_an_insert_an_update_pair_or_a_delete_with_the_values_it_had(rig: FlashRig) -> None:
    c = rig.cluster
    t0 = c.get_ts()
    with c.txn() as t:
        t.insert(ITEMS, {"id": 1, "name": "a", "qty": 1})
        t.insert(ITEMS, {"id": 2, "name": "b", "qty": 2})
    t1 = c.get_ts()
    with c.txn() as t:
        t.update(ITEMS, {"id": 1, "qty": 10})
    with c.txn() as t:
        t.delete(ITEMS, 2)
    with c.txn() as t:  # the primary key (the handle) changes: TiDB deletes and inserts
        t.delete(ITEMS, 1)
        t.insert(ITEMS, {"id": 3, "name": "a", "qty": 10})
    t2 = c.get_ts()
    got = read_changes(rig, ITEMS, t0, t2)
    assert got.schema.names == ["id", "name", "qty", "_change_type", "_commit_ts", "_commit_timestamp", "_tidb_rowid"]
    assert got.schema.field("_commit_timestamp").type == pa.timestamp("us", tz="UTC")
    assert kinds(got, "id", "name", "qty", "_tidb_rowid") == [
        ("insert", 1, "a", 1, 1), ("insert", 2, "b", 2, 2),
        ("update_preimage", 1, "a", 1, 1), ("update_postimage", 1, "a", 10, 1),
        ("delete", 2, "b", 2, 2),
        ("delete", 1, "a", 10, 1), ("insert", 3, "a", 10, 3),
    ]
    ts = got.column("_commit_ts").to_pylist()
    assert ts == sorted(ts) and len(set(ts)) == 4 and t0 < ts[0] and ts[-1] <= t2
    assert got.column("_commit_ts").to_pylist()[2] == got.column("_commit_ts").to_pylist()[3]
    times = got.column("_commit_timestamp").to_pylist()
    assert all(abs(when - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=5) for when in times)
    assert times[0] == dt.datetime.fromtimestamp((ts[0] >> 18) / 1000, dt.timezone.utc)
    # the range is (from, to]: from t1 the inserts of the first commit are gone
    assert kinds(read_changes(rig, ITEMS, t1, t2), "id")[0] == ("update_preimage", 1)
    # net: row 1 went away, row 2 went away, row 3 came: one change each
    assert sorted(kinds(read_changes(rig, ITEMS, t0, t2, net=True), "id", "qty")) == [("insert", 3, 10)]
    assert sorted(kinds(read_changes(rig, ITEMS, t1, t2, net=True), "id", "qty")) == [
        ("delete", 1, 1), ("delete", 2, 2), ("insert", 3, 10)]
    assert read_changes(rig, ITEMS, t2, c.get_ts()).num_rows == 0
    # from 0: the rows at to_ts as inserts, each with the commit ts of its version (a stream's first batch)
    snapshot = read_changes(rig, ITEMS, 0, t1)
    assert kinds(snapshot, "id", "qty") == [("insert", 1, 1), ("insert", 2, 2)]
    assert snapshot.column("_commit_ts").to_pylist() == [ts[0], ts[0]]


def test_a_clustered_key_update_is_a_delete_and_an_insert_and_rows_without_a_key_carry_their_rowid(
        rig: FlashRig) -> None:
    c = rig.cluster
    t0 = c.get_ts()
    with c.txn() as t:
        t.insert(CLUSTERED, {"k": "x", "n": 1, "v": 5})
        t.insert(PLAIN, {"note": "hello"})
    with c.txn() as t:
        t.delete(CLUSTERED, ("x", 1))
        t.insert(CLUSTERED, {"k": "x", "n": 2, "v": 5})
    with c.txn() as t:
        t.update(CLUSTERED, {"k": "x", "n": 2, "v": 6})
    t1 = c.get_ts()
    got = read_changes(rig, CLUSTERED, t0, t1)
    assert got.schema.field("_tidb_rowid").type == pa.binary()
    assert kinds(got, "k", "n", "v") == [("insert", "x", 1, 5), ("delete", "x", 1, 5), ("insert", "x", 2, 5),
                                         ("update_preimage", "x", 2, 5), ("update_postimage", "x", 2, 6)]
    rowids = got.column("_tidb_rowid").to_pylist()
    assert rowids[0] == rowids[1] != rowids[2] == rowids[3] == rowids[4]
    assert changes_as_tuples(got, ["k", "n", "v"]) == sorted(
        upstream_changes(c, CLUSTERED, t0, t1), key=lambda ch: (ch[1], {"delete": 0, "update_preimage": 1,
                                                                       "update_postimage": 2, "insert": 3}[ch[2]]))
    notes = read_changes(rig, PLAIN, t0, t1)
    assert kinds(notes, "note") == [("insert", "hello")] and notes.column("_tidb_rowid").to_pylist()[0] > 0


def test_changes_are_the_same_after_compaction_and_gc_and_a_range_below_the_safe_point_is_refused(
        rig: FlashRig) -> None:
    c = rig.cluster
    t0 = c.get_ts()
    for i in range(5):
        with c.txn() as t:
            t.insert(ITEMS, {"id": 100 + i, "name": f"r{i}", "qty": i})
    t1 = c.get_ts()
    for i in range(5):
        with c.txn() as t:
            t.update(ITEMS, {"id": 100 + i, "qty": 50 + i})
        with c.txn() as t:
            t.update(ITEMS, {"id": 100 + (i + 1) % 5, "name": f"s{i}"})
    with c.txn() as t:
        t.delete(ITEMS, 102)
    t2 = c.get_ts()
    before = read_changes(rig, ITEMS, t1, t2)
    before_net = read_changes(rig, ITEMS, t1, t2, net=True)
    assert before.num_rows == 2 * 10 + 1
    rig.stop_writer()
    with Store.open(rig.store) as store:
        store.compact(force=True)
        store.gc(t1)  # versions at or below t1 go, but the one each row had at t1
        with store.snapshot() as view:
            assert int(view.gc_safe_point()) == t1
    rig.start_writer(interval_s=0.05)
    after = read_changes(rig, ITEMS, t1, t2)
    assert after.to_pylist() == before.to_pylist()
    assert read_changes(rig, ITEMS, t1, t2, net=True).to_pylist() == before_net.to_pylist()
    ref = upstream_changes(c, ITEMS, t1, t2)
    assert sorted(changes_as_tuples(after, ["id", "name", "qty"]), key=repr) == sorted(ref, key=repr)
    columns = ["id", "name", "qty"]
    assert apply_changes(upstream_snapshot(c, ITEMS, t1, t2), changes_as_tuples(after, columns)) == \
        upstream_snapshot(c, ITEMS, t2, t2)
    with pytest.raises(ChangesBelowSafePointError) as err:
        read_changes(rig, ITEMS, t0, t2)
    assert str(t0) in str(err.value) and str(t2) in str(err.value) and str(t1) in str(err.value)


def collected_up_to(rig: FlashRig, ts: int) -> None:
    """The store's GC safe point at ``ts`` at least (the writer stopped while it collects)."""
    with Store.open(rig.store, readonly=True) as store, store.snapshot() as view:
        if int(view.gc_safe_point()) >= ts:
            return
    rig.stop_writer()
    with Store.open(rig.store) as store:
        store.gc(ts)
    rig.start_writer(interval_s=0.05)


def test_flight_and_http_serve_change_reads_and_refuse_a_range_below_the_safe_point(rig: FlashRig) -> None:
    from pyspark_theflash.service import serve
    from service_client import FlightReader, HttpReader

    c = rig.cluster
    collected_up_to(rig, c.get_ts())  # this test's own safe point, whichever tests ran before it
    t0 = c.get_ts()
    with c.txn() as t:
        t.insert(ITEMS, {"id": 500, "name": "svc", "qty": 1})
    with c.txn() as t:
        t.update(ITEMS, {"id": 500, "qty": 2})
    t1 = c.get_ts()
    expected = read_changes(rig, ITEMS, t0, t1)
    assert kinds(expected, "id", "qty") == [("insert", 500, 1), ("update_preimage", 500, 1),
                                            ("update_postimage", 500, 2)]
    running = serve(rig.store, port=0, keeper_interval_s=0.05)
    flight_reader = FlightReader(running.flight_location)
    try:
        http_reader = HttpReader(running.http_url)
        request = {"table": ITEMS, "snapshot_ts": t1, "changes_from": t0}
        got_flight, session = flight_reader.read(request)
        got_http, _ = http_reader.read(request)
        assert session["changes"] == {"from_ts": t0, "to_ts": t1, "net": False}
        assert got_flight.schema == got_http.schema == expected.schema
        assert got_flight.to_pylist() == got_http.to_pylist() == expected.to_pylist()
        net, _ = http_reader.read({**request, "changes": "net"})
        assert kinds(net, "id", "qty") == [("insert", 500, 2)]
        status, body = http_reader.json("POST", "/v1/read-sessions", {**request, "changes_from": 1 << 18})
        assert status == 400 and body["error"]["code"] == "changes_below_safe_point", body
        assert str(1 << 18) in body["error"]["message"] and str(t1) in body["error"]["message"]
    finally:
        flight_reader.close()
        running.close()


@pytest.mark.parametrize("rows_after,wait_resolved", [(1, True), (0, True), (0, False)],
                         ids=["rows-after", "empty-after", "before-it-resolves"])
def test_a_change_stream_refuses_to_cross_a_truncate(rig: FlashRig, rows_after: int, wait_resolved: bool) -> None:
    """Refused whether or not the new table has rows yet, and as soon as the store holds the
    TRUNCATE (its new table's regions may not have resolved past it yet): the old rows'
    deletes are changes no batch of the new table carries."""
    from pyspark_theflash.scan.change_stream import ChangeStream, StreamExpiredError

    c = rig.cluster
    name = f"chg.trunc{rows_after}{'r' if wait_resolved else 'd'}"
    c.create_table(name, [make_column("id", "BIGINT", not_null=True)], primary_key=["id"])
    with c.txn() as t:
        t.insert(name, {"id": 1})
    rig.wait_replicated(name)
    stream = ChangeStream(rig.store, name, {"upstream": rig.upstream, "lease_ttl": "30s"})
    first = stream.latest_offset(stream.initial_offset())
    old_id = store_table_id(rig, name)
    c.truncate_table(name)
    for i in range(rows_after):
        with c.txn() as t:
            t.insert(name, {"id": 2 + i})
    if wait_resolved:
        done = c.get_ts()
        wait_for(lambda: stream.resolved_ts() >= done, 30, "the store to resolve the truncate")
    else:
        wait_for(lambda: store_table_id(rig, name) != old_id, 30, "the store to hold the truncate")
    with pytest.raises(StreamExpiredError, match="truncated or dropped"):
        stream.latest_offset(first)


def store_table_id(rig: FlashRig, name: str) -> int:
    """The id of the table the store now gives ``name``."""
    with Store.open(rig.store, readonly=True) as store, store.snapshot() as view:
        return int(view.table(name).id)


def test_a_change_streams_read_limit_cuts_batches_at_a_commit_and_keeps_each_commit_whole(rig: FlashRig) -> None:
    from pyspark_theflash.scan.change_stream import ChangeStream

    c = rig.cluster
    c.create_table("chg.limit", [make_column("id", "BIGINT", not_null=True)], primary_key=["id"])
    rig.wait_replicated("chg.limit")
    stream = ChangeStream(rig.store, "chg.limit", {"upstream": rig.upstream, "lease_ttl": "30s"})
    first = stream.latest_offset(stream.initial_offset())
    commits = []
    for ids in ([1], [2, 3], [4]):
        with c.txn() as t:
            for i in ids:
                t.insert("chg.limit", {"id": i})
        commits.append(c.get_ts())
    wait_for(lambda: stream.resolved_ts() >= commits[-1], 30, "the store to resolve the inserts")
    changes = read_changes(rig, "chg.limit", first.ts, commits[-1])
    a, b, _, c_ts = changes.column("_commit_ts").to_pylist()
    assert stream.latest_offset(first, max_rows=1).ts == a
    assert stream.latest_offset(first, max_rows=2).ts == a  # the 2-row commit goes whole, next batch
    assert stream.latest_offset(first, max_rows=3).ts == b
    assert stream.latest_offset(first, max_rows=100).ts >= c_ts
    assert stream.latest_offset(first).ts >= c_ts


def test_a_change_stream_ends_its_batch_before_an_added_column_and_then_asks_for_a_restart(rig: FlashRig) -> None:
    """Spark fixes a stream's schema at the start: a batch never spans a schema change, and the
    first batch under a schema with a column the stream lacks is refused (its values would be
    dropped); the restarted stream, with the column, reads on from the same offset."""
    import json

    from pyspark_theflash.scan.change_stream import ChangeStream, StreamSchemaChangedError
    from pyspark_theflash.store.changes import CHANGE_COLUMNS

    c = rig.cluster
    name = "chg.evolve"
    c.create_table(name, [make_column("id", "BIGINT", not_null=True), make_column("v", "INT")], primary_key=["id"])
    with c.txn() as t:
        t.insert(name, {"id": 1, "v": 1})
    rig.wait_replicated(name)

    def stream_of(*columns: str) -> ChangeStream:
        return ChangeStream(rig.store, name, {"upstream": rig.upstream, "lease_ttl": "30s",
                                              "stream_columns": json.dumps([*columns, *CHANGE_COLUMNS])})

    stream = stream_of("id", "v")
    first = stream.latest_offset(stream.initial_offset())
    with c.txn() as t:
        t.insert(name, {"id": 2, "v": 2})
    before_ddl = c.get_ts()
    c.add_column(name, make_column("w", "INT"), default=9)
    with c.txn() as t:
        t.insert(name, {"id": 3, "v": 3, "w": 30})
    done = c.get_ts()
    wait_for(lambda: stream.resolved_ts() >= done, 30, "the store to resolve the insert after the DDL")
    end = stream.latest_offset(first)
    assert before_ddl <= end.ts < done  # cut before the ADD COLUMN
    assert kinds(read_changes(rig, name, first.ts, end.ts), "id") == [("insert", 2)]
    with pytest.raises(StreamSchemaChangedError, match=r"column\(s\) w since ts \d+.*restart the query"):
        stream.latest_offset(end)
    restarted = stream_of("id", "v", "w")
    again = restarted.latest_offset(end)
    assert again.ts >= done
    assert [(r["id"], r["w"]) for r in read_changes(rig, name, end.ts, again.ts).to_pylist()] == [(3, 30)]
    # a stream whose schema has the column from the start reads across (older rows: its default)
    assert stream_of("id", "v", "w").latest_offset(first).ts < done  # still one schema per batch


@contextlib.contextmanager
def stores_opened_read_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Store]]:
    """Every Store opened read-only in this process while the block runs (the writer's own,
    read-write, is not one)."""
    opened: list[Store] = []
    real_open = Store.open

    def counting_open(path: str, readonly: bool = False, options: Any = None) -> Store:
        store = real_open(path, readonly, options)
        if readonly:
            opened.append(store)
        return store

    monkeypatch.setattr(Store, "open", counting_open)
    yield opened


def test_a_change_stream_reads_one_store_for_its_life_and_closes_it_when_stopped(
        rig: FlashRig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its offsets, the batch cut (a change read planned on it) and its lag read one Store,
    opened on first use: a latest_offset used to open the store four to six times."""
    from pyspark_theflash.scan.change_stream import ChangeStream

    c = rig.cluster
    closed: list[Store] = []
    real_close = Store.close

    def recorded_close(self: Store) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(Store, "close", recorded_close)
    with stores_opened_read_only(monkeypatch) as opened:
        stream = ChangeStream(rig.store, ITEMS, {"upstream": rig.upstream, "lease_ttl": "30s"})
        assert opened == []  # nothing opened before the stream reads
        first = stream.latest_offset(stream.initial_offset())
        with c.txn() as t:
            t.insert(ITEMS, {"id": 700, "name": "once", "qty": 1})
        done = c.get_ts()
        wait_for(lambda: stream.resolved_ts() >= done, 30, "the store to resolve the insert")
        assert stream.latest_offset(first, max_rows=1).ts > first.ts
        stream.lag_ms()
        assert len(opened) == 1, opened
        # PySpark pickles its stream reader, this stream with it: a copy opens the store itself
        copy = pickle.loads(pickle.dumps(stream))
        assert copy.opened_store() is not stream.opened_store() and len(opened) == 2
        copy.stop()
        stream.stop()
        assert opened[0] in closed and opened[1] in closed


def test_a_service_plans_sessions_and_change_streams_with_its_engines_store(
        rig: FlashRig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read session, a query snapshot and a change stream's offsets at the service open no
    store of their own: the engine's, opened with the service, is handed down."""
    from pyspark_theflash.service import serve
    from service_client import HttpReader

    c = rig.cluster
    with c.txn() as t:
        t.insert(ITEMS, {"id": 800, "name": "svc-once", "qty": 1})
    with serve(rig.store, port=0) as running:
        http = HttpReader(running.http_url)
        with stores_opened_read_only(monkeypatch) as opened:
            got, _ = http.read({"table": ITEMS})
            assert 800 in got.column("id").to_pylist()
            status, body = http.json("POST", "/v1/snapshots", {"tables": [ITEMS, PLAIN]})
            assert status == 200, body
            status, body = http.json("POST", "/v1/change-streams/offset",
                                     {"table": ITEMS, "options": {"lease_ttl": "30s"}, "start": None})
            assert status == 200, body
            assert opened == []
