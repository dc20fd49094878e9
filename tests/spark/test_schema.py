"""The schema box: TiDB table info JSON in and out, every TiDB type's Arrow and Spark type,
nullability, hidden columns, origin defaults and schema versions."""
from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from pyspark.sql import types as S
from pyspark.sql.pandas.types import from_arrow_type

from pyspark_theflash.codec import column_types as T
from pyspark_theflash.schema import (
    COMMIT_TS,
    DELMARK,
    HIDDEN_COLUMNS,
    ROWID,
    SchemaError,
    SchemaHistory,
    TableInfo,
    UnknownColumnError,
    arrow_schema,
    arrow_type,
    column,
    origin_default_value,
    spark_schema,
    spark_type,
    table,
)

# (SQL type, Arrow type, Spark type) — the table in docs/architecture.md, row by row
TYPE_MAPPING = [
    ("TINYINT", pa.int8(), S.ByteType()),
    ("SMALLINT", pa.int16(), S.ShortType()),
    ("MEDIUMINT", pa.int32(), S.IntegerType()),
    ("INT", pa.int32(), S.IntegerType()),
    ("BIGINT", pa.int64(), S.LongType()),
    ("TINYINT UNSIGNED", pa.int16(), S.ShortType()),
    ("SMALLINT UNSIGNED", pa.int32(), S.IntegerType()),
    ("MEDIUMINT UNSIGNED", pa.int32(), S.IntegerType()),
    ("INT UNSIGNED", pa.int64(), S.LongType()),
    ("BIGINT UNSIGNED", pa.decimal128(20, 0), S.DecimalType(20, 0)),
    ("YEAR", pa.int16(), S.ShortType()),
    ("FLOAT", pa.float32(), S.FloatType()),
    ("DOUBLE", pa.float64(), S.DoubleType()),
    ("DECIMAL(10,2)", pa.decimal128(10, 2), S.DecimalType(10, 2)),
    ("DECIMAL(38,10)", pa.decimal128(38, 10), S.DecimalType(38, 10)),
    ("DECIMAL(65,30)", pa.string(), S.StringType()),
    ("DATE", pa.date32(), S.DateType()),
    ("DATETIME(6)", pa.timestamp("us"), S.TimestampNTZType()),
    ("TIMESTAMP(3)", pa.timestamp("us", tz="UTC"), S.TimestampType()),
    ("TIME(6)", pa.duration("us"), S.DayTimeIntervalType()),
    ("CHAR(10)", pa.string(), S.StringType()),
    ("VARCHAR(255)", pa.string(), S.StringType()),
    ("TEXT", pa.string(), S.StringType()),
    ("TINYTEXT", pa.string(), S.StringType()),
    ("MEDIUMTEXT", pa.string(), S.StringType()),
    ("LONGTEXT", pa.string(), S.StringType()),
    ("BINARY(16)", pa.binary(), S.BinaryType()),
    ("VARBINARY(64)", pa.binary(), S.BinaryType()),
    ("BLOB", pa.binary(), S.BinaryType()),
    ("TINYBLOB", pa.binary(), S.BinaryType()),
    ("MEDIUMBLOB", pa.binary(), S.BinaryType()),
    ("LONGBLOB", pa.binary(), S.BinaryType()),
    ("ENUM('a','b')", pa.string(), S.StringType()),
    ("SET('x','y')", pa.string(), S.StringType()),
    ("JSON", pa.string(), S.StringType()),
    ("BIT(1)", pa.int64(), S.LongType()),
    ("BIT(63)", pa.int64(), S.LongType()),
    ("BIT(64)", pa.decimal128(20, 0), S.DecimalType(20, 0)),
]


@pytest.mark.parametrize(("sql", "arrow", "spark"), TYPE_MAPPING, ids=[m[0] for m in TYPE_MAPPING])
def test_every_tidb_type_maps_to_its_arrow_and_spark_type(sql: str, arrow: pa.DataType, spark: S.DataType) -> None:
    col = column("c", sql)
    assert arrow_type(col) == arrow
    assert spark_type(col) == spark
    # Spark reads the store's batches as they are: its own Arrow→Spark mapping agrees
    assert from_arrow_type(arrow) == spark


