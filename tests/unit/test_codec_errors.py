"""Bad bytes and bad values raise typed errors that say what is wrong and where; a decoder
never returns a guessed value."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from pyspark_theflash import codec
from pyspark_theflash.codec import Datum, Lock, Write
from pyspark_theflash.codec.errors import (
    BadDecimalError,
    BadLockError,
    BadTimeError,
    BadWriteError,
    CodecError,
    MalformedError,
    NonRecordKeyError,
    TruncatedError,
    UnknownFlagError,
    ValueOutOfRangeError,
)
from pyspark_theflash.codec.keys import decode_index_key, decode_index_value, encode_index_key
from pyspark_theflash.codec.time import duration_to_ns, ns_to_duration, unpack_date
from pyspark_theflash.codec.tso import compose_ts
from pyspark_theflash.errors import TheFlashError


# ------------------------------------------------------------------ truncated input


def test_truncated_int_names_offset_needed_and_available() -> None:
    with pytest.raises(TruncatedError) as e:
        codec.decode_int(bytes(7))
    assert (e.value.offset, e.value.needed, e.value.available) == (0, 8, 7)
    assert "truncated memcomparable int64 at offset 0: needs 8 byte(s), only 7 left" in str(e.value)


def test_truncated_datum_inside_a_value_reports_the_absolute_offset() -> None:
    data = codec.encode_value([Datum("int", 5)]) + bytes([3, 0x80, 0])  # int flag then 2 of 8 bytes
    with pytest.raises(TruncatedError) as e:
        codec.decode_value(data)
    assert e.value.offset == 3 and e.value.available == 2


def test_truncated_varint_and_memcomparable_bytes() -> None:
    with pytest.raises(TruncatedError, match="varint"):
        codec.decode_uvarint(b"\x80\x80")
    with pytest.raises(TruncatedError, match="memcomparable bytes"):
        codec.decode_bytes(codec.encode_bytes(b"abcdefghij")[:-1])
    with pytest.raises(TruncatedError, match="compact bytes"):
        codec.decode_compact_bytes(codec.encode_compact_bytes(b"abc")[:-1])


# ------------------------------------------------------------------ unknown flags and malformed bytes


def test_unknown_datum_flag_names_flag_offset_and_known_flags() -> None:
    data = codec.encode_value([Datum("int", 1)]) + b"\x63"
    with pytest.raises(UnknownFlagError) as e:
        codec.decode_value(data)
    assert e.value.flag == 0x63 and e.value.offset == 2
    assert "unknown datum flag 0x63 at offset 2" in str(e.value) and "9 uvarint" in str(e.value)


def test_bad_group_marker_and_padding_are_rejected() -> None:
    good = bytearray(codec.encode_bytes(b"abc"))  # 'abc' + 5 zero pads + marker 0xfa
    bad_marker = bytes(good[:8]) + b"\xe0"
    with pytest.raises(MalformedError, match="marker 0xe0 at offset 8 means 31 padding bytes"):
        codec.decode_bytes(bad_marker)
    bad_pad = bytes(good[:7]) + b"\x01" + bytes(good[8:])
    with pytest.raises(MalformedError, match="padding bytes at offset 3"):
        codec.decode_bytes(bad_pad)


def test_varint_beyond_uint64_is_rejected() -> None:
    with pytest.raises(MalformedError, match="overflows uint64"):
        codec.decode_uvarint(b"\xff" * 9 + b"\x02")
    with pytest.raises(MalformedError, match="no end within 10 bytes"):
        codec.decode_uvarint(b"\xff" * 11)


def test_out_of_range_values_are_not_wrapped() -> None:
    with pytest.raises(ValueOutOfRangeError, match="outside int64"):
        codec.encode_int(1 << 63)
    with pytest.raises(ValueOutOfRangeError, match="outside uint64"):
        codec.encode_uint(-1)
    with pytest.raises(ValueOutOfRangeError, match="outside uint64"):
        codec.encode_uvarint(1 << 64)
    with pytest.raises(ValueOutOfRangeError, match="logical part"):
        compose_ts(1, 1 << 18)


def test_datum_of_unknown_kind_or_wrong_value_type() -> None:
    with pytest.raises(CodecError, match="unknown datum kind 'text'"):
        codec.encode_value([Datum("text", "x")])
    with pytest.raises(CodecError, match="'int' needs an int, got str"):
        codec.encode_key([Datum("int", "5")])
    with pytest.raises(CodecError, match="'bytes' needs bytes or str"):
        codec.encode_value([Datum("bytes", 5)])
    with pytest.raises(CodecError, match="'float' needs a float, got str"):
        codec.encode_value([Datum("float", "1.5")])


# ------------------------------------------------------------------ decimals


def test_decimal_overflow_and_excess_fraction_digits_are_errors_not_rounding() -> None:
    with pytest.raises(BadDecimalError, match=r"overflows DECIMAL\(5,2\).*more than 3 digit"):
        codec.decimal_to_bin(Decimal("1000.00"), 5, 2)
    with pytest.raises(BadDecimalError, match=r"more than 2 fraction digit\(s\) for DECIMAL\(10,2\)"):
        codec.decimal_to_bin(Decimal("1.005"), 10, 2)
    # trailing zeros beyond the scale are the same value, so they are fine
    assert codec.decimal_from_bin(codec.decimal_to_bin(Decimal("1.500"), 10, 2), 10, 2) == Decimal("1.50")


@pytest.mark.parametrize(
    ("precision", "frac", "message"),
    [(0, 0, "precision 0 is outside"), (82, 0, "precision 82 is outside"), (10, 31, "frac 31 is outside"),
     (3, 4, "frac 4 is larger than precision 3")],
)
def test_decimal_bad_precision_or_frac(precision: int, frac: int, message: str) -> None:
    with pytest.raises(BadDecimalError, match=message):
        codec.decimal_to_bin(Decimal(1), precision, frac)


def test_decimal_non_finite_and_non_decimal_values_are_rejected() -> None:
    with pytest.raises(BadDecimalError, match="not finite"):
        codec.decimal_to_bin(Decimal("NaN"), 10, 2)
    with pytest.raises(BadDecimalError, match=r"cannot take float 1.1 .*Decimal\(repr\(f\)\)"):
        codec.decimal_to_bin(1.1, 10, 2)  # type: ignore[arg-type]
    with pytest.raises(BadDecimalError, match="'1.2.3' is not a decimal number"):
        codec.encode_value([Datum("decimal", "1.2.3")])


def test_decimal_binary_with_an_impossible_word_is_rejected() -> None:
    # DECIMAL(18,0): two full words; 0xffffffff minus the sign flip is beyond 999999999
    bad = bytes([0x80 | 0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0])
    with pytest.raises(BadDecimalError, match=r"integer word at byte 0 is \d+, more than 9 digit"):
        codec.decimal_from_bin(bad, 18, 0)


def test_decimal_binary_of_the_wrong_length() -> None:
    good = codec.decimal_to_bin(Decimal("3.14"), 3, 2)
    with pytest.raises(TruncatedError, match=r"DECIMAL\(3,2\) binary"):
        codec.decimal_from_bin(good[:1], 3, 2)
    with pytest.raises(BadDecimalError, match="is 2 bytes, got 3"):
        codec.decimal_from_bin(good + b"\x00", 3, 2)


# ------------------------------------------------------------------ keys


def test_non_record_keys_are_rejected_by_name() -> None:
    index_key = encode_index_key(5, 1, [Datum("int", 3)])
    with pytest.raises(NonRecordKeyError, match="is not an int-handle record key"):
        codec.decode_record_key(index_key)
    with pytest.raises(NonRecordKeyError, match="is not an int-handle record key"):
        codec.decode_record_key(b"t\x80")
    common = codec.encode_common_handle_key(5, [Datum("bytes", b"pk")])
    with pytest.raises(NonRecordKeyError, match="use decode_common_handle_key"):
        codec.decode_record_key(common)


def test_vectorised_key_decoding_names_the_bad_key() -> None:
    good = codec.encode_record_key(1, 1)
    same_length_index_key = bytearray(good)
    same_length_index_key[10] = ord("i")
    with pytest.raises(NonRecordKeyError, match="key #1 of 3"):
        codec.decode_record_keys([good, bytes(same_length_index_key), good])
    with pytest.raises(NonRecordKeyError, match="common-handle record key"):
        codec.decode_record_keys([good, codec.encode_common_handle_key(1, [Datum("int", 1)])])


def test_index_keys_and_values_reject_other_layouts() -> None:
    with pytest.raises(CodecError, match="not an index key"):
        decode_index_key(codec.encode_record_key(1, 1))
    with pytest.raises(CodecError, match="versioned index value layout is not supported"):
        decode_index_value(b"\x00" + bytes(12))
    with pytest.raises(MalformedError, match="is not the untouched flag"):
        decode_index_value(bytes(8) + b"2")


def test_region_key_with_trailing_bytes_is_rejected() -> None:
    with pytest.raises(MalformedError, match="byte\\(s\\) after its memcomparable bytes"):
        codec.decode_region_key(codec.encode_region_key(b"t1") + b"\x00")


# ------------------------------------------------------------------ rows and time


def test_row_v1_needs_int_column_ids_and_a_value_per_column() -> None:
    with pytest.raises(MalformedError, match="expected a column id"):
        codec.decode_row_v1(codec.encode_value([Datum("bytes", b"a"), Datum("int", 1)]))
    with pytest.raises(CodecError, match="column 7 has no value"):
        codec.decode_row_v1(codec.encode_value([Datum("int", 7)]))


def test_invalid_packed_dates_raise_and_zero_date_reads_as_none() -> None:
    assert codec.unpack_datetime(0) is None and unpack_date(0) is None
    from pyspark_theflash.codec.time import pack_time_fields

    feb_30 = pack_time_fields(2021, 2, 30)
    with pytest.raises(BadTimeError, match="2021-02-30 00:00:00.000000, which is not a valid date"):
        codec.unpack_datetime(feb_30)
    with pytest.raises(BadTimeError, match="month 13"):
        pack_time_fields(2021, 13, 1)
    with pytest.raises(BadTimeError, match="carries a time of day"):
        unpack_date(codec.pack_datetime(dt.datetime(2021, 1, 1, 1)))


def test_durations_outside_mysql_time_or_below_microseconds() -> None:
    with pytest.raises(BadTimeError, match="outside MySQL's range"):
        duration_to_ns(dt.timedelta(hours=839))
    with pytest.raises(BadTimeError, match="not a whole number of microseconds"):
        ns_to_duration(1500)


# ------------------------------------------------------------------ Percolator records


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "is empty"), (b"X\x04pk\x01", "lock type 0x58 at offset 0"), (b"P\x04p", "primary key: truncated"),
     (b"P\x04pk\x01\x0af\x00\x01", "for_update_ts: truncated"), (b"P\x04pk\x01\x0av\x05ab", "short value at offset 8 needs 5")],
)
def test_bad_locks(data: bytes, message: str) -> None:
    with pytest.raises(BadLockError, match=message):
        Lock.parse(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "is empty"), (b"Q\x01", "write type 0x51"), (b"P", "start_ts: truncated"), (b"P\x01F\x00", "gc_fence: truncated")],
)
def test_bad_writes(data: bytes, message: str) -> None:
    with pytest.raises(BadWriteError, match=message):
        Write.parse(data)


def test_unknown_trailing_lock_fields_are_skipped_as_tikv_does() -> None:
    lock = Lock("P", b"pk", 10, 3000, txn_size=2)
    assert Lock.parse(lock.to_bytes() + b"Z\x01\x02") == lock


def test_every_codec_error_is_a_theflash_error() -> None:
    for cls in (TruncatedError, UnknownFlagError, MalformedError, BadDecimalError, BadTimeError, NonRecordKeyError,
                BadLockError, BadWriteError, ValueOutOfRangeError):
        assert issubclass(cls, CodecError) and issubclass(cls, TheFlashError)
