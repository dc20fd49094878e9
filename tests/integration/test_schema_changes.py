"""Schema changes from a living upstream, end to end: the mini cluster runs the DDL, its binlog
carries each change as a DDL event in commit order, the writer job applies the log, and the
store answers with every row decoded by the schema in force at its commit ts.

Each test is one way a replica that only knows the *current* schema goes wrong: a column
added and dropped while the writer was away, a column widened in place (same column id), an
ENUM/SET member appended in place, ADD COLUMN on a table whose rows are in the old v1 format,
TRUNCATE and DROP + CREATE under one name."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pytest

from pyspark_theflash.binlog import SegmentReader, SegmentWriter
from pyspark_theflash.store import Store
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.tidb import make_column
from pyspark_theflash.writer.loop import Writer
from pyspark_theflash.writer.options import WriterOptions

TABLE = "shop.items"


class Upstream:
    """A served mini cluster writing its binlog to files, and the writer job run in this
    process until it has applied everything the binlog holds."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cluster = MiniCluster(root / "cluster", binlog_dir=root / "binlog", resolved_ts_interval=0)
        self.address = self.cluster.serve(binlog_port=None)["upstream"]
        self.store = root / "store"

    def catch_up(self, binlog: Path | None = None) -> None:
        """One writer run over the binlog (or another log directory), stopping once caught up;
        raises what killed the writer."""
        Writer(WriterOptions(binlog=str(binlog or self.root / "binlog"), store=str(self.store), upstream=self.address,
                             interval_s=0.01, until_caught_up=True)).run()

    def rows(self, ts: int, schema: str = "current", table: str = TABLE) -> list[dict[str, Any]]:
        as_of = {"schema": schema} if schema != "current" else {}
        with Store.open(str(self.store), readonly=True) as s:
            return sorted(s.scan_table(table, ts, **as_of).to_pylist(), key=lambda r: r["id"])


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Upstream]:
    u = Upstream(tmp_path)
    yield u
    u.cluster.close()


def _items(up: Upstream, *extra: dict[str, Any], row_format: int = 2) -> None:
    v1 = {"row_format": 1} if row_format == 1 else {}
    up.cluster.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("name", "VARCHAR(20)"),
                                    *extra], primary_key=["id"], **v1)


def _insert(up: Upstream, **row: Any) -> int:
    up.cluster.run_txn(lambda t: t.insert(TABLE, row))
    return up.cluster.get_ts()


@pytest.mark.parametrize("log", ["with DDL events", "without DDL events"])
def test_a_column_added_and_dropped_while_the_writer_was_away_is_no_reason_to_die(up: Upstream, log: str) -> None:
    stripped = LogWithoutDdl(up.root / "binlog", up.root / "stripped")
    binlog = (lambda: up.root / "binlog") if log == "with DDL events" else stripped.sync
    _items(up)
    _insert(up, id=1, name="before")
    up.catch_up(binlog())
    up.cluster.add_column(TABLE, make_column("coupon", "INT"), default=5)
    with_coupon = _insert(up, id=2, name="with", coupon=35)
    up.cluster.drop_column(TABLE, "coupon")  # the schema endpoint now lacks the column rows 2 carries
    now = _insert(up, id=3, name="after")
    up.catch_up(binlog())  # used to die: "carry column ids [...] that its schema lacks even after re-fetching it"
    assert up.rows(now) == [{"id": 1, "name": "before"}, {"id": 2, "name": "with"}, {"id": 3, "name": "after"}]
    if log == "with DDL events":  # the version that had the column is known: a read as of then shows it
        assert up.rows(with_coupon, schema="as_of") == [
            {"id": 1, "name": "before", "coupon": 5}, {"id": 2, "name": "with", "coupon": 35}]


def test_a_column_widened_in_place_keeps_values_the_old_type_cannot_hold(up: Upstream) -> None:
    _items(up, make_column("qty", "INT"))
    before = _insert(up, id=1, name="small", qty=5)
    up.catch_up()
    info = up.cluster.modify_column(TABLE, "qty", make_column("qty", "BIGINT"))
    assert [c["id"] for c in info["cols"] if c["name"]["O"] == "qty"] == [3]  # same column id: in place
    now = _insert(up, id=2, name="big", qty=1099511627781)
    up.catch_up()
    want = [{"id": 1, "name": "small", "qty": 5}, {"id": 2, "name": "big", "qty": 1099511627781}]
    assert up.rows(now) == want  # used to be stored as 5: decoded with INT
    with Store.open(str(up.store)) as store:
        store.compact(force=True)  # one stable part for both versions
    assert up.rows(now) == want
    old = up.rows(before, schema="as_of")  # the INT version reads the rewritten part through a cast
    assert old == [{"id": 1, "name": "small", "qty": 5}]
    with Store.open(str(up.store), readonly=True) as s:
        assert s.scan_table(TABLE, before, schema="as_of").schema.field("qty").type == pa.int32()


