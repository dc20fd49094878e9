"""TiDB binary JSON: byte layout, every value kind, TiDB's printed text, TiDB's number rules."""
from __future__ import annotations

import datetime as dt
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyspark_theflash.codec.errors import TruncatedError, UnknownFlagError
from pyspark_theflash.codec.json_binary import (
    TYPE_ARRAY,
    TYPE_DATE,
    TYPE_DATETIME,
    TYPE_FLOAT64,
    TYPE_INT64,
    TYPE_LITERAL,
    TYPE_OBJECT,
    TYPE_OPAQUE,
    TYPE_STRING,
    TYPE_TIME,
    TYPE_TIMESTAMP,
    TYPE_UINT64,
    BadJsonError,
    JsonDuration,
    JsonOpaque,
    JsonPackedTime,
    JsonTimestamp,
    JsonUInt64,
    decode_json,
    encode_json,
    format_json_float,
    json_to_text,
    parse_json_text,
    quote_json_string,
)


def test_object_bytes_match_tikv_row_vector(tidb_vectors: list[dict]) -> None:
    # tikv's test_encode stores JSON {"key":"value"} as column 15; its bytes are the row's tail
    vec = next(v for v in tidb_vectors if v["kind"] == "rowcodec.v2" and "JSON" in v["description"])
    encoded = parse_json_text('{"key":"value"}')
    assert encoded.hex() == "01010000001c0000001300000003000c160000006b65790576616c7565"
    assert encoded.hex() in vec["expected_hex"]
    assert json_to_text(encoded) == '{"key": "value"}'


def test_literal_is_inlined_in_its_value_entry() -> None:
    assert encode_json([True]).hex() == "03" + "01000000" + "0d000000" + "04" + "01000000"
    assert encode_json({"a": None}).hex() == (
        "01" "01000000" "14000000" "13000000" "0100" "04" "00000000" "61")


def test_scalar_encodings() -> None:
    assert encode_json(None) == bytes([TYPE_LITERAL, 0])
    assert encode_json(False) == bytes([TYPE_LITERAL, 2])
    assert encode_json(-1) == bytes([TYPE_INT64]) + b"\xff" * 8
    assert encode_json(JsonUInt64(1)) == bytes([TYPE_UINT64, 1]) + bytes(7)
    assert encode_json(2**64 - 1) == bytes([TYPE_UINT64]) + b"\xff" * 8
    assert encode_json(1.5) == bytes([TYPE_FLOAT64]) + bytes.fromhex("000000000000f83f")
    assert encode_json("héllo") == bytes([TYPE_STRING, 6]) + "héllo".encode()
    assert encode_json("x" * 200)[:3] == bytes([TYPE_STRING, 0xC8, 0x01])  # uvarint length
    assert encode_json(JsonOpaque(0xFE, b"\x01")) == bytes([TYPE_OPAQUE, 0xFE, 1, 1])


def test_keys_are_sorted_by_utf8_bytes_and_last_duplicate_wins() -> None:
    value = decode_json(parse_json_text('{"b": 1, "a": 2, "\u00e9": 3, "Z": 4, "a": 5}'))
    assert list(value) == ["Z", "a", "b", "\u00e9"]
    assert value["a"] == 5


@pytest.mark.parametrize("value", [
    None, True, False, 0, -(2**63), 2**63 - 1, JsonUInt64(7), JsonUInt64(2**64 - 1), 0.0, -0.0, 1.5e300,
    "", "a\u2028\x00\"\\", JsonOpaque(253, b"\x00\xff"), dt.date(2024, 2, 29),
    dt.datetime(1999, 12, 31, 23, 59, 59, 999999), JsonTimestamp(2020, 1, 1, 0, 0, 0, 1),
    JsonDuration(hours=-838, minutes=-59, fsp=3), JsonPackedTime(TYPE_DATETIME, 0),
    [], {}, [1, [2, [3, {"k": [None]}]]], {"a": {"b": {"c": []}}, "n": [1.25, "x", False]},
])
def test_every_kind_round_trips_byte_exact(value: object) -> None:
    encoded = encode_json(value)
    decoded = decode_json(encoded)
    assert decoded == value
    assert type(decoded) is type(value) or isinstance(value, (dict, list))
    assert encode_json(decoded) == encoded


def test_time_kinds_keep_their_type_code() -> None:
    assert encode_json(dt.date(2020, 1, 2))[0] == TYPE_DATE
    assert encode_json(dt.datetime(2020, 1, 2))[0] == TYPE_DATETIME
    assert encode_json(JsonTimestamp(2020, 1, 2))[0] == TYPE_TIMESTAMP
    assert encode_json(dt.timedelta(seconds=1))[0] == TYPE_TIME
    assert decode_json(encode_json(dt.timedelta(seconds=1))).fsp == 6
    assert decode_json(encode_json(JsonDuration(seconds=1, fsp=2))).fsp == 2


