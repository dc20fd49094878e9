"""Read sessions without Spark or a server: one ts, a schema, streams with estimates and handle
ranges, the JSON filter form, column order and hidden columns, the lease's life."""
from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pytest

from flash_rig import FlashRig, wait_for
from pyspark_theflash.latch import connect as connect_latch
from pyspark_theflash.scan import ScanOptionError, SnapshotTsOutOfRangeError, TableNotReplicatedError
from pyspark_theflash.scan.filter_json import FilterFormatError, filter_from_json
from pyspark_theflash.scan.session import SessionExpiredError, open_read_session, read_stream
from pyspark_theflash.upstream.tidb import make_column, record_key

TABLE = "sess.items"
ROWS = 40
REGIONS = 4


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashRig]:
    r = FlashRig(tmp_path_factory.mktemp("session"), via="capture")
    table = r.cluster.create_table(TABLE, [
        make_column("id", "BIGINT", not_null=True), make_column("name", "VARCHAR(16)"),
        make_column("price", "DECIMAL(10,2)"), make_column("day", "DATE"), make_column("at", "TIMESTAMP(6)"),
        make_column("blob", "VARBINARY(8)"),
    ], primary_key=["id"])
    for region in range(1, REGIONS):
        r.cluster.split_at(record_key(table, region * ROWS // REGIONS))
    with r.cluster.txn() as t:
        for i in range(ROWS):
            t.insert(TABLE, {"id": i, "name": None if i % 10 == 0 else f"n{i:02d}",
                             "price": decimal.Decimal(i) / 4, "day": dt.date(2024, 1, 1) + dt.timedelta(days=i),
                             "at": dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(hours=i),
                             "blob": bytes([i % 3]) * 3})
    r.start_writer(interval_s=0.05)
    r.wait_replicated(TABLE)
    yield r
    r.close()


def read_all(session) -> pa.Table:
    batches = [b for n in range(len(session.streams)) for b in read_stream(session, n)]
    return pa.Table.from_batches(batches, schema=session.schema)


def ids(session) -> list[int]:
    return sorted(read_all(session).column("id").to_pylist())


def test_a_session_has_one_ts_a_schema_and_a_stream_per_region_with_estimates(rig: FlashRig) -> None:
    with open_read_session(rig.store, TABLE, options={"upstream": rig.upstream, "partition_target_bytes": 1}) as s:
        assert s.ts > 0 and len(s.id) == 32
        assert s.schema.names == ["id", "name", "price", "day", "at", "blob"]
        assert s.schema.field("price").type == pa.decimal128(10, 2)
        assert s.schema.field("at").type == pa.timestamp("us", tz="UTC")
        assert len(s.streams) == REGIONS
        assert [st.index for st in s.streams] == list(range(REGIONS))
        # the estimates cover the rows (every version counted) and the handle ranges tile the table
        assert sum(st.rows for st in s.streams) >= ROWS and all(st.bytes > 0 for st in s.streams)
        bounds = [st.to_dict()["handle_ranges"] for st in s.streams]
        assert bounds[0][0][0] is None and bounds[-1][-1][1] is None
        assert [b[-1][1] for b in bounds[:-1]] == [b[0][0] for b in bounds[1:]]
        table = read_all(s)
        assert table.schema == s.schema and sorted(table.column("id").to_pylist()) == list(range(ROWS))
        described = s.to_dict()
        assert described["ts"] == s.ts and len(described["streams"]) == REGIONS
        assert described["lease"]["id"] == s.lease_id


def test_columns_come_in_the_order_asked_for_with_hidden_columns_anywhere(rig: FlashRig) -> None:
    with open_read_session(rig.store, TABLE, columns=["_tidb_rowid", "PRICE", "id", "_tidb_commit_ts"],
                           options={"upstream": rig.upstream}) as s:
        assert s.schema.names == ["_tidb_rowid", "price", "id", "_tidb_commit_ts"]
        assert s.schema.field("_tidb_commit_ts").type == pa.int64()
        t = read_all(s).sort_by("id")
        assert t.column("_tidb_rowid").to_pylist() == list(range(ROWS))
        assert all(0 < ts <= s.ts for ts in t.column("_tidb_commit_ts").to_pylist())


def test_the_json_filter_keeps_exactly_the_matching_rows(rig: FlashRig) -> None:
    def matching(conjuncts) -> list[int]:
        with open_read_session(rig.store, TABLE, filter=conjuncts, options={"upstream": rig.upstream}) as s:
            return ids(s)

    assert matching([["id", ">=", 30], ["id", "<", 33]]) == [30, 31, 32]
    assert matching([["name", "is_null"]]) == [0, 10, 20, 30]
    assert matching([["price", "=", "2.25"]]) == [9]
    assert matching([["day", "in", ["2024-01-03", "2024-01-05"]]]) == [2, 4]
    assert matching([["at", ">=", "2030-01-02T13:00:00+02:00"]]) == list(range(35, ROWS))
    assert matching([["blob", "=", {"hex": "020202"}], ["id", "<", 10]]) == [2, 5, 8]
    assert matching([["name", "starts_with", "n3"]]) == list(range(31, 40))
    assert matching([{"or": [["id", "=", 1], ["id", "=", 39]]}]) == [1, 39]
    assert matching([["id", "not_in", list(range(2, ROWS))]]) == [0, 1]
    assert matching([]) == list(range(ROWS))


def test_a_bad_filter_names_the_column_operator_or_value_at_fault() -> None:
    from pyspark_theflash.schema import table as build_table, column

    info = build_table(1, "t", [column("id", "BIGINT", not_null=True), column("d", "DATE")], primary_key=["id"],
                       db="db")
    for conjuncts, message in [
        ({"id": 1}, "must be a JSON list"),
        ([["nope", "=", 1]], "has no such column; its columns are"),
        ([["id", "~", 1]], "unknown operator '~'"),
        ([["id", "=", "x"]], "column id"),
        ([["id", "=", None]], "use \\[.id., \"is_null\"\\]"),
        ([["d", "<", "2024-13-01"]], "column d"),
        ([["id", "in", 3]], "needs a list"),
        ([["id", "is_null", 1]], "takes no value"),
        ([["id"]], "not \\[column, op\\]"),
    ]:
        with pytest.raises(FilterFormatError, match=message):
            filter_from_json(conjuncts, info)


def test_bad_requests_raise_the_planners_errors(rig: FlashRig) -> None:
    opts = {"upstream": rig.upstream}
    with pytest.raises(TableNotReplicatedError, match="sess.nope"):
        open_read_session(rig.store, "sess.nope", options=opts)
    with pytest.raises(ScanOptionError, match=r"no column\(s\) \['nope'\]"):
        open_read_session(rig.store, TABLE, columns=["id", "nope"], options=opts)
    with pytest.raises(ScanOptionError, match="more than once"):
        open_read_session(rig.store, TABLE, columns=["id", "ID"], options=opts)
    with pytest.raises(SnapshotTsOutOfRangeError, match="in the future"):
        open_read_session(rig.store, TABLE, snapshot_ts=rig.cluster.get_ts() + (3_600_000 << 18), options=opts)


def test_a_detached_session_lease_expires_unless_renewed_and_close_releases_it(rig: FlashRig) -> None:
    latch = connect_latch(rig.store)
    s = open_read_session(rig.store, TABLE, keep_alive=False, options={"upstream": rig.upstream, "lease_ttl": "400ms"})
    first = s.lease_expires_at
    assert s.renew() > first
    assert s.lease_id in [x.lease_id for x in latch.leases()]
    wait_for(lambda: s.lease_id not in [x.lease_id for x in latch.leases()], 10, "the lease to expire")
    with pytest.raises(SessionExpiredError, match="expired"):
        s.renew()
    s.close()
    kept = open_read_session(rig.store, TABLE, keep_alive=False, options={"upstream": rig.upstream})
    assert kept.lease_id in [x.lease_id for x in latch.leases()]
    kept.close()
    assert kept.lease_id not in [x.lease_id for x in latch.leases()]


def test_a_store_given_as_a_path_object_is_that_store(rig: FlashRig) -> None:
    # (a pathlib.Path has a ``root`` attribute, its anchor "/": it was taken for an open Store's root)
    with open_read_session(Path(rig.store), TABLE, options={"upstream": rig.upstream}) as s:
        assert ids(s) == list(range(ROWS))