def test_an_enum_or_set_member_appended_in_place_decodes_now_and_after_a_restart(up: Upstream) -> None:
    _items(up, make_column("state", "ENUM('new','paid')"), make_column("tags", "SET('a','b')"))
    _insert(up, id=1, name="x", state="paid", tags="a,b")
    up.catch_up()
    up.cluster.modify_column(TABLE, "state", make_column("state", "ENUM('new','paid','refunded')"))
    up.cluster.modify_column(TABLE, "tags", make_column("tags", "SET('a','b','c')"))
    now = _insert(up, id=2, name="y", state="refunded", tags="a,c")
    up.catch_up()  # used to raise BatchDecodeError here, and on every restart
    up.catch_up()
    assert up.rows(now) == [{"id": 1, "name": "x", "state": "paid", "tags": "a,b"},
                            {"id": 2, "name": "y", "state": "refunded", "tags": "a,c"}]


class LogWithoutDdl:
    """A copy of the cluster's log minus its DDL events (a log written before they existed, or
    by a source that has none): the writer must find schema changes from the rows alone.
    ``sync()`` appends what the cluster logged since the last call."""

    def __init__(self, src: Path, dest: Path) -> None:
        self.src, self.dest, self.copied = src, dest, 0

    def sync(self) -> Path:
        with SegmentReader(self.src) as reader:
            events = [pe.event for pe in reader][self.copied:]
        self.copied += len(events)
        with SegmentWriter(self.dest) as writer:
            writer.append([e for e in events if e.WhichOneof("payload") != "ddl"])
        return self.dest


@pytest.mark.parametrize("log", ["with DDL events", "without DDL events"])
def test_add_column_on_a_table_written_in_row_format_v1_keeps_the_new_value(up: Upstream, log: str) -> None:
    _items(up, make_column("v", "INT"), row_format=1)
    _insert(up, id=1, name="old", v=1)
    _insert(up, id=9, name="probe")
    _ts, _info, records = up.cluster.scan_records(TABLE)
    assert all(value[0] != 0x80 for _key, value in records)  # row format v1, not v2
    stripped = LogWithoutDdl(up.root / "binlog", up.root / "stripped")
    binlog = up.root / "binlog" if log == "with DDL events" else stripped.sync()
    up.catch_up(binlog)
    up.cluster.add_column(TABLE, make_column("w", "INT"), default=3)
    now = _insert(up, id=2, name="new", v=2, w=42)
    up.catch_up(binlog if log == "with DDL events" else stripped.sync())
    # used to be lost: the schema guard read column ids from v2 rows only
    assert up.rows(now) == [{"id": 1, "name": "old", "v": 1, "w": 3}, {"id": 2, "name": "new", "v": 2, "w": 42},
                            {"id": 9, "name": "probe", "v": None, "w": 3}]


def test_truncate_and_drop_create_leave_one_table_per_name_and_gc_collects_the_old_ids(up: Upstream) -> None:
    _items(up)
    first_id = up.cluster.table_info("shop", "items")["id"]
    before_truncate = _insert(up, id=1, name="first")
    up.cluster.truncate_table(TABLE)
    truncated = _insert(up, id=2, name="second")
    second_id = up.cluster.table_info("shop", "items")["id"]
    up.cluster.drop_table(TABLE)
    _items(up)
    now = _insert(up, id=3, name="third")
    up.catch_up()
    # used to fail: "table 'shop.items' is not in the store (tables: shop.items, shop.items)"
    assert up.rows(now) == [{"id": 3, "name": "third"}]
    assert up.rows(truncated, schema="as_of") == [{"id": 2, "name": "second"}]
    assert up.rows(before_truncate, schema="as_of") == [{"id": 1, "name": "first"}]
    with Store.open(str(up.store)) as store:
        with store.snapshot() as view:
            assert [t.name for t in view.tables()] == ["items"]
            assert {r[0] for r in view.retired_tables()} == {first_id, second_id}
            assert view.parts(first_id) and view.parts(second_id)
        store.gc(now)  # past the TRUNCATE and the DROP: no readable ts needs the old ids
        with store.snapshot() as view:
            assert view.parts(first_id) == [] and view.parts(second_id) == []
    assert up.rows(up.cluster.get_ts()) == [{"id": 3, "name": "third"}]


