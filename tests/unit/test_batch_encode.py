"""codec.batch_encode gives, byte for byte, what the per-value encoders give (the ones the TiDB
vectors check): row v2 values and rows (every NULL layout, small and large), key datums,
record keys, memcomparable bytes, packed times and Put write records."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyspark_theflash.codec import batch_encode as B
from pyspark_theflash.codec import encode_record_key
from pyspark_theflash.codec.datum import Datum, encode_key
from pyspark_theflash.codec.decimal import DecimalValue, encode_decimal
from pyspark_theflash.codec.memcomparable_bytes import encode_bytes
from pyspark_theflash.codec.row_v2 import encode_int_v2, encode_row_v2, encode_uint_v2, encode_value_v2
from pyspark_theflash.codec.time import pack_datetime
from pyspark_theflash.codec.txn import Write

RNG = np.random.default_rng(20)
EDGES = np.array([0, 1, -1, 127, -128, 128, -129, 32767, -32768, 32768, -32769, 2**31 - 1, -(2**31), 2**31,
                  -(2**31) - 1, 2**63 - 1, -(2**63)], dtype=np.int64)


def test_ints_uints_and_floats_as_row_v2_values_and_key_datums() -> None:
    v = np.concatenate([EDGES, RNG.integers(-(2**63), 2**63 - 1, 300), RNG.integers(-70_000, 70_000, 300)])
    assert B.int_values(v).to_pylist() == [encode_int_v2(int(x)) for x in v]
    assert B.int_key_datums(v).to_pylist() == [encode_key([Datum("int", int(x))]) for x in v]
    u = v.view(np.uint64)
    assert B.uint_values(u).to_pylist() == [encode_uint_v2(int(x)) for x in u]
    assert B.uint_key_datums(u).to_pylist() == [encode_key([Datum("uint", int(x))]) for x in u]
    f = np.concatenate([[0.0, -0.0, 1.5, -1.5, np.inf, -np.inf, 1e300, -1e-300, 5e-324], RNG.normal(0, 1e6, 200)])
    assert B.float_values(f).to_pylist() == [encode_value_v2(Datum("float", float(x))) for x in f]
    assert B.float_key_datums(f).to_pylist() == [encode_key([Datum("float", float(x))]) for x in f]
    valid = RNG.random(len(v)) < 0.7
    assert B.int_values(v, valid).to_pylist() == [encode_int_v2(int(x)) if ok else None for x, ok in zip(v, valid)]


@pytest.mark.parametrize("precision,frac", [(15, 2), (18, 0), (18, 18), (10, 5), (1, 0), (9, 9), (12, 3), (17, 8)])
def test_decimals_in_mydecimal_binary(precision: int, frac: int) -> None:
    top = 10**precision - 1
    unscaled = RNG.integers(-top, top, 300, endpoint=True)
    unscaled[:3] = [0, top, -top]
    decimals = [DecimalValue(Decimal(int(x)).scaleb(-frac), precision, frac) for x in unscaled]
    assert B.decimal_values(unscaled, precision, frac).to_pylist() == [encode_decimal(d) for d in decimals]
    assert B.decimal_key_datums(unscaled, precision, frac).to_pylist() == [encode_key([Datum("decimal", d)]) for d in decimals]


def test_memcomparable_bytes_of_slices_and_record_keys() -> None:
    items = [b"", b"a", b"12345678", b"123456789", b"x" * 17, bytes(range(256)) * 3, "zoë".encode()]
    assert B.memcomparable_bytes(pa.array(items, pa.binary())).to_pylist() == [encode_bytes(x) for x in items]
    sliced = pa.array([b"skip"] + items, pa.binary()).slice(1)
    assert B.memcomparable_bytes(sliced).to_pylist() == [encode_bytes(x) for x in items]
    assert B.bytes_key_datums(sliced).to_pylist() == [encode_key([Datum("bytes", x)]) for x in items]
    handles = np.concatenate([EDGES, RNG.integers(-(2**63), 2**63 - 1, 100)])
    assert B.int_record_keys(77, handles).to_pylist() == [encode_record_key(77, int(h)) for h in handles]


def test_packed_dates_and_timestamps() -> None:
    days = np.concatenate([[-719_162, 2_932_896, 0, -1, 11_016], RNG.integers(-719_162, 2_932_896, 500)])
    dates = [dt.date(1970, 1, 1) + dt.timedelta(days=int(d)) for d in days]
    assert B.pack_dates(days).tolist() == [pack_datetime(d) for d in dates]
    micros = RNG.integers(-62_135_596_800_000_000, 253_402_300_799_999_999, 500)
    times = [dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=int(x)) for x in micros]
    assert B.pack_timestamps(micros).tolist() == [pack_datetime(t) for t in times]


def test_put_write_records_inline_short_values_only() -> None:
    values = pa.array([b"abc", b"x" * 255, b"y" * 256, b""], pa.binary())
    want = [Write(write_type="P", start_ts=123456789012, short_value=v if len(v) <= 255 else None).to_bytes()
            for v in values.to_pylist()]
    assert B.put_write_records(values, 123456789012).to_pylist() == want


cells = st.one_of(st.none(), st.binary(max_size=40))


@settings(max_examples=30, deadline=None)
@given(ids=st.lists(st.integers(1, 400), min_size=1, max_size=6, unique=True),
       rows=st.integers(1, 30), data=st.data(), max_patterns=st.sampled_from([0, 64]), big=st.booleans())
def test_rows_v2_in_every_layout(ids: list[int], rows: int, data: st.DataObject, max_patterns: int, big: bool) -> None:
    """NULLs anywhere, ids above 255 and rows above 64 KiB (the large layout), with and without
    the grouped-NULL-pattern path."""
    columns = [data.draw(st.lists(cells, min_size=rows, max_size=rows)) for _ in ids]
    if big:
        columns[0][0] = b"z" * 70_000
    old = B._MAX_NULL_PATTERNS
    B._MAX_NULL_PATTERNS = max_patterns
    try:
        got = B.encode_rows_v2(ids, [pa.array(c, pa.binary()) for c in columns]).to_pylist()
    finally:
        B._MAX_NULL_PATTERNS = old
    want = [encode_row_v2([(cid, Datum("null") if col[r] is None else Datum("bytes", col[r]))
                           for cid, col in zip(ids, columns)]) for r in range(rows)]
    assert got == want
