"""TSO timestamps: ``physical_ms << 18 | logical`` (PD's timestamp oracle, TiKV ``TimeStamp``)."""
from __future__ import annotations

import datetime as _dt

from pyspark_theflash.codec.errors import ValueOutOfRangeError

LOGICAL_BITS = 18
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1
MAX_TS = (1 << 64) - 1
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def compose_ts(physical_ms: int, logical: int = 0) -> int:
    """The TSO of a physical time in Unix milliseconds and a logical counter below 2**18."""
    if not 0 <= logical <= LOGICAL_MASK:
        raise ValueOutOfRangeError(f"TSO logical part {logical} is outside [0, {LOGICAL_MASK}]")
    if physical_ms < 0 or physical_ms > MAX_TS >> LOGICAL_BITS:
        raise ValueOutOfRangeError(f"TSO physical part {physical_ms} ms is outside [0, {MAX_TS >> LOGICAL_BITS}]")
    return physical_ms << LOGICAL_BITS | logical


def physical_ms(ts: int) -> int:
    """Unix milliseconds of a TSO."""
    return ts >> LOGICAL_BITS


def logical(ts: int) -> int:
    """The logical counter of a TSO."""
    return ts & LOGICAL_MASK


def ts_to_datetime(ts: int) -> _dt.datetime:
    """The physical time of a TSO as an aware UTC ``datetime`` (millisecond precision)."""
    return _EPOCH + _dt.timedelta(milliseconds=physical_ms(ts))


def datetime_to_ts(value: _dt.datetime, logical_part: int = 0) -> int:
    """The TSO of a ``datetime`` (naive values are taken as UTC), truncated to milliseconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    return compose_ts((value - _EPOCH) // _dt.timedelta(milliseconds=1), logical_part)


def describe_ts(ts: int) -> str:
    """A TSO as a readable UTC time (``2026-11-21 06:00:00.123 UTC``); ``the beginning`` for 0."""
    if ts <= 0:
        return "the beginning"
    try:
        return ts_to_datetime(ts).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    except (OverflowError, ValueError):
        return f"physical {physical_ms(ts)} ms"
