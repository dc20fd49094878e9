"""The vectorised decode_rows_to_arrow equals the per-row decode_row (converted to Arrow by
record_batch_from_rows) value by value, for random tables and rows mixing v2 small/large
layouts, checksum suffixes, v1 rows, NULLs and absent columns; plus its errors."""
from __future__ import annotations

import datetime as dt
from decimal import Context, Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyspark_theflash.codec.batch import (
    BatchDecodeError,
    BatchValueOutOfRangeError,
    decode_rows_to_arrow,
    record_batch_from_rows,
)
from pyspark_theflash.codec.datum import Datum
from pyspark_theflash.codec.decimal import DecimalValue
from pyspark_theflash.codec.errors import ColumnValueOutOfRangeError
from pyspark_theflash.codec.row import decode_row
from pyspark_theflash.codec.row_v1 import encode_row_v1
from pyspark_theflash.codec.row_v2 import FLAG_CHECKSUM, datum_for_column, encode_row_for_table, encode_row_v2
from pyspark_theflash.codec.time import pack_time_fields
from pyspark_theflash.schema import TableInfo, arrow_schema, column, row_columns, table

UTC = dt.timezone.utc
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | text, lambda c: st.lists(c, max_size=3) | st.dictionaries(text, c, max_size=3), max_leaves=6)

# SQL type -> (value strategy, whether the builder can carry a default of it)
COLUMN_KINDS: dict[str, tuple[st.SearchStrategy[Any], bool]] = {
    "TINYINT": (st.integers(-128, 127), True),
    "SMALLINT UNSIGNED": (st.integers(0, 65535), True),
    "INT": (st.integers(-(2**31), 2**31 - 1), True),
    "BIGINT": (st.integers(-(2**63), 2**63 - 1), True),
    "BIGINT UNSIGNED": (st.integers(0, 2**64 - 1), True),
    "YEAR": (st.integers(1901, 2155), True),
    "FLOAT": (st.floats(width=32, allow_nan=False, allow_infinity=False), True),
    "DOUBLE": (st.floats(allow_nan=False, allow_infinity=False), True),
    "DECIMAL(12,2)": (st.decimals(-(10**10) + 1, 10**10 - 1, places=2), True),
    "DECIMAL(18,0)": (st.decimals(-(10**18) + 1, 10**18 - 1, places=0), True),
    "DECIMAL(30,5)": (st.decimals(-(10**25) + 1, 10**25 - 1, places=5), True),
    "DECIMAL(38,10)": (st.decimals(-(10**28) + 1, 10**28 - 1, places=10), True),
    "DECIMAL(45,3)": (st.decimals(-(10**42) + 1, 10**42 - 1, places=3), True),
    "DATE": (st.dates(), True),
    "DATETIME(6)": (st.datetimes(), True),
    "TIMESTAMP(6)": (st.datetimes(dt.datetime(1970, 1, 2), dt.datetime(2038, 1, 1), timezones=st.just(UTC)), True),
    "TIME(6)": (st.timedeltas(-dt.timedelta(hours=838), dt.timedelta(hours=838)), True),
    "VARCHAR(20)": (text, True),
    "VARBINARY(20)": (st.binary(max_size=12), False),
    "ENUM('a','b','c')": (st.sampled_from(["a", "b", "c"]), True),
    "SET('x','y','z')": (st.sampled_from(["", "x", "y,z", "x,y,z"]), True),
    "BIT(10)": (st.integers(0, 1023), True),
    "BIT(64)": (st.integers(0, 2**64 - 1), False),
    # a top-level str would be JSON text to encode_row_for_table, so documents are arrays/objects
    "JSON": (st.lists(json_values, max_size=3) | st.dictionaries(text, json_values, max_size=3), False),
}
FORMATS = ("v2", "v2_checksum", "v2_large", "v1")