def test_type_mapping_covers_every_column_type_code() -> None:
    covered = {column("c", sql).tp for sql, _, _ in TYPE_MAPPING}
    column_types = set(T.TYPE_NAMES) - {T.TYPE_DECIMAL, T.TYPE_NULL, T.TYPE_NEWDATE, T.TYPE_VAR_STRING, T.TYPE_GEOMETRY}
    assert column_types <= covered
    # the codes TiDB no longer writes for new columns still map like their modern forms
    for tp, like in ((T.TYPE_NEWDATE, "DATE"), (T.TYPE_VAR_STRING, "VARCHAR(5)"), (T.TYPE_DECIMAL, "DECIMAL(10,2)")):
        modern = column("c", like)
        legacy = TableInfo.from_json(_one_column_table({**modern.to_json(), "type": {**modern.to_json()["type"], "Tp": tp}}))
        assert arrow_type(legacy.columns[0]) == arrow_type(modern)


def _one_column_table(col_json: dict[str, Any]) -> dict[str, Any]:
    return {"id": 1, "name": "t", "cols": [{**col_json, "id": 1, "offset": 0}], "pk_is_handle": False}


# ------------------------------------------------------------------ TiDB's JSON

TIDB_TABLE_JSON: dict[str, Any] = {
    "id": 112,
    "name": {"O": "Orders", "L": "orders"},
    "charset": "utf8mb4",
    "collate": "utf8mb4_bin",
    "cols": [
        {
            "id": 1, "name": {"O": "id", "L": "id"}, "offset": 0, "origin_default": None, "origin_default_bit": None,
            "default": None, "default_bit": None, "default_is_expr": False, "generated_expr_string": "",
            "generated_stored": False, "dependences": None,
            "type": {"Tp": 8, "Flag": 4131, "Flen": 20, "Decimal": 0, "Charset": "binary", "Collate": "binary",
                     "Elems": None, "ElemsIsBinaryLit": None, "Array": False},
            "state": 5, "comment": "", "hidden": False, "change_state_info": None, "version": 2,
        },
        {
            "id": 2, "name": {"O": "Price", "L": "price"}, "offset": 1, "origin_default": None, "origin_default_bit": None,
            "default": "0.00", "default_bit": None, "default_is_expr": False, "generated_expr_string": "",
            "generated_stored": False, "dependences": None,
            "type": {"Tp": 246, "Flag": 1, "Flen": 10, "Decimal": 2, "Charset": "binary", "Collate": "binary",
                     "Elems": None, "ElemsIsBinaryLit": None, "Array": False},
            "state": 5, "comment": "", "hidden": False, "change_state_info": None, "version": 2,
        },
        {
            "id": 4, "name": {"O": "status", "L": "status"}, "offset": 2, "origin_default": "new",
            "origin_default_bit": None, "default": "new", "default_bit": None, "default_is_expr": False,
            "generated_expr_string": "", "generated_stored": False, "dependences": None,
            "type": {"Tp": 247, "Flag": 0, "Flen": 4, "Decimal": 0, "Charset": "utf8mb4", "Collate": "utf8mb4_bin",
                     "Elems": ["new", "paid"], "ElemsIsBinaryLit": [False, False], "Array": False},
            "state": 5, "comment": "", "hidden": False, "change_state_info": None, "version": 2,
        },
        {  # being added by a running ALTER TABLE: not visible yet
            "id": 5, "name": {"O": "note", "L": "note"}, "offset": 3, "origin_default": "", "origin_default_bit": None,
            "default": "", "default_bit": None, "default_is_expr": False, "generated_expr_string": "",
            "generated_stored": False, "dependences": None,
            "type": {"Tp": 15, "Flag": 0, "Flen": 64, "Decimal": 0, "Charset": "utf8mb4", "Collate": "utf8mb4_bin",
                     "Elems": None, "ElemsIsBinaryLit": None, "Array": False},
            "state": 2, "comment": "", "hidden": False, "change_state_info": None, "version": 2,
        },
    ],
    "index_info": None,
    "constraint_info": None,
    "fk_info": None,
    "state": 5,
    "pk_is_handle": True,
    "is_common_handle": False,
    "common_handle_version": 0,
    "comment": "",
    "auto_inc_id": 0,
    "max_col_id": 5,
    "max_idx_id": 0,
    "update_timestamp": 443226547389448205,
    "ShardRowIDBits": 0,
    "partition": None,
    "version": 5,
    "tiflash_replica": None,
    "revision": 0,
}


