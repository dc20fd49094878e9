"""Property tests of the codec primitives: every encoding decodes back to its value, and
every memcomparable encoding sorts exactly as its values do."""
from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pyspark_theflash import codec
from pyspark_theflash.codec import Datum, Lock, Write
from pyspark_theflash.codec.decimal import DecimalValue, decimal_bin_size, decode_decimal, encode_decimal
from pyspark_theflash.codec.keys import (
    decode_common_handle_key,
    decode_index_key,
    decode_index_value,
    encode_index_key,
    encode_index_value,
)
from pyspark_theflash.codec.row_v1 import flatten
from pyspark_theflash.codec.time import duration_to_ns, ns_to_duration, pack_time_fields, unpack_time_fields

INT64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
UINT64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
FLOATS = st.floats(allow_nan=False)
BYTES = st.binary(max_size=40)
SUFFIX = st.binary(max_size=5)

settings.register_profile("codec", max_examples=60, deadline=None)
settings.load_profile("codec")


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def _cmp(a: object, b: object) -> int:
    return (a > b) - (a < b)  # type: ignore[operator]


# ------------------------------------------------------------------ numbers


@given(INT64, SUFFIX)
def test_int_round_trips_and_leaves_the_rest(v: int, rest: bytes) -> None:
    assert codec.decode_int(codec.encode_int(v) + rest) == (v, rest)
    assert codec.decode_int_desc(codec.encode_int_desc(v) + rest) == (v, rest)


@given(INT64, INT64)
def test_int_encoding_sorts_as_int64(a: int, b: int) -> None:
    assert _cmp(codec.encode_int(a), codec.encode_int(b)) == _cmp(a, b)
    assert _cmp(codec.encode_int_desc(a), codec.encode_int_desc(b)) == _cmp(b, a)


@given(UINT64, UINT64, SUFFIX)
def test_uint_round_trips_and_sorts_as_uint64(a: int, b: int, rest: bytes) -> None:
    assert codec.decode_uint(codec.encode_uint(a) + rest) == (a, rest)
    assert codec.decode_uint_desc(codec.encode_uint_desc(a) + rest) == (a, rest)
    assert _cmp(codec.encode_uint(a), codec.encode_uint(b)) == _cmp(a, b)
    assert _cmp(codec.encode_uint_desc(a), codec.encode_uint_desc(b)) == _cmp(b, a)


@given(st.floats(), SUFFIX)
def test_float_round_trips_bit_for_bit(f: float, rest: bytes) -> None:
    back, remaining = codec.decode_float(codec.encode_float(f) + rest)
    assert remaining == rest
    assert (math.isnan(back) and math.isnan(f)) or (back == f and math.copysign(1, back) == math.copysign(1, f))


@given(FLOATS, FLOATS)
def test_float_encoding_sorts_as_float64(a: float, b: float) -> None:
    assume(a != b)  # -0.0 == 0.0 compare equal as floats but encode apart (see below)
    assert _cmp(codec.encode_float(a), codec.encode_float(b)) == _cmp(a, b)


def test_negative_zero_sorts_just_below_positive_zero() -> None:
    assert codec.encode_float(-0.0).hex() == "7fffffffffffffff"
    assert codec.encode_float(0.0).hex() == "8000000000000000"
    assert codec.encode_float(-5e-324) < codec.encode_float(-0.0) < codec.encode_float(0.0) < codec.encode_float(5e-324)


@given(INT64, UINT64, SUFFIX)
def test_varints_round_trip(v: int, u: int, rest: bytes) -> None:
    assert codec.decode_varint(codec.encode_varint(v) + rest) == (v, rest)
    assert codec.decode_uvarint(codec.encode_uvarint(u) + rest) == (u, rest)
    assert len(codec.encode_uvarint(u)) == max(1, math.ceil(u.bit_length() / 7))


# ------------------------------------------------------------------ bytes