@st.composite
def tables(draw: st.DrawFn) -> tuple[TableInfo, dict[str, str]]:
    """A random table and the SQL type of each non-handle column."""
    kinds = draw(st.lists(st.sampled_from(sorted(COLUMN_KINDS)), min_size=1, max_size=7))
    cols = [column("id", "BIGINT", primary_key=True)] if draw(st.booleans()) else []
    for i, sql in enumerate(kinds):
        values, can_default = COLUMN_KINDS[sql]
        default = draw(st.none() | values) if can_default else None
        cols.append(column(f"c{i}", sql, default=default))
    return table(50, "random", cols), {f"c{i}": sql for i, sql in enumerate(kinds)}


@st.composite
def table_and_rows(draw: st.DrawFn) -> tuple[TableInfo, list[bytes], list[int]]:
    t, kinds = draw(tables())
    values, handles = [], []
    for h in range(draw(st.integers(1, 12))):
        cols: list[tuple[int, Datum]] = []
        for c in t.columns:
            if c.name not in kinds:  # the handle column lives in the key
                continue
            how = draw(st.sampled_from(["value", "value", "null", "absent"]))
            if how == "absent":
                continue
            v = None if how == "null" else draw(COLUMN_KINDS[kinds[c.name]][0])
            cols.append((c.id, datum_for_column(c, v)))
        fmt = draw(st.sampled_from(FORMATS))
        if fmt == "v1":
            data = encode_row_v1(cols)
        elif fmt == "v2_large":  # a dropped column with a big id forces the large layout
            data = encode_row_v2(cols + [(300, Datum("int", 1))])
        else:
            data = encode_row_v2(cols)
            if fmt == "v2_checksum":
                data = bytes([data[0], data[1] | FLAG_CHECKSUM]) + data[2:] + b"\x01" + b"\x12\x34\x56\x78"
        values.append(data)
        handles.append(h * 1000 - 5)
    return t, values, handles


def per_row(values: list[bytes], handles: list[int], t: TableInfo, columns: list[str] | None = None) -> pa.RecordBatch:
    return record_batch_from_rows([decode_row(v, row_columns(t), h) for v, h in zip(values, handles)], row_columns(t, columns))


def assert_same(got: pa.RecordBatch, want: pa.RecordBatch) -> None:
    assert got.schema == want.schema
    for name in want.schema.names:
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
        assert got.column(name).equals(want.column(name)), name


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(table_and_rows())
def test_vectorised_equals_per_row_for_random_tables(case: tuple[TableInfo, list[bytes], list[int]]) -> None:
    t, values, handles = case
    assert_same(decode_rows_to_arrow(values, handles, row_columns(t)), per_row(values, handles, t))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(table_and_rows(), st.randoms())
def test_selected_columns_in_any_order(case: tuple[TableInfo, list[bytes], list[int]], rnd: Any) -> None:
    t, values, handles = case
    names = list(t.column_names)
    rnd.shuffle(names)
    chosen = names[: rnd.randint(1, len(names))]
    got = decode_rows_to_arrow(values, np.array(handles), row_columns(t, chosen))
    assert got.schema == arrow_schema(t, chosen)
    assert_same(got, per_row(values, handles, t, chosen))


def test_empty_input_gives_an_empty_batch_of_the_schema() -> None:
    t = table(1, "e", [column("id", "BIGINT", primary_key=True), column("v", "VARCHAR(3)")])
    got = decode_rows_to_arrow([], [], row_columns(t))
    assert got.num_rows == 0 and got.schema == arrow_schema(t)
    assert decode_rows_to_arrow([], None, row_columns(t, ["v"])).schema == arrow_schema(t, ["v"])


