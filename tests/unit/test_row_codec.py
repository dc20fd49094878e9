"""Row values (v2 and v1) decoded by schema: layouts, NULL vs absent, checksums, handles, every
TiDB type's Python value, the TiDB/TiKV vectors, and errors for bad bytes."""
from __future__ import annotations

import dataclasses
import datetime as dt
import struct
from decimal import Decimal
from typing import Any

import pytest

from pyspark_theflash.codec.datum import Datum
from pyspark_theflash.codec.errors import CodecError, TruncatedError, UnknownFlagError
from pyspark_theflash.codec.json_binary import decode_json, parse_json_text
from pyspark_theflash.codec.row import decode_row
from pyspark_theflash.codec.row_v1 import encode_row_v1
from pyspark_theflash.codec.row_v2 import (
    FLAG_CHECKSUM,
    FLAG_LARGE,
    BadRowError,
    decode_row_v2,
    encode_row_for_table,
    encode_row_v2,
    parse_row_v2,
)
from pyspark_theflash.codec.time import pack_time_fields
from pyspark_theflash.schema import ColumnInfo, TableInfo, column, row_columns, table

UTC = dt.timezone.utc
_SQL_OF_TAG = {"int": "BIGINT", "uint": "BIGINT UNSIGNED", "bytes": "VARCHAR(20)", "float": "DOUBLE",
               "datetime": "DATETIME", "decimal": "DECIMAL(1,0)", "json": "JSON", "duration_ns": "TIME",
               "null": "INT"}


def table_with_ids(cols: list[tuple[int, ColumnInfo]], pk_is_handle: bool = False) -> TableInfo:
    """A table whose columns carry the given ids (as after adds and drops)."""
    placed = tuple(dataclasses.replace(c, id=cid, offset=i) for i, (cid, c) in enumerate(cols))
    return TableInfo(id=7, name="t", all_columns=placed, pk_is_handle=pk_is_handle,
                     primary_key=tuple(c.name for c in placed if c.is_primary_key))


def vector_datum(tag: str, value: Any) -> Datum:
    if tag == "json":
        return Datum(tag, decode_json(parse_json_text(value)))
    if tag == "datetime":
        return Datum(tag, dt.datetime.fromisoformat(value))
    if tag == "decimal":
        return Datum(tag, Decimal(value))
    return Datum(tag, value)