def test_tidb_table_info_json_is_read_with_every_attribute() -> None:
    t = TableInfo.from_json(TIDB_TABLE_JSON, db="shop")
    assert (t.id, t.db, t.name, t.qualified_name) == (112, "shop", "Orders", "shop.Orders")
    assert t.pk_is_handle and not t.is_common_handle
    assert t.schema_version == 443226547389448205  # no schema_version: the update_timestamp
    assert t.column_names == ["id", "Price", "status"]  # the write-only column is not visible
    assert t.handle_column is not None and t.handle_column.name == "id"
    assert t.raw == TIDB_TABLE_JSON
    price = t.column("PRICE")
    assert (price.id, price.offset, price.tp, price.flen, price.decimal, price.default) == (2, 1, T.TYPE_NEWDECIMAL, 10, 2, "0.00")
    assert price.not_null and not price.unsigned and price.origin_default is None
    status = t.column("status")
    assert status.elems == ("new", "paid") and status.charset == "utf8mb4" and not status.is_binary_string
    assert t.column("id").unsigned and t.column("id").is_primary_key
    assert t.column_by_id(5).name == "note" and not t.column_by_id(5).is_public


def test_tidb_table_info_json_round_trips_unchanged() -> None:
    t = TableInfo.from_json(copy.deepcopy(TIDB_TABLE_JSON))
    assert t.to_json() == TIDB_TABLE_JSON
    assert TableInfo.from_json(t.to_json()) == t


def test_schema_version_wins_over_update_timestamp_and_names_may_be_plain_strings() -> None:
    d = {**copy.deepcopy(TIDB_TABLE_JSON), "schema_version": 7, "name": "orders"}
    for c in d["cols"]:
        c["name"] = c["name"]["O"]
    t = TableInfo.from_json(d)
    assert t.schema_version == 7 and t.name == "orders" and t.column("price").name == "Price"
    assert t.to_json()["name"] == {"O": "orders", "L": "orders"}


def test_unknown_columns_and_bad_json_are_named() -> None:
    t = TableInfo.from_json(TIDB_TABLE_JSON, db="shop")
    with pytest.raises(UnknownColumnError, match=r"table shop.Orders \(id 112, schema version \d+\) has no column 'note'; its columns are id, Price, status"):
        t.column("note")
    with pytest.raises(SchemaError, match="no type object"):
        TableInfo.from_json({"id": 1, "name": "t", "cols": [{"id": 1, "name": "a"}]})
    with pytest.raises(SchemaError, match="has no 'cols' list"):
        TableInfo.from_json({"id": 1, "name": "t"})


# ------------------------------------------------------------------ builder, keys, nullability


def test_builder_table_decides_the_handle_as_tidb_does() -> None:
    cols = [column("id", "BIGINT"), column("region", "VARCHAR(8)"), column("v", "INT")]
    int_pk = table(1, "a", cols, primary_key=["id"])
    assert int_pk.pk_is_handle and not int_pk.is_common_handle and int_pk.handle_column.name == "id"  # type: ignore[union-attr]
    assert int_pk.column("id").flag & (T.PRI_KEY_FLAG | T.NOT_NULL_FLAG) == T.PRI_KEY_FLAG | T.NOT_NULL_FLAG
    composite = table(2, "b", cols, primary_key=["region", "id"])
    assert composite.is_common_handle and not composite.pk_is_handle and composite.handle_column is None
    assert composite.primary_key == ("region", "id")
    assert TableInfo.from_json(composite.to_json()).primary_key == ("region", "id")  # via index_info
    nonclustered = table(3, "c", cols, primary_key=["id"], clustered=False)
    assert not nonclustered.pk_is_handle and not nonclustered.is_common_handle
    assert [c.id for c in int_pk.columns] == [1, 2, 3] and [c.offset for c in int_pk.columns] == [0, 1, 2]


def test_builder_round_trips_through_tidb_json() -> None:
    t = table(9, "all_types", [column(f"c{i}", sql) for i, (sql, _, _) in enumerate(TYPE_MAPPING)], db="d", schema_version=3)
    back = TableInfo.from_json(t.to_json(), db="d")
    assert back == t
    assert [arrow_type(c) for c in back.columns] == [m[1] for m in TYPE_MAPPING]


def test_builder_parses_type_details() -> None:
    e = column("e", "ENUM('it''s','b,c')")
    assert e.elems == ("it's", "b,c") and e.tp == T.TYPE_ENUM
    ts = column("ts", "timestamp(3)")
    assert (ts.tp, ts.decimal, ts.flen) == (T.TYPE_TIMESTAMP, 3, 23)
    u = column("u", "int", unsigned=True)
    assert u.unsigned and arrow_type(u) == pa.int64()
    assert column("b", "VARBINARY(3)").is_binary_string and column("b", "BLOB").is_binary_string
    assert not column("s", "TEXT").is_binary_string and not column("s", "CHAR(2)").is_binary_string