@given(BYTES, SUFFIX)
def test_bytes_round_trip_asc_desc_and_compact(b: bytes, rest: bytes) -> None:
    assert codec.decode_bytes(codec.encode_bytes(b) + rest) == (b, rest)
    assert codec.decode_bytes_desc(codec.encode_bytes_desc(b) + rest) == (b, rest)
    assert codec.decode_compact_bytes(codec.encode_compact_bytes(b) + rest) == (b, rest)
    assert len(codec.encode_bytes(b)) == (len(b) // 8 + 1) * 9


@given(BYTES, BYTES)
def test_bytes_encoding_sorts_as_bytes(a: bytes, b: bytes) -> None:
    assert _cmp(codec.encode_bytes(a), codec.encode_bytes(b)) == _cmp(a, b)
    assert _cmp(codec.encode_bytes_desc(a), codec.encode_bytes_desc(b)) == _cmp(b, a)


@given(BYTES, BYTES, BYTES, BYTES)
def test_bytes_encoding_keeps_tuple_order_when_concatenated(a1: bytes, a2: bytes, b1: bytes, b2: bytes) -> None:
    # no encoding is a prefix of another, so composite keys sort by their first part first
    ka = codec.encode_bytes(a1) + codec.encode_bytes(a2)
    kb = codec.encode_bytes(b1) + codec.encode_bytes(b2)
    assert _cmp(ka, kb) == _cmp((a1, a2), (b1, b2))


# ------------------------------------------------------------------ decimal


@st.composite
def decimals(draw: st.DrawFn, precision: int | None = None, frac: int | None = None) -> DecimalValue:
    p = precision if precision is not None else draw(st.integers(1, 65))
    f = frac if frac is not None else draw(st.integers(0, min(30, p)))
    scaled = draw(st.integers(-(10**p) + 1, 10**p - 1))
    digits = tuple(int(c) for c in str(abs(scaled)))
    return DecimalValue(Decimal((1 if scaled < 0 else 0, digits, -f)), p, f)


@given(decimals(), SUFFIX)
def test_decimal_round_trips_for_any_precision_and_frac(d: DecimalValue, rest: bytes) -> None:
    binary = codec.decimal_to_bin(d.value, d.precision, d.frac)
    assert len(binary) == decimal_bin_size(d.precision, d.frac)
    back = codec.decimal_from_bin(binary, d.precision, d.frac)
    assert back == d.value
    assert back.as_tuple().exponent == -d.frac
    assert decode_decimal(encode_decimal(d) + rest) == (DecimalValue(back, d.precision, d.frac), rest)


@given(st.integers(1, 65).flatmap(lambda p: st.tuples(st.just(p), st.integers(0, min(30, p)))).flatmap(
    lambda pf: st.tuples(decimals(*pf), decimals(*pf))))
def test_decimal_binary_sorts_as_the_values(pair: tuple[DecimalValue, DecimalValue]) -> None:
    a, b = pair
    ba = codec.decimal_to_bin(a.value, a.precision, a.frac)
    bb = codec.decimal_to_bin(b.value, b.precision, b.frac)
    assert _cmp(ba, bb) == _cmp(a.value, b.value)


# ------------------------------------------------------------------ time and TSO

DATETIMES = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59, 999999))


@given(DATETIMES)
def test_datetime_pack_round_trips(t: dt.datetime) -> None:
    packed = codec.pack_datetime(t)
    assert codec.unpack_datetime(packed) == t
    assert unpack_time_fields(packed) == (t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond)
    assert pack_time_fields(*unpack_time_fields(packed)) == packed


@given(DATETIMES, DATETIMES)
def test_packed_datetimes_sort_as_datetimes(a: dt.datetime, b: dt.datetime) -> None:
    assert _cmp(codec.pack_datetime(a), codec.pack_datetime(b)) == _cmp(a, b)


@given(st.dates(min_value=dt.date(1, 1, 1)))
def test_date_pack_round_trips(d: dt.date) -> None:
    assert codec.unpack_date(codec.pack_date(d)) == d
    assert codec.pack_date(d) == codec.pack_datetime(dt.datetime(d.year, d.month, d.day))


@given(st.datetimes(timezones=st.just(dt.timezone(dt.timedelta(hours=8))), min_value=dt.datetime(2, 1, 1)))
def test_aware_datetimes_pack_in_utc(t: dt.datetime) -> None:
    utc = t.astimezone(dt.timezone.utc).replace(tzinfo=None)
    assert codec.pack_datetime(t) == codec.pack_datetime(utc)


