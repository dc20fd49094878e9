"""TiDB's MyDecimal binary form (``types/mydecimal.go`` ``ToBin``/``FromBin``), MySQL compatible.

A DECIMAL(precision, frac) value is stored as its integer digits and its fraction digits,
each cut into words of 9 decimal digits (4 bytes big-endian each). The integer part's
leftover (most significant) digits and the fraction's leftover (least significant) digits
take only the bytes they need (``DIG2BYTES``). Negative values invert every byte; finally
the top bit of the first byte is flipped, so the bytes sort as the values do.

Example from TiDB's comment: 1234567890.1234 as DECIMAL(14,4) = ``81 0D FB 38 D2 04 D2``.

Values are ``decimal.Decimal``. Nothing here depends on the ``decimal`` module's context
(precision 28 by default): every conversion is exact integer arithmetic, so 65-digit values
survive. A value that does not fit the declared precision/frac raises ``BadDecimalError``
rather than being rounded or clipped.
"""
from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from pyspark_theflash.codec.errors import BadDecimalError, TruncatedError
from pyspark_theflash.codec.number import Buffer

DIGITS_PER_WORD = 9
WORD_SIZE = 4
DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
# TiDB accepts a binary precision up to 9 words of 9 digits; MySQL columns stop at 65.
MAX_BIN_PRECISION = DIGITS_PER_WORD * 9
MAX_PRECISION = 65
MAX_SCALE = 30
_WORD_BASE = 10**DIGITS_PER_WORD


class DecimalValue(NamedTuple):
    """A decimal with the precision and frac it is (or is to be) stored with."""

    value: Decimal
    precision: int
    frac: int


def _check_precision(precision: int, frac: int) -> None:
    if not 1 <= precision <= MAX_BIN_PRECISION:
        raise BadDecimalError(f"decimal precision {precision} is outside [1, {MAX_BIN_PRECISION}]")
    if not 0 <= frac <= MAX_SCALE:
        raise BadDecimalError(f"decimal frac {frac} is outside [0, {MAX_SCALE}]")
    if frac > precision:
        raise BadDecimalError(f"decimal frac {frac} is larger than precision {precision}")