def test_arrow_types_and_values_of_a_mixed_table() -> None:
    t = table(2, "m", [column("id", "BIGINT UNSIGNED", primary_key=True), column("d", "DATETIME(6)"),
                       column("ts", "TIMESTAMP"), column("day", "DATE"), column("tm", "TIME"),
                       column("m", "DECIMAL(12,2)"), column("e", "ENUM('new','done')"), column("n", "INT", default=4)])
    when = dt.datetime(2024, 2, 29, 23, 59, 59, 999999)
    values = [encode_row_for_table(row_columns(t), {"d": when, "ts": when.replace(tzinfo=UTC), "day": when.date(),
                                       "tm": dt.timedelta(seconds=-1, microseconds=1), "m": Decimal("-0.05"),
                                       "e": "done", "n": 1}),
              encode_row_v2([])]
    got = decode_rows_to_arrow(values, np.array([-1, 5]), row_columns(t))
    assert got.schema.field("id").type == pa.decimal128(20, 0)
    assert got.to_pylist() == [
        {"id": Decimal(2**64 - 1), "d": when, "ts": when.replace(tzinfo=UTC), "day": when.date(),
         "tm": dt.timedelta(microseconds=-999999), "m": Decimal("-0.05"), "e": "done", "n": 1},
        {"id": Decimal(5), "d": None, "ts": None, "day": None, "tm": None, "m": None, "e": None, "n": 4},
    ]


def test_zero_and_impossible_dates_are_null_in_both_paths() -> None:
    t = table(3, "z", [column("d", "DATETIME"), column("day", "DATE")])
    values = [encode_row_v2([(1, Datum("datetime", 0)), (2, Datum("datetime", pack_time_fields(2021, 2, 29)))]),
              encode_row_v2([(1, Datum("datetime", pack_time_fields(2020, 0, 1))), (2, Datum("datetime", 0))]),
              encode_row_v2([(1, Datum("datetime", pack_time_fields(2000, 2, 29, 1))),
                             (2, Datum("datetime", pack_time_fields(1, 1, 1)))])]
    got = decode_rows_to_arrow(values, None, row_columns(t))
    assert got.to_pylist() == [{"d": None, "day": None}, {"d": None, "day": None},
                               {"d": dt.datetime(2000, 2, 29, 1), "day": dt.date(1, 1, 1)}]
    assert_same(got, per_row(values, [0, 0, 0], t))


def test_decimal_stored_with_another_precision_takes_the_per_value_path() -> None:
    t = table(4, "d", [column("m", "DECIMAL(10,2)")])
    natural = encode_row_v2([(1, Datum("decimal", Decimal("1.5")))])  # precision 2, frac 1
    exact = encode_row_for_table(row_columns(t), {"m": Decimal("-7.25")})
    got = decode_rows_to_arrow([natural, exact], None, row_columns(t))
    assert got.column("m").to_pylist() == [Decimal("1.50"), Decimal("-7.25")]


def test_invalid_utf8_in_text_is_replaced_like_decode_row() -> None:
    t = table(5, "s", [column("s", "VARCHAR(10)")])
    values = [encode_row_v2([(1, Datum("bytes", b"ok"))]), encode_row_v2([(1, Datum("bytes", b"a\xffb"))])]
    got = decode_rows_to_arrow(values, None, row_columns(t))
    assert got.column("s").to_pylist() == ["ok", "a\ufffdb"]
    # rows of one length share one header: the strided path replaces alike
    values = [encode_row_v2([(1, Datum("bytes", b"ok!"))]), encode_row_v2([(1, Datum("bytes", b"a\xffb"))])]
    got = decode_rows_to_arrow(values, None, row_columns(t))
    assert got.column("s").to_pylist() == ["ok!", "a\ufffdb"]


def test_bad_row_error_names_the_row_index() -> None:
    t = table(6, "b", [column("a", "INT"), column("s", "VARCHAR(4)")])
    good = encode_row_for_table(row_columns(t), {"a": 1, "s": "x"})
    truncated = good[:-1]
    with pytest.raises(BatchDecodeError, match=r"row 2 of 3"):
        decode_rows_to_arrow([good, good, truncated], None, row_columns(t))
    bad_flag = bytes([0x80, 0x40]) + good[2:]
    with pytest.raises(BatchDecodeError, match=r"row 1 of 2.*0x40"):
        decode_rows_to_arrow([good, bad_flag], None, row_columns(t))
    bad_width = b"\x80\x00\x01\x00\x00\x00\x01\x03\x00abc"
    with pytest.raises(BatchDecodeError, match=r"row 1: column a \(id 1, INT\) has a 3-byte integer"):
        decode_rows_to_arrow([good, bad_width], None, row_columns(t))