@pytest.mark.parametrize(
    ("sql", "message"),
    [("VARCHAR", "needs a length"), ("DECIMAL(70,2)", "precision <= 65"), ("GEOGRAPHY", "unsupported SQL type"),
     ("ENUM(a,b)", "cannot read the elements"), ("BIT(65)", "BIT width"), ("TEXT UNSIGNED", "UNSIGNED does not apply"),
     ("DATETIME(7)", "fractional seconds precision 7")],
)
def test_builder_rejects_bad_sql_types(sql: str, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        column("c", sql)


def test_nullability_follows_not_null() -> None:
    t = table(1, "t", [column("id", "INT"), column("a", "INT", not_null=True), column("b", "INT")], primary_key=["id"])
    schema = arrow_schema(t)
    assert [f.nullable for f in schema] == [False, False, True]
    assert [f.nullable for f in spark_schema(t).fields] == [False, False, True]


@pytest.mark.parametrize("sql", ["DATE", "DATETIME(6)", "TIMESTAMP"])
def test_dates_are_nullable_even_when_not_null_as_zero_dates_read_as_null(sql: str) -> None:
    """TiDB keeps 0000-00-00 (and 2020-00-10, 2021-02-30 under a relaxed sql_mode) in NOT NULL
    columns; both read paths give NULL for them, so the schemas must allow it."""
    t = table(1, "t", [column("id", "INT"), column("d", sql, not_null=True)], primary_key=["id"])
    assert [f.nullable for f in arrow_schema(t)] == [False, True]
    assert [f.nullable for f in spark_schema(t).fields] == [False, True]


# ------------------------------------------------------------------ hidden columns and column selection


def test_hidden_columns_are_added_only_on_request() -> None:
    t = table(1, "t", [column("id", "BIGINT"), column("v", "VARCHAR(4)")], primary_key=["id"])
    assert arrow_schema(t).names == ["id", "v"]
    schema = arrow_schema(t, columns=["v"], hidden=(ROWID, COMMIT_TS, DELMARK))
    assert schema.names == ["v", ROWID, COMMIT_TS, DELMARK]
    assert [schema.field(n).type for n in HIDDEN_COLUMNS] == [pa.int64(), pa.uint64(), pa.bool_()]
    assert not any(schema.field(n).nullable for n in HIDDEN_COLUMNS)
    assert arrow_schema(t, hidden=[COMMIT_TS], toward_spark=True).field(COMMIT_TS).type == pa.int64()
    spark = spark_schema(t, hidden=[ROWID, COMMIT_TS, DELMARK])
    assert [f.dataType for f in spark.fields[2:]] == [S.LongType(), S.LongType(), S.BooleanType()]


def test_common_handle_rowid_is_the_binary_key() -> None:
    t = table(1, "t", [column("k", "VARCHAR(8)"), column("v", "INT")], primary_key=["k"])
    assert arrow_schema(t, hidden=[ROWID]).field(ROWID).type == pa.binary()
    assert spark_schema(t, hidden=[ROWID])[ROWID].dataType == S.BinaryType()


def test_unknown_hidden_or_user_columns_are_errors() -> None:
    t = table(1, "t", [column("id", "INT")], primary_key=["id"])
    with pytest.raises(SchemaError, match="'_tidb_version' is not a hidden column"):
        arrow_schema(t, hidden=["_tidb_version"])
    with pytest.raises(UnknownColumnError, match="has no column 'x'"):
        spark_schema(t, columns=["x"])


# ------------------------------------------------------------------ origin defaults

ORIGIN_DEFAULTS = [
    ("INT", 7, 7),
    ("BIGINT UNSIGNED", "18446744073709551615", Decimal("18446744073709551615")),
    ("YEAR", "2024", 2024),
    ("DOUBLE", "1.5", 1.5),
    ("DECIMAL(10,2)", "3.1", Decimal("3.10")),
    ("DECIMAL(65,30)", "1", "1." + "0" * 30),
    ("DATE", dt.date(2024, 2, 29), dt.date(2024, 2, 29)),
    ("DATE", "0000-00-00", None),
    ("DATE", "2020-00-10", None),  # zero month, zero day, impossible day: NULL like 0000-00-00
    ("DATETIME(6)", "2020-01-00 10:00:00", None),
    ("TIMESTAMP", "2021-02-30 00:00:00", None),
    ("DECIMAL(65,30)", "0", "0." + "0" * 30),  # plain digits as TiDB prints them, not 0E-30
    ("DECIMAL(50,5)", "-1.5", "-1.50000"),
    ("DATETIME(6)", dt.datetime(2024, 1, 2, 3, 4, 5, 6), dt.datetime(2024, 1, 2, 3, 4, 5, 6)),
    ("TIMESTAMP", "2024-01-02 03:04:05", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)),
    ("TIME(3)", dt.timedelta(hours=-1, minutes=-30, microseconds=-500), dt.timedelta(hours=-1, minutes=-30, microseconds=-500)),
    ("VARCHAR(8)", "héllo", "héllo"),
    ("VARBINARY(8)", b"\x01\x02", b"\x01\x02"),
    ("ENUM('a','b')", "b", "b"),
    ("SET('a','b')", "a,b", "a,b"),
    ("BIT(8)", 5, 5),
    ("BIT(64)", 5, Decimal(5)),
]