def test_a_reorg_gives_the_column_a_new_id_and_both_schemas_read_their_own_values(up: Upstream) -> None:
    _items(up, make_column("code", "BIGINT"))
    before = _insert(up, id=1, name="a", code=12)
    up.catch_up()
    info = up.cluster.modify_column(TABLE, "code", make_column("code", "VARCHAR(8)"))
    assert [c["id"] for c in info["cols"] if c["name"]["O"] == "code"] == [4]  # a new column id
    now = _insert(up, id=2, name="b", code="x7")
    up.cluster.drop_column(TABLE, "name")
    up.catch_up()
    with Store.open(str(up.store)) as store:
        store.compact(force=True)  # keeps the old column id and "name": older readable versions need them
    assert up.rows(now) == [{"id": 1, "code": "12"}, {"id": 2, "code": "x7"}]
    assert up.rows(before, schema="as_of") == [{"id": 1, "name": "a", "code": 12}]
    from pyspark_theflash.store.verify import verify_store

    assert verify_store(up.store).problems == []  # the compacted part lists its own columns


def test_the_binlog_carries_each_schema_change_before_every_row_committed_after_it(up: Upstream) -> None:
    _items(up, make_column("n", "INT"))
    for i in range(3):
        _insert(up, id=i, name=str(i), n=i)
    up.cluster.add_column(TABLE, make_column("m", "INT"))
    up.cluster.modify_column(TABLE, "n", make_column("n", "BIGINT"))
    up.cluster.modify_column(TABLE, "m", make_column("m", "VARCHAR(5)"))  # reorg: rows rewritten
    up.cluster.rename_table(TABLE, "shop.things")
    up.cluster.truncate_table("shop.things")
    up.cluster.drop_table("shop.things")
    with SegmentReader(up.root / "binlog") as reader:
        events = [pe.event for pe in reader]
    ddl = [e.ddl for e in events if e.WhichOneof("payload") == "ddl"]
    names = [d.Type.Name(d.type) for d in ddl]
    assert names == ["CREATE_TABLE", "ADD_COLUMN", "MODIFY_COLUMN", "MODIFY_COLUMN", "RENAME_TABLE",
                     "TRUNCATE_TABLE", "DROP_TABLE"]
    assert [d.commit_ts for d in ddl] == sorted(d.commit_ts for d in ddl)
    assert [d.schema_version for d in ddl] == sorted(d.schema_version for d in ddl)
    reorg = ddl[3]
    from pyspark_theflash.binlog import rows as binlog_rows

    seen_ddl = False
    rewritten = 0
    for e in events:
        if e.WhichOneof("payload") == "ddl" and e.ddl.commit_ts == reorg.commit_ts:
            seen_ddl = True
        elif e.WhichOneof("payload") == "entries":
            c = binlog_rows.columns(e.entries)
            at_reorg = int(np.count_nonzero(c.commit_ts == reorg.commit_ts))
            assert seen_ddl or at_reorg == 0, "a row of the reorg came before its DDL event"
            rewritten += at_reorg
    assert rewritten == 3  # the reorg rewrote every row, committed at the DDL's commit ts


def test_two_live_tables_of_one_name_resolve_to_the_newer_one(tmp_path: Path) -> None:
    """A store that never saw the DROP (it started mid-stream and learned both ids from the
    schema endpoint) still reads the name: the table changed last is the one the name means."""
    from store_events import DB, committed, event, items_table, key, row

    old, new = items_table(100, schema_version=3), items_table(101, schema_version=7)
    with Store.open(str(tmp_path / "store")) as store:
        store.put_schema(DB, old.to_json())
        store.put_schema(DB, new.to_json())
        store.write([event(1, 6, [committed(key(old, 1), row(old, id=1, name="old"), 10),
                                  committed(key(new, 1), row(new, id=1, name="new"), 11)])])
        store.flush()
        # used to fail: "table 'shop.items' is not in the store (tables: shop.items, shop.items)"
        assert store.scan_table("shop.items", 20).column("name").to_pylist() == ["new"]


def test_the_schema_guard_reads_the_column_ids_of_v1_rows_as_of_v2_rows() -> None:
    from pyspark_theflash.codec.datum import Datum
    from pyspark_theflash.codec.row_v1 import encode_row_v1
    from pyspark_theflash.codec.row_v2 import encode_row_v2
    from pyspark_theflash.writer.schema_guard import column_ids_by_table, unknown_column_ids
    from store_events import committed, event, key

    v1 = encode_row_v1([(2, Datum("int", 1)), (5, Datum("bytes", b"x")), (9, Datum("null", None))])
    v2 = encode_row_v2([(2, Datum("int", 1)), (3, Datum("int", 4))])
    events = [event(1, 6, [committed(key(100, 1), v1, 10), committed(key(101, 1), v2, 10),
                           committed(key(100, 2), None, 11)])]
    seen = column_ids_by_table(events)
    assert {t: ids.tolist() for t, ids in seen.items()} == {100: [2, 5, 9], 101: [2, 3]}
    assert unknown_column_ids(seen, {100: {2, 5}, 101: {2, 3}}) == {100: [9]}