def decimal_bin_size(precision: int, frac: int) -> int:
    """Bytes of the binary form of DECIMAL(precision, frac) (``DecimalBinSize``)."""
    _check_precision(precision, frac)
    digits_int = precision - frac
    return (
        (digits_int // DIGITS_PER_WORD) * WORD_SIZE
        + DIG2BYTES[digits_int % DIGITS_PER_WORD]
        + (frac // DIGITS_PER_WORD) * WORD_SIZE
        + DIG2BYTES[frac % DIGITS_PER_WORD]
    )


def _as_decimal(value: Decimal | int | str) -> Decimal:
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            d = Decimal(value)
        except ArithmeticError:
            raise BadDecimalError(f"{value!r} is not a decimal number") from None
    else:
        # a float's binary expansion is not the decimal the user wrote; tuples are ambiguous
        raise BadDecimalError(
            f"cannot take {type(value).__name__} {value!r} as a DECIMAL value: pass decimal.Decimal, int or str"
            + (" (e.g. Decimal(repr(f)))" if isinstance(value, float) else "")
        )
    if not d.is_finite():
        raise BadDecimalError(f"decimal value {value!r} is not finite; DECIMAL holds only numbers")
    return d


def precision_and_frac(value: Decimal | int | str) -> tuple[int, int]:
    """The precision and frac TiDB gives a decimal that has none (``MyDecimal.PrecisionAndFrac``):
    frac = digits after the point as written (``Decimal('1.50')`` has 2), precision =
    significant integer digits + frac, at least 1."""
    d = _as_decimal(value)
    _, digits, exp = d.as_tuple()
    assert isinstance(exp, int)
    frac = max(-exp, 0)
    coefficient = int("".join(map(str, digits)) or "0")
    integer = coefficient * 10**exp if exp >= 0 else coefficient // 10**frac
    int_digits = len(str(integer)) if integer else 0
    return max(int_digits + frac, 1), frac


def _scaled_integer(d: Decimal, frac: int, precision: int) -> tuple[bool, int]:
    """(negative, |d| * 10**frac) exactly; fails if d has non-zero digits beyond frac."""
    sign, digits, exp = d.as_tuple()
    assert isinstance(exp, int)
    coefficient = int("".join(map(str, digits)) or "0")
    shift = exp + frac
    if shift >= 0:
        scaled = coefficient * 10**shift
    else:
        scaled, dropped = divmod(coefficient, 10**-shift)
        if dropped:
            raise BadDecimalError(
                f"decimal {d} has more than {frac} fraction digit(s) for DECIMAL({precision},{frac}); "
                "round it to the column's scale before encoding"
            )
    return bool(sign) and scaled != 0, scaled


def decimal_to_bin(value: Decimal | int | str, precision: int, frac: int) -> bytes:
    """``MyDecimal.ToBin(precision, frac)``: the memcomparable binary form (no prefix bytes)."""
    _check_precision(precision, frac)
    d = _as_decimal(value)
    negative, scaled = _scaled_integer(d, frac, precision)
    digits_int = precision - frac
    int_part, frac_part = divmod(scaled, 10**frac)
    if int_part >= 10**digits_int:
        raise BadDecimalError(
            f"decimal {d} overflows DECIMAL({precision},{frac}): its integer part has more than "
            f"{digits_int} digit(s)"
        )
    words_int, leading = divmod(digits_int, DIGITS_PER_WORD)
    words_frac, trailing = divmod(frac, DIGITS_PER_WORD)

    out = bytearray()
    # Integer part: leading partial word, then full words, most significant first.
    lead_value, int_words = divmod(int_part, _WORD_BASE**words_int)
    if leading:
        out += lead_value.to_bytes(DIG2BYTES[leading], "big")
    for i in range(words_int - 1, -1, -1):
        out += ((int_words // _WORD_BASE**i) % _WORD_BASE).to_bytes(WORD_SIZE, "big")
    # Fraction: full words from the point on, then the trailing partial word.
    frac_words, trail_value = divmod(frac_part, 10**trailing)
    for i in range(words_frac - 1, -1, -1):
        out += ((frac_words // _WORD_BASE**i) % _WORD_BASE).to_bytes(WORD_SIZE, "big")
    if trailing:
        out += trail_value.to_bytes(DIG2BYTES[trailing], "big")

    if negative:
        out = bytearray(b ^ 0xFF for b in out)
    out[0] ^= 0x80
    return bytes(out)


def decimal_from_bin_at(buf: Buffer, offset: int, precision: int, frac: int) -> tuple[Decimal, int]:
    """Decodes the binary form at ``offset``; returns the value (exponent ``-frac``) and the
    offset just after it."""
    size = decimal_bin_size(precision, frac)
    if len(buf) - offset < size:
        raise TruncatedError(f"DECIMAL({precision},{frac}) binary", offset, size, len(buf) - offset)
    raw = bytearray(buf[offset : offset + size])
    negative = not raw[0] & 0x80
    raw[0] ^= 0x80
    if negative:
        raw = bytearray(b ^ 0xFF for b in raw)

    digits_int = precision - frac
    words_int, leading = divmod(digits_int, DIGITS_PER_WORD)
    words_frac, trailing = divmod(frac, DIGITS_PER_WORD)
    pos = 0

    def take(nbytes: int, ndigits: int, part: str) -> int:
        nonlocal pos
        v = int.from_bytes(raw[pos : pos + nbytes], "big")
        if v >= 10**ndigits:
            raise BadDecimalError(
                f"DECIMAL({precision},{frac}) binary at offset {offset}: {part} word at byte "
                f"{offset + pos} is {v}, more than {ndigits} digit(s); not a MyDecimal value"
            )
        pos += nbytes
        return v

    int_part = take(DIG2BYTES[leading], leading, "leading integer") if leading else 0
    for _ in range(words_int):
        int_part = int_part * _WORD_BASE + take(WORD_SIZE, DIGITS_PER_WORD, "integer")
    frac_part = 0
    for _ in range(words_frac):
        frac_part = frac_part * _WORD_BASE + take(WORD_SIZE, DIGITS_PER_WORD, "fraction")
    if trailing:
        frac_part = frac_part * 10**trailing + take(DIG2BYTES[trailing], trailing, "trailing fraction")

    scaled = int_part * 10**frac + frac_part
    digits = tuple(int(c) for c in str(scaled))
    return Decimal((1 if negative else 0, digits, -frac)), offset + size


def decimal_from_bin(data: Buffer, precision: int, frac: int) -> Decimal:
    """``MyDecimal.FromBin``: the value of a binary form that fills ``data`` exactly."""
    value, end = decimal_from_bin_at(data, 0, precision, frac)
    if end != len(data):
        raise BadDecimalError(
            f"DECIMAL({precision},{frac}) binary is {decimal_bin_size(precision, frac)} bytes, "
            f"got {len(data)}; use decimal_from_bin_at to decode from a longer buffer"
        )
    return value


def encode_decimal(value: Decimal | int | str | DecimalValue, precision: int = 0, frac: int = 0) -> bytes:
    """``codec.EncodeDecimal``: precision byte, frac byte, binary form. Precision 0 takes the
    value's own (``precision_and_frac``), as TiDB does for a datum without a length."""
    if isinstance(value, DecimalValue):
        value, precision, frac = value
    d = _as_decimal(value)
    if precision == 0:
        precision, frac = precision_and_frac(d)
    frac = min(frac, MAX_SCALE)
    return bytes((precision, frac)) + decimal_to_bin(d, precision, frac)


def decode_decimal_at(buf: Buffer, offset: int) -> tuple[DecimalValue, int]:
    """Decodes ``encode_decimal`` bytes at ``offset``: (value with its precision/frac, next offset)."""
    if len(buf) - offset < 2:
        raise TruncatedError("decimal precision/frac header", offset, 2, len(buf) - offset)
    precision, frac = buf[offset], buf[offset + 1]
    value, end = decimal_from_bin_at(buf, offset + 2, precision, frac)
    return DecimalValue(value, precision, frac), end


def decode_decimal(data: Buffer) -> tuple[DecimalValue, bytes]:
    v, end = decode_decimal_at(data, 0)
    return v, bytes(data[end:])