def test_handles_are_required_for_a_pk_is_handle_table() -> None:
    t = table(7, "h", [column("id", "INT", primary_key=True), column("v", "INT")])
    row = encode_row_for_table(row_columns(t), {"id": 1, "v": 2})
    with pytest.raises(BatchDecodeError, match="handles"):
        decode_rows_to_arrow([row], None, row_columns(t))
    with pytest.raises(BatchDecodeError, match="1 handle"):
        decode_rows_to_arrow([row, row], [1], row_columns(t))
    assert decode_rows_to_arrow([row], [9], row_columns(t)).to_pylist() == [{"id": 9, "v": 2}]


def test_no_columns_gives_one_empty_row_per_value() -> None:
    t = table(8, "c", [column("a", "INT")])
    row = encode_row_for_table(row_columns(t), {"a": 1})
    got = decode_rows_to_arrow([row, row, row], None, row_columns(t, []))
    assert got.num_rows == 3 and got.num_columns == 0


@pytest.mark.parametrize("sql", ["DECIMAL(38,0)", "DECIMAL(38,5)", "DECIMAL(20,0)", "DECIMAL(19,19)"])
def test_wide_decimals_across_the_64_bit_boundary(sql: str) -> None:
    t = table(9, "w", [column("m", sql)])
    scale = t.column("m").decimal
    digits = t.column("m").flen
    unscaled = [0, 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**64 + 5, 2**65 + 3, 10**digits - 1]
    unscaled = [u for u in unscaled if u < 10**digits]
    values = [Decimal(sign * u).scaleb(-scale, Context(prec=100)) for u in unscaled for sign in (1, -1)]
    rows = [encode_row_for_table(row_columns(t), {"m": v}) for v in values]
    got = decode_rows_to_arrow(rows, None, row_columns(t))
    assert got.column("m").to_pylist() == values
    assert_same(got, per_row(rows, [0] * len(rows), t))


def test_a_pyarrow_binary_array_of_values_is_read_in_place() -> None:
    t = table(10, "p", [column("id", "BIGINT", primary_key=True), column("s", "VARCHAR(8)"), column("n", "INT")])
    rows = [encode_row_for_table(row_columns(t), {"s": f"v{i}", "n": i}) for i in range(6)]
    rows[3] = encode_row_v1([(2, Datum("bytes", b"old")), (3, Datum("int", -3))])  # v1 goes per row
    handles = np.arange(6, dtype=np.int64)
    want = per_row(rows, list(range(6)), t)
    for arr in (pa.array(rows, pa.binary()), pa.array(rows, pa.large_binary()),
                pa.chunked_array([rows[:2], rows[2:]], pa.binary())):
        assert_same(decode_rows_to_arrow(arr, handles, row_columns(t)), want)
    sliced = pa.array(rows, pa.binary()).slice(2, 3)
    assert_same(decode_rows_to_arrow(sliced, handles[2:5], row_columns(t)), per_row(rows[2:5], [2, 3, 4], t))
    with pytest.raises(BatchDecodeError, match="row 1 of 2 has a NULL"):
        decode_rows_to_arrow(pa.array([rows[0], None], pa.binary()), handles[:2], row_columns(t))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(table_and_rows(), st.randoms())
