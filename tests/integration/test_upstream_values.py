"""Values as TiDB's strict SQL mode takes them, through both the row path (Txn.insert and
update) and bulk_insert: the same errors (typed, naming table, column and row) and the same
stored values, checked by reading them back."""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Iterator

import pyarrow as pa
import pytest

from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream_client.errors import (
    BadNullError,
    DataTooLongError,
    IncorrectValueError,
    InvalidValueError,
    NoDefaultValueError,
    OutOfRangeValueError,
)
from pyspark_theflash.upstream.tidb import make_column

INT_TYPES = {
    "TINYINT": (-(1 << 7), (1 << 7) - 1), "TINYINT UNSIGNED": (0, (1 << 8) - 1),
    "SMALLINT": (-(1 << 15), (1 << 15) - 1), "SMALLINT UNSIGNED": (0, (1 << 16) - 1),
    "MEDIUMINT": (-(1 << 23), (1 << 23) - 1), "MEDIUMINT UNSIGNED": (0, (1 << 24) - 1),
    "INT": (-(1 << 31), (1 << 31) - 1), "INT UNSIGNED": (0, (1 << 32) - 1),
    "BIGINT": (-(1 << 63), (1 << 63) - 1), "BIGINT UNSIGNED": (0, (1 << 64) - 1),
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MiniCluster]:
    c = MiniCluster(tmp_path_factory.mktemp("values") / "data", resolved_ts_interval=0)
    yield c
    c.close()


_tables = iter(range(10_000))


def new_table(cluster: MiniCluster, sql_type: str, **options: Any) -> str:
    name = f"v.t{next(_tables)}"
    cluster.create_table(name, [make_column("id", "INT"), make_column("v", sql_type, **options)], primary_key=["id"])
    return name


def insert_row(cluster: MiniCluster, table: str, value: Any, row_id: int = 1) -> None:
    with cluster.txn() as t:
        t.insert(table, {"id": row_id, "v": value})


def insert_bulk(cluster: MiniCluster, table: str, value: Any, row_id: int = 1) -> None:
    """``value`` at row index 2 of a three-row batch (the others valid NULLs); integers beyond
    int64 as decimal128(38, 0), which Arrow holds them in."""
    if isinstance(value, pa.Array):
        column = value
    elif isinstance(value, int) and not -(1 << 63) <= value < 1 << 63:
        column = pa.array([None, None, Decimal(value)], pa.decimal128(38, 0))
    else:
        column = pa.array([None, None, value])
    cluster.bulk_insert(table, pa.table({"id": [row_id + 100, row_id + 200, row_id], "v": column}))


PATHS: dict[str, Callable[..., None]] = {"txn": insert_row, "bulk": insert_bulk}


