"""Every byte-exact TiDB/TiKV vector (../shared/tidb_vectors.json) is reproduced by our
encoders and read back to its input by our decoders.

One test per vector kind; each checks every vector of that kind. The optional retired
TiDB-Binlog wire format (``binlog.Binlog(proto)``) is the only kind not covered, and
``test_every_vector_kind_is_covered`` fails if the file gains a kind nobody checks.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

import pyspark_theflash.codec as codec
from pyspark_theflash.codec import Datum, Lock, Write
from pyspark_theflash.codec.decimal import DecimalValue
from pyspark_theflash.codec.keys import (
    decode_index_key,
    decode_index_value,
    encode_index_key,
    encode_index_value,
)
from pyspark_theflash.codec.time import pack_time_fields, unpack_datetime, unpack_time_fields

NOT_COVERED = {"binlog.Binlog(proto)"}  # optional: TiDB-Binlog was removed in TiDB 8.4

Vector = dict[str, Any]


def expected(v: Vector) -> bytes:
    return bytes.fromhex(v["expected_hex"])


def label(v: Vector) -> str:
    return f"{v['kind']}: {v['description']}"


# ----------------------------------------------------------------- vector values -> datums


def datum_of(tag: str, value: Any, *extra: Any) -> Datum:
    """The Datum a vector's [tag, value, ...] stands for."""
    if tag == "bytes":
        return Datum("bytes", value.encode("utf-8"))
    if tag == "datetime":
        return Datum("datetime", dt.datetime.fromisoformat(value))
    if tag == "time":  # EncodeKey vectors give the packed form directly
        return Datum("datetime", unpack_datetime(value))
    if tag == "duration":
        return Datum("duration_ns", value)
    if tag == "decimal":
        if extra:
            return Datum("decimal", DecimalValue(Decimal(value), extra[0], extra[1]))
        return Datum("decimal", Decimal(value))
    if tag == "float":
        return Datum("float", float(value))
    if tag == "json":  # vectors give JSON text, or null for the JSON null literal
        return Datum("json", None if value is None else json.loads(value))
    return Datum(tag, value)  # int, uint, enum, set, bit, duration_ns, json, null, max


def stored(d: Datum, flattened: bool = False) -> Datum:
    """The datum a decoder returns for ``d``: kinds become what the flag says."""
    if d.kind == "datetime":
        return Datum("uint", codec.pack_datetime(d.value))
    if d.kind in ("enum", "set", "bit"):
        return Datum("uint", d.value)
    if d.kind == "duration_ns" and flattened:
        return Datum("int", d.value)
    if d.kind == "decimal" and isinstance(d.value, DecimalValue):
        return Datum("decimal", d.value.value)
    return d


def assert_same_datum(got: Datum, want: Datum, where: str) -> None:
    assert got.kind == want.kind, where
    if want.kind == "float":
        assert got.value == want.value and type(got.value) is float, where
    else:
        assert got.value == want.value, where
    if want.kind == "decimal":
        # frac survives as the exponent, e.g. DECIMAL(4,2) -10.55 keeps two digits
        assert got.value.as_tuple().exponent == want.value.as_tuple().exponent, where


# ----------------------------------------------------------------- per-kind checks


def check_bytes(v: Vector, desc: bool) -> None:
    raw = bytes.fromhex(v["input"]["bytes_hex"])
    enc = codec.encode_bytes_desc(raw) if desc else codec.encode_bytes(raw)
    assert enc == expected(v), label(v)
    dec = codec.decode_bytes_desc if desc else codec.decode_bytes
    assert dec(expected(v) + b"\x42") == (raw, b"\x42"), label(v)


def check_number(v: Vector) -> None:
    kind = v["kind"]
    x = v["input"]
    pairs: dict[str, tuple[Callable[[Any], bytes], Callable[[bytes], tuple[Any, bytes]], Any]] = {
        "codec.EncodeInt": (codec.encode_int, codec.decode_int, x.get("int64")),
        "codec.EncodeUint": (codec.encode_uint, codec.decode_uint, x.get("uint64")),
        "codec.EncodeVarint": (codec.encode_varint, codec.decode_varint, x.get("int64")),
        "codec.EncodeUvarint": (codec.encode_uvarint, codec.decode_uvarint, x.get("uint64")),
        "codec.EncodeFloat": (codec.encode_float, codec.decode_float, float(x.get("float64", 0))),
    }
    encode, decode, value = pairs[kind]
    assert encode(value) == expected(v), label(v)
    assert decode(expected(v) + b"\x01") == (value, b"\x01"), label(v)