def test_selected_rows_decode_as_the_taken_values(case: tuple[TableInfo, list[bytes], list[int]], rnd: Any) -> None:
    """``rows=`` picks values by position (any order, repeats allowed) without copying them."""
    t, values, handles = case
    picked = [rnd.randrange(len(values)) for _ in range(rnd.randint(0, 2 * len(values)))] if values else []
    got = decode_rows_to_arrow(pa.array(values, pa.binary()), np.array([handles[i] for i in picked], np.int64), row_columns(t),
                               rows=np.array(picked, dtype=np.int64))
    assert_same(got, per_row([values[i] for i in picked], [handles[i] for i in picked], t))


def test_fixed_width_and_mixed_width_strings_decode_alike() -> None:
    t = table(11, "w", [column("id", "BIGINT", primary_key=True), column("s", "VARCHAR(8)")])
    same = [encode_row_for_table(row_columns(t), {"s": f"ab{i}"}) for i in range(5)]            # all 3 bytes wide
    mixed = same + [encode_row_for_table(row_columns(t), {"s": "longer"}), encode_row_for_table(row_columns(t), {"s": None})]
    for rows in (same, mixed):
        handles = list(range(len(rows)))
        assert_same(decode_rows_to_arrow(rows, handles, row_columns(t)), per_row(rows, handles, t))


# Rows that all share one layout (the common case: one writer, one schema version) take the
# fast paths: one header shape, one column-id block for every row, one value width per column,
# and, when every row has the same length, strided views instead of gathers.
FIXED_WIDTH_KINDS: dict[str, st.SearchStrategy[Any]] = {
    "BIGINT": st.integers(2**31, 2**63 - 1) | st.integers(-(2**63), -(2**31) - 1),  # 8 bytes
    "BIGINT UNSIGNED": st.integers(2**32, 2**64 - 1),
    "DOUBLE": st.floats(allow_nan=False, allow_infinity=False),
    "FLOAT": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "DECIMAL(12,2)": st.decimals(-(10**10) + 1, 10**10 - 1, places=2),
    "DATETIME(6)": st.datetimes(),
    "VARCHAR(20)": st.text(alphabet="abcxyz", min_size=6, max_size=6),
    "VARCHAR(1)": st.text(alphabet="ab", min_size=1, max_size=1),  # 1-byte values: a strided 1-D view
    "VARCHAR(3)": st.text(alphabet="éü", min_size=3, max_size=3),  # 6 bytes each, not ASCII
    "INT": st.integers(-(2**31), -(2**15) - 1),  # 4 bytes
    "SMALLINT": st.integers(-(2**15), -129),  # 2 bytes
    "DATE": st.dates(),
}


@st.composite
def one_layout_rows(draw: st.DrawFn, fixed_width: bool) -> tuple[TableInfo, list[bytes], list[int]]:
    """Rows of one random table that all carry the same columns as values, NULLs and absent
    (with origin defaults), in one format; with ``fixed_width`` every value has one width."""
    kinds_of = FIXED_WIDTH_KINDS if fixed_width else {k: v for k, (v, _) in COLUMN_KINDS.items()}
    kinds = draw(st.lists(st.sampled_from(sorted(kinds_of)), min_size=1, max_size=6))
    cols = [column("id", "BIGINT", primary_key=True)] if draw(st.booleans()) else []
    for i, sql in enumerate(kinds):
        can_default = sql in FIXED_WIDTH_KINDS or COLUMN_KINDS[sql][1]
        cols.append(column(f"c{i}", sql, default=draw(st.none() | kinds_of[sql]) if can_default else None))
    t = table(51, "one_layout", cols)
    how = {f"c{i}": draw(st.sampled_from(["value", "value", "null", "absent"])) for i in range(len(kinds))}
    fmt = draw(st.sampled_from(("v2", "v2", "v2_checksum", "v2_large")))
    values, handles = [], []
    for h in range(draw(st.integers(1, 30))):
        row: list[tuple[int, Datum]] = []
        for c in t.columns:
            if c.name in how and how[c.name] != "absent":
                v = None if how[c.name] == "null" else draw(kinds_of[kinds[int(c.name[1:])]])
                row.append((c.id, datum_for_column(c, v)))
        if fmt == "v2_large":
            data = encode_row_v2(row + [(300, Datum("int", 1))])
        else:
            data = encode_row_v2(row)
            if fmt == "v2_checksum":
                data = bytes([data[0], data[1] | FLAG_CHECKSUM]) + data[2:] + b"\x01" + b"\x12\x34\x56\x78"
        values.append(data)
        handles.append(h * 7 - 3)
    return t, values, handles


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.booleans().flatmap(one_layout_rows))
def test_rows_sharing_one_layout_decode_as_per_row(case: tuple[TableInfo, list[bytes], list[int]]) -> None:
    t, values, handles = case
    want = per_row(values, handles, t)
    assert_same(decode_rows_to_arrow(values, handles, row_columns(t)), want)
    assert_same(decode_rows_to_arrow(pa.array(values, pa.binary()), handles, row_columns(t)), want)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(one_layout_rows(fixed_width=True), st.randoms())