def test_a_read_as_of_a_ts_the_store_has_not_seen_the_schema_changes_of_waits_then_says_so(tmp_path: Path) -> None:
    """A DDL event belongs to no region: the store knows every schema change at or below ts
    only once some region's resolved ts reached ts (the upstream logs a DDL before anything
    stamped later). Before that, schema=as_of cannot be answered."""
    from pyspark_theflash.scan.errors import SchemaNotCaughtUpError
    from pyspark_theflash.scan.options import ScanOptions
    from pyspark_theflash.scan.schema_at import table_as_of
    from store_events import DB, items_table, resolved_ts, snapshot_event, region

    t = items_table()
    with Store.open(str(tmp_path / "store")) as store:
        store.put_schema(DB, t.to_json())
        store.write([snapshot_event(1, 5, region(1)), resolved_ts(1, 5, 100)])
        store.flush()
    options = ScanOptions.from_mapping({"store": str(tmp_path / "store"), "table": "shop.items",
                                        "schema": "as_of", "region_wait_timeout": "300ms"})
    with Store.open(str(tmp_path / "store"), readonly=True) as store, store.snapshot() as view:
        assert view.schema_changes_seen_until() == 100
        assert table_as_of(store, view, "shop.items", 100, options).id == t.id
        with pytest.raises(SchemaNotCaughtUpError, match="only up to ts 100"):
            table_as_of(store, view, "shop.items", 101, options)  # no writer moves the resolved ts on


@pytest.mark.parametrize("seed", range(8))
def test_the_schema_guard_finds_every_column_id_of_every_table_in_a_mixed_batch(seed: int) -> None:
    """Rows of many tables, each mostly of one column set with a few of others (added,
    dropped, reorganised columns; small and large ids; v1 and v2 rows; deletes): the ids found
    per table are exactly the union of what its rows carry."""
    import random

    from pyspark_theflash.codec.datum import Datum
    from pyspark_theflash.codec.row_v1 import encode_row_v1
    from pyspark_theflash.codec.row_v2 import encode_row_v2
    from pyspark_theflash.writer.schema_guard import column_ids_by_table
    from store_events import committed, event, key

    rng = random.Random(seed)
    want: dict[int, set[int]] = {}
    rows = []
    for h in range(400):
        # more tables than the pass keeps recent id blocks of (16), interleaved
        tid = rng.choice([100, 100, 100, 101, 102, rng.randrange(200, 240)])
        usual = {100: [1, 2, 3], 101: [1, 4, 300], 102: [1, 2]}.get(tid, [1, tid % 7 + 2])
        ids = usual if rng.random() < 0.9 else sorted(rng.sample(range(1, 70000 if rng.random() < 0.3 else 60), 3))
        if rng.random() < 0.05:
            rows.append(committed(key(tid, h), None, 10))  # a delete carries no value
            continue
        encode = encode_row_v1 if rng.random() < 0.1 else encode_row_v2
        rows.append(committed(key(tid, h), encode([(i, Datum("int", i * 7)) for i in ids]), 10))
        want.setdefault(tid, set()).update(ids)
    seen = column_ids_by_table([event(1, 6, rows)])
    assert {t: set(ids.tolist()) for t, ids in seen.items()} == want


def test_the_schema_guard_reads_rows_of_record_keys_only() -> None:
    """A row counts when its key is a record key of a table id that is not negative; index
    keys, short keys and other keys carry no column ids. Slices are read from their own start."""
    from pyspark_theflash.binlog.rows import RowColumns
    from pyspark_theflash.codec.datum import Datum
    from pyspark_theflash.codec.row_v2 import encode_row_v2
    from pyspark_theflash.writer import schema_guard

    def key(table: int, rest: bytes) -> bytes:
        return b"t" + ((table ^ (1 << 63)) & ((1 << 64) - 1)).to_bytes(8, "big") + rest

    keys = [key(500, b"_r" + bytes(8)), b"", b"x", key(7, b"_i" + bytes(8)), key(42, b"_r\x01"),
            b"m\x00abc", key(-3, b"_r")]
    values = [encode_row_v2([(10 + i, Datum("int", i))]) for i in range(len(keys))]
    n = len(keys)

    def seen(lo: int, hi: int) -> dict[int, list[int]]:
        """The ids of rows lo..hi, the keys and values slices at different offsets."""
        m, zeros = hi - lo, np.zeros(hi - lo, dtype=np.uint64)
        rows = RowColumns(np.full(m, 4, np.uint8), np.ones(m, np.uint8), zeros, zeros, zeros, zeros,
                          pa.array(keys, pa.binary()).slice(lo, m),
                          pa.array([b"pad"] + values, pa.binary()).slice(lo + 1, m), pa.array([b""] * m, pa.binary()))
        return {t: sorted(ids) for t, ids in schema_guard._ids_of_rows(rows).items()}

    assert seen(0, n) == {500: [10], 42: [14]}
    assert seen(3, 6) == {42: [14]}