def test_tidb_text_form() -> None:
    value = {"s": "a\"b\\c\n\t\x01<>&\u2028", "i": -5, "u": JsonUInt64(2**64 - 1), "f": 1.0,
             "l": [True, False, None], "o": {}, "e": [], "op": JsonOpaque(15, b"U"),
             "d": dt.date(2020, 1, 2), "dt": dt.datetime(2020, 1, 2, 3, 4, 5, 60),
             "ts": JsonTimestamp(2020, 1, 2, 3, 4, 5), "t": JsonDuration(hours=-25, seconds=1, fsp=0)}
    assert json_to_text(encode_json(value)) == (
        '{"d": "2020-01-02", "dt": "2020-01-02 03:04:05.000060", "e": [], "f": 1.0, "i": -5, '
        '"l": [true, false, null], "o": {}, "op": "base64:type15:VQ==", '
        '"s": "a\\"b\\\\c\\n\\t\\u0001<>&\\u2028", "t": "-24:59:59.000000", '
        '"ts": "2020-01-02 03:04:05.000000", "u": 18446744073709551615}')


@pytest.mark.parametrize("f,text", [
    (0.0, "0.0"), (-0.0, "-0.0"), (1.0, "1.0"), (-2.5, "-2.5"), (0.1, "0.1"), (1e-6, "0.000001"),
    (1e-15, "0.000000000000001"), (1e-16, "1e-16"), (1.5e-300, "1.5e-300"),
    (123456789012345.0, "123456789012345.0"), (1e15, "1e15"), (1.25e20, "1.25e20"),
    (1.7976931348623157e308, "1.7976931348623157e308"), (100.0, "100.0"),
])
def test_floats_print_like_tidb(f: float, text: str) -> None:
    assert format_json_float(f) == text


def test_invalid_utf8_prints_as_replacement_escape() -> None:
    assert quote_json_string(b"a\xffb") == '"a\\ufffdb"'
    assert quote_json_string("\ufffd".encode()) == '"\ufffd"'
    assert json_to_text(bytes([TYPE_STRING, 3]) + b"a\xffb") == '"a\\ufffdb"'


@pytest.mark.parametrize("text,code", [
    ("1", TYPE_INT64), ("-9223372036854775808", TYPE_INT64), ("9223372036854775808", TYPE_UINT64),
    ("18446744073709551615", TYPE_UINT64), ("18446744073709551616", TYPE_FLOAT64),
    ("-9223372036854775809", TYPE_FLOAT64), ("1.0", TYPE_FLOAT64), ("1e2", TYPE_FLOAT64),
    ('"x"', TYPE_STRING), ("[]", TYPE_ARRAY), ("{}", TYPE_OBJECT), ("null", TYPE_LITERAL),
])
def test_text_numbers_follow_tidb_typing(text: str, code: int) -> None:
    assert parse_json_text(text)[0] == code


@pytest.mark.parametrize("text", ["", "  ", "{", "[1,]", "NaN", "1e999", "[1] [2]", "{'a': 1}"])
def test_invalid_text_is_rejected(text: str) -> None:
    with pytest.raises(BadJsonError):
        parse_json_text(text)


def test_truncated_binary_names_the_offset() -> None:
    encoded = encode_json({"key": "value"})
    with pytest.raises(TruncatedError) as e:
        decode_json(encoded[:-3])
    assert "offset" in str(e.value)
    with pytest.raises(TruncatedError):
        json_to_text(encode_json(12)[:5])
    with pytest.raises(TruncatedError):
        decode_json(b"")


def test_unknown_type_code_and_literal_are_errors() -> None:
    with pytest.raises(UnknownFlagError) as e:
        decode_json(b"\x07" + bytes(8))
    assert "0x07" in str(e.value)
    with pytest.raises(UnknownFlagError):
        decode_json(bytes([TYPE_LITERAL, 9]))


def test_values_json_cannot_hold_are_errors() -> None:
    for bad in (float("nan"), float("inf"), 2**64, -(2**63) - 1, {1: 2}, object()):
        with pytest.raises(BadJsonError):
            encode_json(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_hypothesis_round_trip_and_text_parses_back(value: object) -> None:
    encoded = encode_json(value)
    decoded = decode_json(encoded)
    assert decoded == value
    assert encode_json(decoded) == encoded
    text = json_to_text(encoded)
    assert json.loads(text) == _lone_surrogates_replaced(value)
    # TiDB's text parses back to the same binary (ints keep int/uint typing, floats stay floats)
    assert parse_json_text(text) == encode_json(_lone_surrogates_replaced(value))


def _lone_surrogates_replaced(v: object) -> object:
    if isinstance(v, str):
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in v)
    if isinstance(v, list):
        return [_lone_surrogates_replaced(x) for x in v]
    if isinstance(v, dict):
        return {_lone_surrogates_replaced(k): _lone_surrogates_replaced(x) for k, x in v.items()}
    return v


@settings(max_examples=100, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_hypothesis_float_text_is_shortest_round_trip(f: float) -> None:
    text = format_json_float(f)
    assert float(text) == f and math.copysign(1, float(text)) == math.copysign(1, f)
    assert "+" not in text
    assert ("e" in text) == (f != 0 and (abs(f) < 1e-15 or abs(f) >= 1e15))