def test_selected_rows_of_one_length_decode_as_per_row(case: tuple[TableInfo, list[bytes], list[int]],
                                                       rnd: Any) -> None:
    """Values of one length between empty ones (deleted rows), selected in order, every other
    one, or shuffled: in-order selections are strided views over the values, others gathers."""
    t, values, handles = case
    assert len(set(map(len, values))) == 1
    interleaved: list[bytes] = []
    at = []
    for v in values:
        interleaved.extend([b""] * rnd.randint(0, 2))
        at.append(len(interleaved))
        interleaved.append(v)
    arr = pa.array(interleaved, pa.binary())
    for picked in (list(range(len(values))), list(range(0, len(values), 2)), list(range(len(values)))[::-1],
                   rnd.sample(range(len(values)), len(values))):
        got = decode_rows_to_arrow(arr, np.array([handles[i] for i in picked], np.int64), row_columns(t),
                                   rows=np.array([at[i] for i in picked], np.int64))
        assert_same(got, per_row([values[i] for i in picked], [handles[i] for i in picked], t))


# --- values their column's type cannot hold --------------------------------------------------
# A row written under another schema (a column widened in place) may hold a value its column's
# Arrow type cannot: both decoders must say so, naming table, row, handle, column and value,
# never store it wrapped (2**40 in an INT used to come out of the vectorised path as 0).

F32_MAX = 3.4028234663852886e38


def _ints_outside(lo: int, hi: int, kind: str, within: tuple[int, int]) -> st.SearchStrategy[tuple[Datum, Any]]:
    outside = st.integers(within[0], lo - 1) if within[0] < lo else st.nothing()
    values = outside | st.integers(hi + 1, within[1]) | st.sampled_from(
        [v for v in (lo - 1, hi + 1) if within[0] <= v <= within[1]])
    return values.map(lambda v: (Datum(kind, v), v))


INT64 = (-(2**63), 2**63 - 1)
UINT64 = (0, 2**64 - 1)


def _decimals_outside(p: int, s: int, stored_p: int) -> st.SearchStrategy[tuple[Datum, Any]]:
    limit = 10 ** (p - s)
    magnitudes = st.decimals(limit, 10 ** (stored_p - s) - 1, places=s) | st.just(Decimal(limit))
    return st.tuples(magnitudes, st.booleans()).map(
        lambda m: (Datum("decimal", DecimalValue(m[0].copy_negate() if m[1] else m[0], stored_p, s)),
                   m[0].copy_negate() if m[1] else m[0]))  # (unary minus would round to 28 digits)