@given(st.integers(-838 * 3600 * 10**6, 838 * 3600 * 10**6))
def test_duration_round_trips(us: int) -> None:
    td = dt.timedelta(microseconds=us)
    assert duration_to_ns(td) == us * 1000
    assert ns_to_duration(duration_to_ns(td)) == td


@given(st.integers(0, (1 << 46) - 1), st.integers(0, (1 << 18) - 1))
def test_tso_parts_round_trip(ms: int, logical: int) -> None:
    ts = codec.compose_ts(ms, logical)
    assert (codec.physical_ms(ts), codec.logical(ts)) == (ms, logical)
    assert codec.ts_to_datetime(ts) == dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=ms)


# ------------------------------------------------------------------ datums

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 63) - 1) | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)

VALUE_DATUMS = st.one_of(
    INT64.map(lambda v: Datum("int", v)),
    UINT64.map(lambda v: Datum("uint", v)),
    BYTES.map(lambda v: Datum("bytes", v)),
    FLOATS.map(lambda v: Datum("float", v)),
    decimals().map(lambda d: Datum("decimal", d.value)),
    st.integers(-(10**15), 10**15).map(lambda v: Datum("duration_ns", v)),
    JSON_VALUES.map(lambda v: Datum("json", v)),
    st.just(Datum("null")),
)


@given(st.lists(VALUE_DATUMS, max_size=6))
def test_value_and_key_datums_round_trip(datums: list[Datum]) -> None:
    assert codec.decode_value(codec.encode_value(datums)) == datums
    assert codec.decode_key(codec.encode_key(datums)) == datums


@given(st.lists(DATETIMES, max_size=3), st.lists(st.integers(0, 7), max_size=3))
def test_time_and_enum_datums_come_back_as_their_stored_uint(times: list[dt.datetime], enums: list[int]) -> None:
    datums = [Datum("datetime", t) for t in times] + [Datum("enum", e) for e in enums]
    stored = [Datum("uint", codec.pack_datetime(t)) for t in times] + [Datum("uint", e) for e in enums]
    assert codec.decode_value(codec.encode_value(datums)) == stored
    assert codec.decode_key(codec.encode_key(datums)) == stored


KEY_ROWS = st.tuples(INT64, BYTES, FLOATS)


@given(KEY_ROWS, KEY_ROWS)
def test_encode_key_sorts_as_the_tuples(a: tuple[int, bytes, float], b: tuple[int, bytes, float]) -> None:
    assume(not (a[:2] == b[:2] and a[2] == b[2]))  # skip -0.0 vs 0.0 ties

    def key(row: tuple[int, bytes, float]) -> bytes:
        return codec.encode_key([Datum("int", row[0]), Datum("bytes", row[1]), Datum("float", row[2])])

    assert _cmp(key(a), key(b)) == _cmp(a, b)


@given(UINT64, UINT64, st.integers(-(10**15), 10**15), st.integers(-(10**15), 10**15))
def test_encode_key_sorts_uints_and_durations(u1: int, u2: int, d1: int, d2: int) -> None:
    assert _cmp(codec.encode_key([Datum("uint", u1)]), codec.encode_key([Datum("uint", u2)])) == _cmp(u1, u2)
    k1 = codec.encode_key([Datum("duration_ns", d1)])
    k2 = codec.encode_key([Datum("duration_ns", d2)])
    assert _cmp(k1, k2) == _cmp(d1, d2)


@given(decimals(12, 3), decimals(12, 3))
def test_encode_key_sorts_decimals_of_one_column_type(a: DecimalValue, b: DecimalValue) -> None:
    ka = codec.encode_key([Datum("decimal", a)])
    kb = codec.encode_key([Datum("decimal", b)])
    assert _cmp(ka, kb) == _cmp(a.value, b.value)


def test_max_datum_sorts_after_every_value() -> None:
    top = codec.encode_key([Datum("max")])
    for d in (Datum("int", (1 << 63) - 1), Datum("uint", (1 << 64) - 1), Datum("bytes", b"\xff" * 20), Datum("float", math.inf)):
        assert codec.encode_key([d]) < top


# ------------------------------------------------------------------ keys, rows, Percolator records


