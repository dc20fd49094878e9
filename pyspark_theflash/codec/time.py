"""DATE/DATETIME/TIMESTAMP as TiDB's packed uint64 and TIME as int64 nanoseconds.

Packed time (``types.Time.ToPackedUint``)::

    ymd    = (year * 13 + month) << 5 | day
    hms    = hour << 12 | minute << 6 | second
    packed = ((ymd << 17 | hms) << 24) | microsecond

DATE uses the same form with a zero time of day. TIMESTAMP values are packed in UTC: an
aware ``datetime`` is converted to UTC first, a naive one is taken to be UTC already.

Zero dates: MySQL's ``0000-00-00 00:00:00`` packs to 0 and has no ``datetime``. Like JDBC's
``zeroDateTimeBehavior=convertToNull`` (what Spark users of TiDB get), ``unpack_datetime(0)``
and ``unpack_date(0)`` return ``None``, i.e. the value reads as NULL. Any other date that
Python cannot hold (a zero month or day with a non-zero year such as ``2020-00-00``, or
``2021-02-30``) raises ``BadTimeError`` naming the packed value, never a shifted date.

TIME (``types.Duration``) is stored as signed nanoseconds; MySQL limits it to
``±838:59:59.999999``.
"""
from __future__ import annotations

import datetime as _dt

from pyspark_theflash.codec.errors import BadTimeError

ZERO_PACKED = 0
MAX_DURATION_NS = ((838 * 3600 + 59 * 60 + 59) * 1_000_000 + 999_999) * 1000
_US = _dt.timedelta(microseconds=1)


def pack_time_fields(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, microsecond: int = 0
) -> int:
    """Packs raw fields (also invalid or zero dates, which TiDB can store) into the uint64."""
    limits = (
        ("year", year, 9999),
        ("month", month, 12),
        ("day", day, 31),
        ("hour", hour, 23),
        ("minute", minute, 59),
        ("second", second, 59),
        ("microsecond", microsecond, 999_999),
    )
    for name, v, hi in limits:
        if not 0 <= v <= hi:
            raise BadTimeError(f"{name} {v} is outside [0, {hi}]; cannot pack a MySQL time")
    ymd = (year * 13 + month) << 5 | day
    hms = hour << 12 | minute << 6 | second
    return ((ymd << 17 | hms) << 24) | microsecond


def unpack_time_fields(packed: int) -> tuple[int, int, int, int, int, int, int]:
    """(year, month, day, hour, minute, second, microsecond) of a packed uint64, unchecked."""
    if not 0 <= packed < 1 << 64:
        raise BadTimeError(f"packed time {packed} is not a uint64")
    microsecond = packed & 0xFFFFFF
    ymdhms = packed >> 24
    hms = ymdhms & ((1 << 17) - 1)
    ymd = ymdhms >> 17
    day = ymd & 0x1F
    ym = ymd >> 5
    year, month = divmod(ym, 13)
    return year, month, day, hms >> 12, (hms >> 6) & 0x3F, hms & 0x3F, microsecond


def pack_datetime(value: _dt.datetime | _dt.date) -> int:
    """Packs a DATETIME/TIMESTAMP (aware values are converted to UTC) or a DATE."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(_dt.timezone.utc)
        return pack_time_fields(
            value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond
        )
    if isinstance(value, _dt.date):
        return pack_time_fields(value.year, value.month, value.day)
    raise BadTimeError(f"cannot pack {type(value).__name__} {value!r}: expected datetime.datetime or datetime.date")


def unpack_datetime(packed: int) -> _dt.datetime | None:
    """The naive ``datetime`` of a packed uint64; ``None`` for the zero date (see module doc)."""
    if packed == ZERO_PACKED:
        return None
    fields = unpack_time_fields(packed)
    try:
        return _dt.datetime(*fields)
    except ValueError as e:
        y, mo, d, h, mi, s, us = fields
        raise BadTimeError(
            f"packed time {packed} is {y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}.{us:06d}, "
            f"which is not a valid date/time ({e}); TiDB stores it only with a relaxed sql_mode"
        ) from None


def pack_date(value: _dt.date) -> int:
    """Packs a DATE (a ``datetime`` is cut to its date)."""
    if isinstance(value, _dt.datetime):
        value = value.date()
    return pack_datetime(value)


def unpack_date(packed: int) -> _dt.date | None:
    """The ``date`` of a packed DATE; ``None`` for the zero date; a time of day is an error."""
    dt = unpack_datetime(packed)
    if dt is None:
        return None
    if dt.time() != _dt.time():
        raise BadTimeError(f"packed DATE {packed} carries a time of day {dt.time()}; it is a DATETIME")
    return dt.date()


def duration_to_ns(value: _dt.timedelta) -> int:
    """TIME as TiDB stores it: signed nanoseconds of a ``timedelta`` within ±838:59:59.999999."""
    ns = (value // _US) * 1000
    if abs(ns) > MAX_DURATION_NS:
        raise BadTimeError(f"TIME {value} is outside MySQL's range ±838:59:59.999999")
    return ns


def ns_to_duration(ns: int) -> _dt.timedelta:
    """The ``timedelta`` of a TIME in nanoseconds; sub-microsecond values are an error (MySQL's
    TIME has at most 6 fractional digits, and ``timedelta`` cannot hold nanoseconds)."""
    if ns % 1000:
        raise BadTimeError(f"TIME of {ns} ns is not a whole number of microseconds")
    return _dt.timedelta(microseconds=ns // 1000)