def check_record_key(v: Vector) -> None:
    x = v["input"]
    assert codec.encode_record_key(x["table_id"], x["handle"]) == expected(v), label(v)
    assert codec.decode_record_key(expected(v)) == (x["table_id"], x["handle"]), label(v)
    table_ids, handles = codec.decode_record_keys([expected(v)])
    assert (table_ids.tolist(), handles.tolist()) == ([x["table_id"]], [x["handle"]]), label(v)


def check_index_key(v: Vector) -> None:
    x = v["input"]
    datums = [datum_of(*value) for value in x["values"]]
    assert encode_index_key(x["table_id"], x["index_id"], datums) == expected(v), label(v)
    table_id, index_id, got = decode_index_key(expected(v))
    assert (table_id, index_id) == (x["table_id"], x["index_id"]), label(v)
    assert got == [stored(d) for d in datums], label(v)


def check_index_value(v: Vector) -> None:
    x = v["input"]
    untouched = x["flag"] == "1"
    assert encode_index_value(x["handle"], untouched=untouched) == expected(v), label(v)
    assert decode_index_value(expected(v)) == (x["handle"], untouched), label(v)


def check_row_v2(v: Vector) -> None:
    from pyspark_theflash.codec import json_binary, row_v2

    cols = [(col_id, datum_of(tag, value)) for col_id, tag, value in v["input"]["cols"]]
    assert codec.encode_row_v2(cols) == expected(v), label(v)  # type: ignore[attr-defined]
    raw = row_v2.decode_row_v2(expected(v))
    assert sorted(raw) == sorted(col_id for col_id, _ in cols), label(v)
    readers: dict[str, Callable[[bytes], Any]] = {
        "int": row_v2.decode_int_v2,
        "uint": row_v2.decode_uint_v2,
        "enum": row_v2.decode_uint_v2,
        "set": row_v2.decode_uint_v2,
        "bit": row_v2.decode_uint_v2,
        "bytes": bytes,
        "float": row_v2.decode_float_v2,
        "datetime": lambda b: unpack_datetime(row_v2.decode_uint_v2(b)),
        "decimal": row_v2.decode_decimal_v2,
        "duration_ns": row_v2.decode_int_v2,
        "json": json_binary.decode_json,
    }
    for col_id, d in cols:
        where = f"{label(v)} column {col_id}"
        if d.kind == "null":
            assert raw[col_id] is None, where
            continue
        assert readers[d.kind](raw[col_id]) == d.value, where


def check_row_v1(v: Vector) -> None:
    cols = [(col_id, datum_of(tag, value)) for col_id, tag, value in v["input"]["cols"]]
    assert codec.encode_row_v1(cols) == expected(v), label(v)
    got = codec.decode_row_v1(expected(v))
    assert list(got) == [col_id for col_id, _ in cols], label(v)
    for col_id, d in cols:
        assert_same_datum(got[col_id], stored(d, flattened=True), f"{label(v)} column {col_id}")
        if d.kind == "datetime":
            assert unpack_datetime(got[col_id].value) == d.value, label(v)


def check_datums(v: Vector, comparable: bool) -> None:
    d = datum_of(*v["input"]["datum"])
    encode = codec.encode_key if comparable else codec.encode_value
    assert encode([d]) == expected(v), label(v)
    decode = codec.decode_key if comparable else codec.decode_value
    got = decode(expected(v))
    assert len(got) == 1, label(v)
    assert_same_datum(got[0], stored(d), label(v))
    # Decoding then re-encoding gives the same bytes back (decimal keeps its precision only
    # when it is the value's own, which holds for these vectors).
    assert encode(got) == expected(v), label(v)