def stored_value(cluster: MiniCluster, table: str, row_id: int = 1) -> Any:
    row = cluster.get_row(table, row_id)
    assert row is not None
    return row["v"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("sql_type", INT_TYPES)
def test_integers_outside_their_type_are_out_of_range(cluster: MiniCluster, sql_type: str, path: str) -> None:
    lo, hi = INT_TYPES[sql_type]
    table = new_table(cluster, sql_type)
    for i, bad in enumerate((lo - 1, hi + 1)):
        with pytest.raises(OutOfRangeValueError) as err:
            PATHS[path](cluster, table, bad, row_id=10 + i)
        assert (err.value.table, err.value.column, err.value.value) == (table, "v", bad)
        assert err.value.row == (2 if path == "bulk" else 0)
        assert err.value.code == 1264 and f"column 'v' of {table}" in str(err.value)
    for i, good in enumerate((lo, hi)):
        PATHS[path](cluster, table, good, row_id=20 + i)
        assert stored_value(cluster, table, 20 + i) == good
    assert cluster.get_row(table, 10) is None and cluster.get_row(table, 11) is None


@pytest.mark.parametrize("path", PATHS)
def test_int_refuses_2_to_the_40(cluster: MiniCluster, path: str) -> None:
    table = new_table(cluster, "INT")
    with pytest.raises(OutOfRangeValueError):
        PATHS[path](cluster, table, 2**40)
    with pytest.raises(OutOfRangeValueError):  # an update too
        insert_row(cluster, table, 5)
        with cluster.txn() as t:
            t.update(table, {"id": 1, "v": 2**40})
    assert stored_value(cluster, table) == 5


@pytest.mark.parametrize("path", PATHS)
def test_varchar_and_char_lengths_count_characters_and_char_drops_trailing_spaces(cluster: MiniCluster, path: str) -> None:
    insert = PATHS[path]
    varchar = new_table(cluster, "VARCHAR(3)")
    with pytest.raises(DataTooLongError) as err:
        insert(cluster, varchar, "abcdef")
    assert (err.value.column, err.value.code) == ("v", 1406) and "VARCHAR(3) holds 3" in str(err.value)
    insert(cluster, varchar, "äöü", row_id=1)  # 3 characters, 6 bytes
    insert(cluster, varchar, "ab     ", row_id=2)  # only spaces beyond the length: cut
    insert(cluster, varchar, "a ", row_id=3)  # VARCHAR keeps trailing spaces within its length
    assert [stored_value(cluster, varchar, i) for i in (1, 2, 3)] == ["äöü", "ab ", "a "]

    char = new_table(cluster, "CHAR(4)")
    with pytest.raises(DataTooLongError):
        insert(cluster, char, "abcde")
    insert(cluster, char, "ab  ", row_id=1)
    insert(cluster, char, " x      ", row_id=2)
    assert [stored_value(cluster, char, i) for i in (1, 2)] == ["ab", " x"]

    binary = new_table(cluster, "BINARY(4)")
    with pytest.raises(DataTooLongError):
        insert(cluster, binary, b"abcde")
    insert(cluster, binary, b"ab", row_id=1)
    assert stored_value(cluster, binary) == b"ab\x00\x00"  # BINARY(n) pads with zero bytes

    blob = new_table(cluster, "TINYBLOB")
    with pytest.raises(DataTooLongError):
        insert(cluster, blob, b"x" * 256)


@pytest.mark.parametrize("path", PATHS)
def test_decimals_round_half_away_from_zero_and_refuse_more_integer_digits(cluster: MiniCluster, path: str) -> None:
    insert = PATHS[path]
    table = new_table(cluster, "DECIMAL(5,2)")
    for i, value in enumerate((Decimal("1000.00"), Decimal("999.995"), Decimal("-999.995"))):
        with pytest.raises(OutOfRangeValueError) as err:
            insert(cluster, table, pa.array([None, None, value], pa.decimal128(7, 3)) if path == "bulk" else value,
                   row_id=10 + i)
        assert "DECIMAL(5,2) holds at most 3 integer digit(s)" in str(err.value)
    for i, (value, want) in enumerate(((Decimal("999.994"), "999.99"), (Decimal("-0.005"), "-0.01"),
                                       (Decimal("12.345"), "12.35"))):
        insert(cluster, table, pa.array([None, None, value], pa.decimal128(7, 3)) if path == "bulk" else value,
               row_id=20 + i)
        assert stored_value(cluster, table, 20 + i) == Decimal(want)


@pytest.mark.parametrize("path", PATHS)
def test_not_null_year_bit_float_enum_and_timestamp_limits(cluster: MiniCluster, path: str) -> None:
    insert = PATHS[path]
    cases: list[tuple[str, dict[str, Any], Any, type[InvalidValueError]]] = [
        ("YEAR", {}, 2156, OutOfRangeValueError),
        ("BIT(4)", {}, 16, DataTooLongError),
        ("FLOAT", {}, 1e39, OutOfRangeValueError),
        ("DOUBLE", {}, float("nan"), OutOfRangeValueError),
        ("ENUM('a','b')", {}, "c", IncorrectValueError),
    ]
    for sql_type, options, bad, error in cases:
        table = new_table(cluster, sql_type, **options)
        with pytest.raises(error):
            insert(cluster, table, bad)
    import datetime as dt
    table = new_table(cluster, "TIMESTAMP")
    with pytest.raises(IncorrectValueError):
        insert(cluster, table, dt.datetime(2040, 1, 1, tzinfo=dt.timezone.utc))
    year = new_table(cluster, "YEAR")
    insert(cluster, year, 69, row_id=1)  # two-digit years widen as MySQL's do
    insert(cluster, year, 70, row_id=2)
    assert [stored_value(cluster, year, i) for i in (1, 2)] == [2069, 1970]
    not_null = new_table(cluster, "INT", not_null=True)
    if path == "bulk":
        with pytest.raises(BadNullError) as err:
            cluster.bulk_insert(not_null, pa.table({"id": [1, 2], "v": [5, None]}))
        assert err.value.row == 1
    else:
        with pytest.raises(BadNullError):
            insert(cluster, not_null, None)


@pytest.mark.parametrize("path", PATHS)
def test_left_out_columns_take_the_default_and_a_not_null_one_without_default_is_an_error(
        cluster: MiniCluster, path: str) -> None:
    table = "v.defaults_" + path
    cluster.create_table(table, [
        make_column("id", "INT"), make_column("must", "INT", not_null=True),
        make_column("d", "VARCHAR(8)", default="dflt"), make_column("n", "INT"),
    ], primary_key=["id"])
    with pytest.raises(NoDefaultValueError) as err:
        if path == "bulk":
            cluster.bulk_insert(table, pa.table({"id": [1]}))
        else:
            with cluster.txn() as t:
                t.insert(table, {"id": 1})
    assert err.value.column == "must" and err.value.code == 1364
    if path == "bulk":
        cluster.bulk_insert(table, pa.table({"id": [1], "must": [7]}))
    else:
        with cluster.txn() as t:
            t.insert(table, {"id": 1, "must": 7})
    assert cluster.get_row(table, 1) == {"id": 1, "must": 7, "d": "dflt", "n": None}


def test_the_row_paths_datums_are_the_codecs_for_checked_values() -> None:
    """values.datum builds the common types' datums itself: they equal datum_for_column's."""
    import random

    from pyspark_theflash.codec.row_v2 import datum_for_column
    from pyspark_theflash.schema import column
    from pyspark_theflash.upstream.values import check_value, datum

    rng = random.Random(4)
    samples: dict[str, Callable[[], Any]] = {
        "TINYINT": lambda: rng.randint(-128, 127), "BIGINT UNSIGNED": lambda: rng.randint(0, 2**64 - 1),
        "YEAR": lambda: rng.choice([0, 1901, 2155, 69]), "FLOAT": lambda: rng.uniform(-1e6, 1e6),
        "DOUBLE": lambda: rng.uniform(-1e300, 1e300), "DECIMAL(12,3)": lambda: Decimal(rng.randrange(-10**12, 10**12)) / 1000,
        "DECIMAL(30,10)": lambda: str(Decimal(rng.randrange(-10**25, 10**25)) / 10**11),
        "CHAR(5)": lambda: rng.choice(["ab  ", "äöü", ""]), "VARBINARY(9)": lambda: rng.randbytes(rng.randrange(10)),
        "BINARY(4)": lambda: rng.randbytes(rng.randrange(5)), "TEXT": lambda: "t" * rng.randrange(100),
    }
    for sql_type, sample in samples.items():
        col = column("v", sql_type)
        for _ in range(50):
            value = sample()
            assert datum("d.t", col, value, 0) == datum_for_column(col, check_value("d.t", col, value, 0)), (sql_type, value)