def expected_python(tag: str, value: Any) -> Any:
    return {"bytes": lambda v: v, "datetime": dt.datetime.fromisoformat, "decimal": Decimal,
            "json": lambda v: '{"key": "value"}' if v == '{"key":"value"}' else v,
            "duration_ns": lambda v: dt.timedelta(microseconds=v // 1000),
            "null": lambda v: None}.get(tag, lambda v: v)(value)


def test_rowcodec_v2_vectors_encode_and_decode_to_their_inputs(tidb_vectors: list[dict]) -> None:
    vectors = [v for v in tidb_vectors if v["kind"] == "rowcodec.v2"]
    assert len(vectors) == 4
    for vec in vectors:
        cols = vec["input"]["cols"]
        data = bytes.fromhex(vec["expected_hex"])
        assert encode_row_v2([(cid, vector_datum(tag, v)) for cid, tag, v in cols]) == data
        t = table_with_ids([(cid, column(f"c{cid}", _SQL_OF_TAG[tag])) for cid, tag, _ in cols])
        assert decode_row(data, row_columns(t)) == {f"c{cid}": expected_python(tag, v) for cid, tag, v in cols}


def test_old_row_vectors_decode_to_their_inputs(tidb_vectors: list[dict]) -> None:
    vectors = {v["description"]: v for v in tidb_vectors if v["kind"] == "tablecodec.EncodeOldRow(v1)"}
    assert len(vectors) == 3
    t = table_with_ids([(1, column("a", "TINYINT")), (2, column("b", "INT", default=5))])
    empty = next(v for d, v in vectors.items() if "empty" in d)
    assert decode_row(bytes.fromhex(empty["expected_hex"]), row_columns(t)) == {"a": None, "b": 5}
    tiny = next(v for d, v in vectors.items() if "TINYINT" in d)
    assert decode_row(bytes.fromhex(tiny["expected_hex"]), row_columns(t)) == {"a": 127, "b": 5}
    when = next(v for d, v in vectors.items() if "DATETIME" in d)
    td = table_with_ids([(1, column("at", "DATETIME"))])
    assert decode_row(bytes.fromhex(when["expected_hex"]), row_columns(td)) == {"at": dt.datetime(2009, 2, 14, 7, 31, 30)}


def test_small_layout_uses_byte_ids_and_u16_offsets() -> None:
    data = encode_row_v2([(3, Datum("int", 1)), (1, Datum("bytes", b"ab")), (2, Datum("null"))])
    assert data == bytes([0x80, 0, 2, 0, 1, 0, 1, 3, 2, 2, 0, 3, 0]) + b"ab" + b"\x01"
    assert decode_row_v2(data) == {1: b"ab", 3: b"\x01", 2: None}


def test_large_layout_for_big_ids_and_big_values() -> None:
    by_id = encode_row_v2([(256, Datum("int", 5)), (1, Datum("null"))])
    assert by_id[1] == FLAG_LARGE
    assert by_id == bytes([0x80, 1, 1, 0, 1, 0]) + struct.pack("<III", 256, 1, 1) + b"\x05"
    big = b"x" * 70000
    by_size = encode_row_v2([(1, Datum("bytes", big))])
    assert by_size[1] == FLAG_LARGE
    assert decode_row_v2(by_size) == {1: big}
    t = table_with_ids([(256, column("a", "INT")), (1, column("b", "INT"))])
    assert decode_row(by_id, row_columns(t)) == {"a": 5, "b": None}


def test_null_column_is_none_but_absent_column_takes_its_origin_default() -> None:
    t = table(1, "d", [column("id", "INT"), column("n", "INT", default=7),
                       column("s", "VARCHAR(5)", default="dflt"), column("z", "INT")])
    only_id = encode_row_v2([(1, Datum("int", 1))])
    assert decode_row(only_id, row_columns(t)) == {"id": 1, "n": 7, "s": "dflt", "z": None}
    explicit_null = encode_row_v2([(1, Datum("int", 1)), (2, Datum("null")), (3, Datum("null"))])
    assert decode_row(explicit_null, row_columns(t)) == {"id": 1, "n": None, "s": None, "z": None}


def test_origin_default_is_the_add_column_default_not_the_current_one() -> None:
    col = column("n", "INT", default=9, origin_default=3)
    t = table_with_ids([(1, column("id", "INT")), (2, col)])
    assert decode_row(encode_row_v2([(1, Datum("int", 1))]), row_columns(t)) == {"id": 1, "n": 3}


@pytest.mark.parametrize("suffix_header,suffix_len", [(0x00, 4), (0x01, 4), (0x02, 4), (0x09, 8)])
def test_checksum_suffix_is_skipped(suffix_header: int, suffix_len: int) -> None:
    plain = encode_row_v2([(1, Datum("int", 300)), (2, Datum("bytes", b"abc"))])
    with_ck = bytes([plain[0], plain[1] | FLAG_CHECKSUM]) + plain[2:] + bytes([suffix_header]) + b"\xaa" * suffix_len
    assert decode_row_v2(with_ck) == decode_row_v2(plain) == {1: b"\x2c\x01", 2: b"abc"}
    with pytest.raises(TruncatedError):
        decode_row_v2(with_ck[:-1])


def test_unknown_checksum_version_is_an_error() -> None:
    plain = encode_row_v2([(1, Datum("int", 1))])
    bad = bytes([0x80, FLAG_CHECKSUM]) + plain[2:] + b"\x03" + bytes(4)
    with pytest.raises(UnknownFlagError) as e:
        decode_row_v2(bad)
    assert "checksum" in str(e.value)


def test_v1_rows_decode_by_schema() -> None:
    t = table(2, "v1", [column("id", "BIGINT", primary_key=True), column("a", "INT UNSIGNED"),
                        column("d", "DATETIME(6)"), column("ts", "TIMESTAMP"), column("t", "TIME"),
                        column("e", "ENUM('x','y')"), column("s", "SET('p','q')"), column("j", "JSON"),
                        column("m", "DECIMAL(6,2)"), column("b", "VARBINARY(4)"), column("f", "FLOAT"),
                        column("n", "INT", default=11)])
    when = dt.datetime(2021, 3, 4, 5, 6, 7, 8)
    data = encode_row_v1([
        (2, Datum("uint", 4_000_000_000)), (3, Datum("datetime", when)),
        (4, Datum("datetime", dt.datetime(2020, 1, 1))), (5, Datum("duration_ns", -90 * 10**9)),
        (6, Datum("enum", 2)), (7, Datum("set", 3)), (8, Datum("json", {"k": [1, 2]})),
        (9, Datum("decimal", Decimal("-1.50"))), (10, Datum("bytes", b"\x00\x01")), (11, Datum("float", 0.5)),
    ])
    assert decode_row(data, row_columns(t), handle=42) == {
        "id": 42, "a": 4_000_000_000, "d": when, "ts": dt.datetime(2020, 1, 1, tzinfo=UTC),
        "t": dt.timedelta(seconds=-90), "e": "y", "s": "p,q", "j": '{"k": [1, 2]}',
        "m": Decimal("-1.50"), "b": b"\x00\x01", "f": 0.5, "n": 11}
    assert decode_row(data, row_columns(t.raw), handle=42)["d"] == when  # table info JSON works as well


def test_pk_is_handle_column_takes_the_handle() -> None:
    t = table(3, "h", [column("id", "BIGINT", primary_key=True), column("v", "INT")])
    assert t.pk_is_handle
    data = encode_row_for_table(row_columns(t), {"id": 99, "v": 5})
    assert decode_row_v2(data) == {2: b"\x05"}  # the handle lives in the key
    assert decode_row(data, row_columns(t), handle=99) == {"id": 99, "v": 5}
    tu = table(4, "hu", [column("id", "BIGINT UNSIGNED", primary_key=True), column("v", "INT")])
    assert decode_row(data, row_columns(tu), handle=-1)["id"] == 2**64 - 1


def test_dropped_column_ids_are_ignored() -> None:
    t = table_with_ids([(1, column("a", "INT")), (5, column("c", "INT"))])
    data = encode_row_v2([(1, Datum("int", 1)), (3, Datum("bytes", b"gone")), (4, Datum("null")),
                          (5, Datum("int", 5))])
    assert decode_row(data, row_columns(t)) == {"a": 1, "c": 5}


def full_table() -> TableInfo:
    return table(5, "all_types", [
        column("id", "BIGINT", primary_key=True), column("ti", "TINYINT"), column("si", "SMALLINT UNSIGNED"),
        column("mi", "MEDIUMINT"), column("i", "INT UNSIGNED"), column("bu", "BIGINT UNSIGNED"),
        column("y", "YEAR"), column("f", "FLOAT"), column("d", "DOUBLE"), column("dec", "DECIMAL(10,3)"),
        column("wide", "DECIMAL(50,10)"), column("dt", "DATE"), column("dtt", "DATETIME(6)"),
        column("ts", "TIMESTAMP(3)"), column("tm", "TIME(6)"), column("c", "CHAR(4)"), column("vc", "VARCHAR(10)"),
        column("tx", "TEXT"), column("bn", "BINARY(3)"), column("vb", "VARBINARY(8)"), column("bl", "BLOB"),
        column("e", "ENUM('red','green')"), column("st", "SET('a','b','c')"), column("bt", "BIT(12)"),
        column("b64", "BIT(64)"), column("j", "JSON"), column("nl", "INT"),
    ])


FULL_VALUES: dict[str, Any] = {
    "id": 1, "ti": -128, "si": 65535, "mi": -8388608, "i": 4294967295, "bu": 2**64 - 1, "y": 2155,
    "f": 1.5, "d": -2.25e-300, "dec": Decimal("-1234567.891"), "wide": Decimal("1234567890123456789012345678901234567890.0123456789"),
    "dt": dt.date(1000, 1, 1), "dtt": dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
    "ts": dt.datetime(2038, 1, 19, 3, 14, 7, 123000, tzinfo=UTC), "tm": dt.timedelta(hours=838, minutes=59, seconds=59),
    "c": "ab", "vc": "日本語", "tx": "x" * 300, "bn": b"\x00\x01\x02", "vb": b"\xff", "bl": bytes(range(256)),
    "e": "green", "st": "a,c", "bt": 0xABC, "b64": 2**64 - 1, "j": '{"b": [1, 2.5, "s"], "a": null}', "nl": None,
}


def test_every_type_decodes_to_the_documented_python_type() -> None:
    t = full_table()
    got = decode_row(encode_row_for_table(row_columns(t), FULL_VALUES), row_columns(t), handle=1)
    expected = dict(FULL_VALUES, j='{"a": null, "b": [1, 2.5, "s"]}')
    assert got == expected
    kinds = {name: type(v) for name, v in got.items()}
    assert kinds["dec"] is Decimal and kinds["dt"] is dt.date and kinds["dtt"] is dt.datetime
    assert got["dtt"].tzinfo is None and got["ts"].tzinfo is UTC
    assert kinds["tm"] is dt.timedelta and kinds["vc"] is str and kinds["vb"] is bytes and kinds["j"] is str
    assert kinds["e"] is str and kinds["st"] is str and kinds["bt"] is int and kinds["f"] is float


def test_decimal_scale_is_the_columns_and_rounds_half_up_on_encode() -> None:
    t = table(6, "m", [column("m", "DECIMAL(6,2)")])
    assert decode_row(encode_row_for_table(row_columns(t), {"m": "1.005"}), row_columns(t)) == {"m": Decimal("1.01")}
    assert decode_row(encode_row_for_table(row_columns(t), {"m": 3}), row_columns(t)) == {"m": Decimal("3.00")}


def test_zero_and_impossible_dates_read_as_none() -> None:
    t = table_with_ids([(1, column("d", "DATETIME")), (2, column("e", "DATE"))])
    zero = encode_row_v2([(1, Datum("datetime", 0)), (2, Datum("datetime", pack_time_fields(2021, 2, 30)))])
    assert decode_row(zero, row_columns(t)) == {"d": None, "e": None}


def test_enum_zero_is_empty_string_and_set_zero_is_empty() -> None:
    t = table(8, "es", [column("e", "ENUM('a','b')"), column("s", "SET('a','b')")])
    data = encode_row_v2([(1, Datum("enum", 0)), (2, Datum("set", 0))])
    assert decode_row(data, row_columns(t)) == {"e": "", "s": ""}
    with pytest.raises(BadRowError, match="ENUM column e"):
        decode_row(encode_row_v2([(1, Datum("enum", 3))]), row_columns(t))
    with pytest.raises(BadRowError, match="SET column s"):
        decode_row(encode_row_v2([(2, Datum("set", 4))]), row_columns(t))


def test_encode_row_for_table_rejects_unknown_elements() -> None:
    t = table(9, "es", [column("e", "ENUM('a','b')"), column("s", "SET('a','b')")])
    with pytest.raises(CodecError, match="not an element of ENUM column e"):
        encode_row_for_table(row_columns(t), {"e": "zz"})
    with pytest.raises(CodecError, match="not an element of SET column s"):
        encode_row_for_table(row_columns(t), {"s": "a,zz"})


@pytest.mark.parametrize("data,error,needle", [
    (b"", TruncatedError, "row v2 header"),
    (b"\x80\x00\x01", TruncatedError, "row v2 header"),
    (b"\x80\x00\x02\x00\x00\x00\x01", TruncatedError, "column ids and offsets"),
    (b"\x80\x00\x01\x00\x00\x00\x01\x05\x00ab", TruncatedError, "row v2 values"),
    (b"\x80\x04\x00\x00\x00\x00", UnknownFlagError, "0x04"),
    (b"\x80\x00\x01\x00\x00\x00\x01\x01\x00a!", BadRowError, "trailing"),
    (b"\x80\x00\x02\x00\x00\x00\x01\x02\x02\x00\x01\x00ab", BadRowError, "below the previous"),
])
def test_bad_v2_bytes_raise_errors_naming_the_offset(data: bytes, error: type, needle: str) -> None:
    with pytest.raises(error) as e:
        parse_row_v2(data)
    assert needle in str(e.value)
    assert "offset" in str(e.value)


def test_bad_value_width_names_the_column() -> None:
    t = table_with_ids([(1, column("a", "INT"))])
    data = b"\x80\x00\x01\x00\x00\x00\x01\x03\x00abc"
    with pytest.raises(BadRowError, match=r"column a \(id 1, INT\)"):
        decode_row(data, row_columns(t))


def test_bad_v1_row_is_an_error() -> None:
    t = table_with_ids([(1, column("a", "INT"))])
    with pytest.raises(CodecError):
        decode_row(b"\x08\x02\x08", row_columns(t))  # column id 1 without a value
    with pytest.raises(CodecError):
        decode_row(b"\x63", row_columns(t))  # unknown datum flag