@given(INT64, INT64, INT64, INT64)
def test_record_keys_round_trip_and_sort_by_table_then_handle(t1: int, h1: int, t2: int, h2: int) -> None:
    k1, k2 = codec.encode_record_key(t1, h1), codec.encode_record_key(t2, h2)
    assert codec.decode_record_key(k1) == (t1, h1)
    assert _cmp(k1, k2) == _cmp((t1, h1), (t2, h2))


@given(st.lists(st.tuples(INT64, INT64), max_size=50))
def test_vectorised_record_key_decoding_matches_one_by_one(pairs: list[tuple[int, int]]) -> None:
    keys = [codec.encode_record_key(t, h) for t, h in pairs]
    table_ids, handles = codec.decode_record_keys(keys)
    assert table_ids.dtype.name == handles.dtype.name == "int64"
    assert list(zip(table_ids.tolist(), handles.tolist())) == [codec.decode_record_key(k) for k in keys]


@given(st.integers(1, 1 << 40), st.lists(st.one_of(INT64.map(lambda v: Datum("int", v)), BYTES.map(lambda v: Datum("bytes", v))), min_size=1, max_size=3))
def test_common_handle_and_index_keys_round_trip(table_id: int, datums: list[Datum]) -> None:
    assert decode_common_handle_key(codec.encode_common_handle_key(table_id, datums)) == (table_id, datums)
    assert decode_index_key(encode_index_key(table_id, 7, datums)) == (table_id, 7, datums)


@given(st.one_of(st.none(), INT64), st.booleans())
def test_index_values_round_trip(handle: int | None, untouched: bool) -> None:
    assert decode_index_value(encode_index_value(handle, untouched)) == (handle, untouched)


@given(BYTES, BYTES)
def test_region_keys_round_trip_and_keep_order(a: bytes, b: bytes) -> None:
    assert codec.decode_region_key(codec.encode_region_key(a)) == a
    if a and b:
        assert _cmp(codec.encode_region_key(a), codec.encode_region_key(b)) == _cmp(a, b)


@given(st.dictionaries(st.integers(1, 1 << 20), VALUE_DATUMS, max_size=8))
def test_row_v1_round_trips_as_flattened_datums(cols: dict[int, Datum]) -> None:
    # row v1 stores TIME as a plain int (TiDB's flatten); everything else keeps its kind
    assert codec.decode_row_v1(codec.encode_row_v1(list(cols.items()))) == {k: flatten(d) for k, d in cols.items()}


OPT_BYTES = st.one_of(st.none(), st.binary(max_size=255))


@given(
    st.sampled_from("PDLS"), st.binary(max_size=30), UINT64, UINT64, OPT_BYTES, UINT64, UINT64, UINT64,
    st.lists(st.binary(max_size=10), max_size=3), st.booleans(), st.lists(UINT64, max_size=3),
    st.tuples(UINT64, UINT64), UINT64, st.booleans(), UINT64,
)
def test_locks_round_trip(
    lock_type: str, primary: bytes, start_ts: int, ttl: int, short: bytes | None, for_update_ts: int,
    txn_size: int, min_commit_ts: int, secondaries: list[bytes], async_commit: bool, rollback_ts: list[int],
    last_change: tuple[int, int], txn_source: int, with_conflict: bool, generation: int,
) -> None:
    lock = Lock(
        lock_type, primary, start_ts, ttl, short, for_update_ts, txn_size, min_commit_ts,
        use_async_commit=async_commit or bool(secondaries), secondaries=secondaries, rollback_ts=rollback_ts,
        last_change=last_change, txn_source=txn_source, is_locked_with_conflict=with_conflict, generation=generation,
    )
    assert Lock.parse(lock.to_bytes()) == lock


@given(st.sampled_from("PDLR"), UINT64, OPT_BYTES, st.booleans(), st.one_of(st.none(), UINT64), st.tuples(UINT64, UINT64), UINT64)
def test_writes_round_trip(
    write_type: str, start_ts: int, short: bytes | None, overlapped: bool, gc_fence: int | None,
    last_change: tuple[int, int], txn_source: int,
) -> None:
    write = Write(write_type, start_ts, short, overlapped, gc_fence, last_change, txn_source)
    assert Write.parse(write.to_bytes()) == write