# SQL type -> (raw datums the column cannot hold with the value decoding reports, edge values it can)
RANGE_KINDS: dict[str, tuple[st.SearchStrategy[tuple[Datum, Any]], list[Any]]] = {
    "TINYINT": (_ints_outside(-128, 127, "int", INT64), [-128, 127]),
    "SMALLINT UNSIGNED": (_ints_outside(0, 2**31 - 1, "uint", UINT64), [0, 65535, 2**31 - 1]),  # int32
    "INT": (_ints_outside(-(2**31), 2**31 - 1, "int", INT64), [-(2**31), 2**31 - 1]),
    "INT UNSIGNED": (_ints_outside(0, 2**63 - 1, "uint", UINT64), [0, 2**32 - 1, 2**63 - 1]),  # int64
    "YEAR": (_ints_outside(-(2**15), 2**15 - 1, "uint", UINT64), [0, 1901, 2155, 2**15 - 1]),  # unsigned; int16
    "BIT(10)": (_ints_outside(0, 2**63 - 1, "uint", UINT64), [0, 1023, 2**63 - 1]),  # int64
    "FLOAT": (st.floats(F32_MAX, 1.7e308, exclude_min=True).flatmap(
        lambda f: st.sampled_from([f, -f])).map(lambda f: (Datum("float", f), f)),
        [F32_MAX, -F32_MAX, float("inf"), 1.5]),
    "DECIMAL(12,2)": (_decimals_outside(12, 2, 22), [Decimal("9999999999.99"), Decimal("-9999999999.99")]),
    "DECIMAL(45,3)": (_decimals_outside(45, 3, 60), [Decimal("9" * 42 + ".999"), Decimal("-" + "9" * 42 + ".999")]),
    "VARCHAR(8)": (st.nothing(), ["x", ""]),
}
HANDLE_KINDS = {"BIGINT": [-5, 0, 2**63 - 1], "INT": [-(2**31), 2**31 - 1], "BIGINT UNSIGNED": [-5, 1, 2**63 - 1]}


@st.composite
def rows_with_out_of_range_values(draw: st.DrawFn) -> tuple[TableInfo, list[bytes], list[int], list[dict[str, Any]]]:
    """A random table, rows in random formats mixing fitting values (edges included), NULLs
    and values that do not fit (rarely, so most batches have none), and per row the cells
    that do not fit: {column: the value an error must report}."""
    kinds = draw(st.lists(st.sampled_from(sorted(RANGE_KINDS)), min_size=1, max_size=5))
    handle_sql = draw(st.sampled_from([None, *HANDLE_KINDS]))
    cols = [column("id", handle_sql, primary_key=True)] if handle_sql else []
    cols += [column(f"c{i}", sql) for i, sql in enumerate(kinds)]
    t = table(52, "ranges", cols)
    bad_rate = draw(st.sampled_from([0.0, 0.05, 0.3]))
    fmt_choices = draw(st.sampled_from([("v2",), FORMATS]))  # one format (shared layouts) or any
    values, handles, bad = [], [], []
    for h in range(draw(st.integers(1, 16))):
        cells: list[tuple[int, Datum]] = []
        bad_cells: dict[str, Any] = {}
        for i, sql in enumerate(kinds):
            c = t.column(f"c{i}")
            outside, edges = RANGE_KINDS[sql]
            if outside is not st.nothing() and draw(st.floats(0, 1)) < bad_rate:
                datum, reported = draw(outside)
                cells.append((c.id, datum))
                bad_cells[c.name] = reported
            else:
                cells.append((c.id, datum_for_column(c, draw(st.sampled_from(edges + [None])))))
        handle = draw(st.sampled_from(HANDLE_KINDS[handle_sql])) if handle_sql else h * 10 - 3
        if handle_sql == "INT" and draw(st.floats(0, 1)) < bad_rate:
            handle = draw(st.sampled_from([2**31, -(2**31) - 1, 2**40]))
            bad_cells["id"] = handle
        fmt = draw(st.sampled_from(fmt_choices))
        if fmt == "v1":
            data = encode_row_v1(cells)
        elif fmt == "v2_large":
            data = encode_row_v2(cells + [(300, Datum("int", 1))])
        else:
            data = encode_row_v2(cells)
            if fmt == "v2_checksum":
                data = bytes([data[0], data[1] | FLAG_CHECKSUM]) + data[2:] + b"\x01" + b"\x12\x34\x56\x78"
        values.append(data)
        handles.append(handle)
        bad.append(bad_cells)
    return t, values, handles, bad