def check_decimal(v: Vector) -> None:
    x = v["input"]
    p, f = x["precision"], x["frac"]
    assert codec.decimal_to_bin(Decimal(x["value"]), p, f) == expected(v), label(v)
    back = codec.decimal_from_bin(expected(v), p, f)
    assert back == Decimal(x["value"]), label(v)
    assert back.as_tuple().exponent == -f, label(v)
    assert codec.decimal_bin_size(p, f) == len(expected(v)), label(v)


def check_packed_time(v: Vector) -> None:
    x = v["input"]
    fields = tuple(x["time"])
    packed = x["packed_uint64"]
    assert pack_time_fields(*fields) == packed, label(v)
    assert codec.encode_uint(codec.pack_datetime(dt.datetime(*fields))) == expected(v), label(v)
    assert unpack_time_fields(packed) == fields, label(v)
    assert codec.unpack_datetime(packed) == dt.datetime(*fields), label(v)


def _bytes_or_none(s: str | None) -> bytes | None:
    return None if s is None else s.encode("utf-8")


def check_lock(v: Vector) -> None:
    x = v["input"]
    lock = Lock(
        lock_type=x["lock_type"],
        primary=x["primary"].encode(),
        start_ts=x["start_ts"],
        ttl=x.get("ttl", 0),
        short_value=_bytes_or_none(x.get("short")),
        for_update_ts=x.get("for_update_ts", 0),
        txn_size=x.get("txn_size", 0),
        min_commit_ts=x.get("min_commit_ts", 0),
        use_async_commit="secondaries" in x,
        secondaries=[k.encode() for k in x.get("secondaries", [])],
        rollback_ts=list(x.get("rollback_ts", [])),
    )
    assert lock.to_bytes() == expected(v), label(v)
    assert Lock.parse(expected(v)) == lock, label(v)


def check_write(v: Vector) -> None:
    x = v["input"]
    write = Write(
        write_type=x["write_type"],
        start_ts=x["start_ts"],
        short_value=_bytes_or_none(x.get("short")),
        has_overlapped_rollback=x.get("overlapped", False),
        gc_fence=x.get("gc_fence"),
        last_change=tuple(x.get("last_change", (0, 0))),  # type: ignore[arg-type]
    )
    assert write.to_bytes() == expected(v), label(v)
    assert Write.parse(expected(v)) == write, label(v)


CHECKS: dict[str, Callable[[Vector], None]] = {
    "codec.EncodeBytes": lambda v: check_bytes(v, desc=False),
    "codec.EncodeBytesDesc": lambda v: check_bytes(v, desc=True),
    "codec.EncodeInt": check_number,
    "codec.EncodeUint": check_number,
    "codec.EncodeFloat": check_number,
    "codec.EncodeVarint": check_number,
    "codec.EncodeUvarint": check_number,
    "tablecodec.RecordKey": check_record_key,
    "tablecodec.IndexKey": check_index_key,
    "tablecodec.IndexValue": check_index_value,
    "rowcodec.v2": check_row_v2,
    "tablecodec.EncodeOldRow(v1)": check_row_v1,
    "codec.EncodeValue": lambda v: check_datums(v, comparable=False),
    "codec.EncodeKey": lambda v: check_datums(v, comparable=True),
    "MyDecimal.ToBin": check_decimal,
    "types.Time.ToPackedUint": check_packed_time,
    "txn_types.Lock": check_lock,
    "txn_types.Write": check_write,
}


@pytest.mark.parametrize("kind", sorted(CHECKS))
def test_vectors_of_kind_encode_and_decode(kind: str, tidb_vectors: list[Vector]) -> None:
    vectors = [v for v in tidb_vectors if v["kind"] == kind]
    assert vectors, f"no vector of kind {kind} in tidb_vectors.json"
    for v in vectors:
        CHECKS[kind](v)


def test_every_vector_kind_is_covered(tidb_vectors: list[Vector]) -> None:
    kinds = {v["kind"] for v in tidb_vectors}
    assert kinds - NOT_COVERED == set(CHECKS)
    assert len(tidb_vectors) - sum(v["kind"] in NOT_COVERED for v in tidb_vectors) == sum(
        v["kind"] in CHECKS for v in tidb_vectors
    )