@pytest.mark.parametrize(("sql", "default", "value"), ORIGIN_DEFAULTS, ids=[f"{m[0]}={m[1]!r}" for m in ORIGIN_DEFAULTS])
def test_origin_default_becomes_a_value_of_the_arrow_type(sql: str, default: Any, value: Any) -> None:
    col = column("c", sql, default=default)
    assert origin_default_value(col) == value
    assert pa.array([value], arrow_type(col))[0].as_py() == (
        value.replace(tzinfo=dt.timezone.utc) if isinstance(value, dt.datetime) and value.tzinfo else value
    )


def test_origin_default_is_not_the_current_default() -> None:
    added = column("c", "INT", default=5, origin_default=1)  # ADD COLUMN ... DEFAULT 1, later ALTER DEFAULT 5
    assert (added.default, added.origin_default, origin_default_value(added)) == ("5", "1", 1)
    assert origin_default_value(column("n", "INT")) is None  # DEFAULT NULL


def test_unreadable_origin_default_is_an_error() -> None:
    with pytest.raises(SchemaError, match="origin default 'abc' of column 'c' \\(INT\\) cannot be read"):
        origin_default_value(column("c", "INT", default="abc"))
    with pytest.raises(SchemaError, match="origin default '2020-13-01' of column 'd'"):
        origin_default_value(column("d", "DATE", default="2020-13-01"))


# ------------------------------------------------------------------ versions


def _versions() -> tuple[TableInfo, TableInfo, TableInfo]:
    v1 = table(5, "t", [column("id", "BIGINT"), column("a", "INT"), column("b", "VARCHAR(4)")], primary_key=["id"], schema_version=10)
    j2 = v1.to_json()  # ALTER TABLE t ADD COLUMN c DOUBLE DEFAULT 0.5
    c = column("c", "DOUBLE", default=0.5).to_json()
    j2["cols"].append({**c, "id": 4, "offset": 3})
    j2["schema_version"] = 12
    v2 = TableInfo.from_json(j2)
    j3 = copy.deepcopy(j2)  # ALTER TABLE t DROP COLUMN a; ALTER TABLE t MODIFY b VARCHAR(10)
    j3["cols"] = [c for c in j3["cols"] if c["name"]["L"] != "a"]
    for i, c in enumerate(j3["cols"]):
        c["offset"] = i
        if c["name"]["L"] == "b":
            c["type"]["Flen"] = 10
    j3["schema_version"] = 15
    return v1, v2, TableInfo.from_json(j3)


def test_schema_history_keeps_versions_side_by_side() -> None:
    v1, v2, v3 = _versions()
    history = SchemaHistory([v3, v1])
    assert history.add(v2) is True and history.add(v2) is False  # idempotent
    assert history.versions == [10, 12, 15] and history.latest is v3 and history.table_id == 5
    assert history.version_at(10) is v1 and history.version_at(11) is v1 and history.version_at(14) is v2
    assert history.version_at(10**6) is v3
    with pytest.raises(SchemaError, match="has no schema at version 9: known versions start at 10"):
        history.version_at(9)


def test_schema_history_reports_added_dropped_and_changed_columns() -> None:
    v1, v2, v3 = _versions()
    history = SchemaHistory([v1, v2, v3])
    added = history.changes(10, 12)
    assert [c.name for c in added.added] == ["c"] and not added.dropped and not added.changed
    later = history.changes(12, 15)
    assert [c.name for c in later.dropped] == ["a"] and not later.added
    assert [(before.flen, after.flen) for before, after in later.changed] == [(4, 10)]
    assert history.changes(15, 15).is_empty


def test_schema_history_refuses_other_tables_and_rewritten_versions() -> None:
    v1, v2, _ = _versions()
    history = SchemaHistory([v1])
    other = table(6, "u", [column("id", "INT")], primary_key=["id"], schema_version=11)
    with pytest.raises(SchemaError, match="cannot take table u \\(id 6\\)"):
        history.add(other)
    rewritten = TableInfo.from_json({**v2.to_json(), "schema_version": 10})
    with pytest.raises(SchemaError, match="schema version 10 is already known with different columns"):
        history.add(rewritten)