def _reported(e: ColumnValueOutOfRangeError, bad_cells: dict[str, Any]) -> bool:
    """The error names one of the row's cells that do not fit, with its value."""
    if e.column not in bad_cells:
        return False
    want = bad_cells[e.column]
    return Decimal(e.value) == want if isinstance(want, Decimal) else e.value == want


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rows_with_out_of_range_values())
def test_a_value_its_column_cannot_hold_is_the_same_named_error_in_both_decoders(
        case: tuple[TableInfo, list[bytes], list[int], list[dict[str, Any]]]) -> None:
    t, values, handles, bad = case
    for i, (v, h) in enumerate(zip(values, handles)):
        if not bad[i]:
            decode_row(v, row_columns(t), h)
            continue
        with pytest.raises(ColumnValueOutOfRangeError) as row_error:
            decode_row(v, row_columns(t), h)
        assert _reported(row_error.value, bad[i]), (row_error.value, bad[i])
        assert row_error.value.handle == h and "ranges" in str(row_error.value.table)
    if not any(bad):
        assert_same(decode_rows_to_arrow(values, handles, row_columns(t)), per_row(values, handles, t))
        return
    for given_values in (values, pa.array(values, pa.binary())):
        with pytest.raises(BatchValueOutOfRangeError) as caught:
            decode_rows_to_arrow(given_values, np.array(handles, np.int64), row_columns(t))
        e = caught.value
        assert isinstance(e, BatchDecodeError) and isinstance(e, ColumnValueOutOfRangeError)
        assert e.row is not None and _reported(e, bad[e.row]), (e, bad)
        assert e.handle == handles[e.row] and e.rows == len(values)
        message = str(e)
        for part in (f"table ranges (id {t.id})", f"row {e.row} of {len(values)}", f"handle {handles[e.row]}",
                     f"column {e.column} (id {t.column(e.column).id}", f"holds {e.value}"):
            assert part in message, (part, message)


def test_an_int_beyond_its_column_in_every_row_is_an_error_not_zero() -> None:
    """The reported case: INT holding 2**40 (written after a widening to BIGINT) in rows that
    share one layout (the strided fast path) and in rows that do not."""
    t = table(53, "shop.items", [column("id", "BIGINT", primary_key=True), column("qty", "INT"),
                                 column("note", "VARCHAR(8)")])
    widened = encode_row_v2([(2, Datum("int", 2**40 + 5)), (3, Datum("bytes", b"ab"))])
    fitting = encode_row_for_table(row_columns(t), {"qty": 7, "note": "abc"})
    for rows, bad_row in (([widened, widened], 0), ([fitting, widened, fitting], 1)):
        handles = np.arange(100, 100 + len(rows), dtype=np.int64)
        with pytest.raises(BatchValueOutOfRangeError, match=rf"table shop.items \(id 53\), row {bad_row} of "
                           rf"{len(rows)}, handle {100 + bad_row}: column qty \(id 2, INT\) holds 1099511627781"):
            decode_rows_to_arrow(rows, handles, row_columns(t))
        with pytest.raises(ColumnValueOutOfRangeError, match=r"handle 101: column qty .* holds 1099511627781"):
            decode_row(widened, row_columns(t), 101)
    # a pk_is_handle INT column whose handle went beyond int32 (the key was widened)
    k = table(54, "k", [column("id", "INT", primary_key=True), column("v", "INT")])
    with pytest.raises(BatchValueOutOfRangeError, match=r"row 1 of 2, handle 1099511627776: column id"):
        decode_rows_to_arrow([encode_row_for_table(row_columns(k), {"v": 1})] * 2, [1, 2**40], row_columns(k))
