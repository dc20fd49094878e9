"""Choosing the one snapshot ts of a query and checking that it can be served.

The ts comes from, in order: the ``snapshot_ts`` option, the ``as_of`` option, the session's
pinned ts (``theflash.snapshot_ts``), else a fresh ts from the upstream TSO. A ts below the
GC safe point (old versions may be gone) or ahead of the TSO (commits at or below it may
still come) is refused with the readable range in the message.
"""
from __future__ import annotations

import datetime as _dt
from typing import Protocol

from pyspark_theflash.codec.tso import datetime_to_ts, physical_ms, ts_to_datetime
from pyspark_theflash.scan.errors import ScanOptionError, SnapshotTsOutOfRangeError
from pyspark_theflash.scan.options import ScanOptions


class TimestampSource(Protocol):
    def get_ts(self) -> int: ...


def describe_ts(ts: int) -> str:
    """A TSO as a readable UTC time (``2026-11-21 06:00:00.123 UTC``)."""
    if ts <= 0:
        return "the beginning"
    try:
        return ts_to_datetime(ts).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    except (OverflowError, ValueError):
        return f"physical {physical_ms(ts)} ms"


def as_of_to_ts(text: str) -> int:
    """The TSO of a point in time: ISO-8601 (naive = UTC) or unix seconds. The logical part is
    the largest, so every commit stamped within that millisecond is visible."""
    raw = str(text).strip()
    try:
        seconds = float(raw)
    except ValueError:
        seconds = None
    if seconds is not None:
        moment = _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc)
    else:
        try:
            moment = _dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise ScanOptionError(
                f"option as_of={text!r} is not a time: write ISO-8601 like '2026-11-21 06:00:00' "
                "(UTC unless an offset such as +08:00 is given) or unix seconds"
            ) from None
    return datetime_to_ts(moment, (1 << 18) - 1)


def requested_ts(options: ScanOptions) -> int | None:
    """The ts the user asked for, or None for "the latest"."""
    if options.snapshot_ts is not None:
        return options.snapshot_ts
    if options.as_of is not None:
        return as_of_to_ts(options.as_of)
    return options.session_snapshot_ts


def check_snapshot_ts(ts: int, safe_point: int, now_ts: int) -> None:
    """Refuse a ts outside [safe_point, now_ts]."""
    if ts < safe_point:
        raise SnapshotTsOutOfRangeError(ts, safe_point, now_ts, "below the GC safe point (older versions may be gone)")
    if ts > now_ts:
        raise SnapshotTsOutOfRangeError(ts, safe_point, now_ts, "in the future (ahead of the upstream TSO)")
