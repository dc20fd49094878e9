"""A point in time as a TSO: the ``as_of`` option (and ``timestampAsOf``, ``startingTimestamp``,
``endingTimestamp``), read as the connector jar reads it (jvm-shim AsOfTime.java)."""
from __future__ import annotations

import datetime as _dt
import math

from pyspark_theflash.codec.errors import ValueOutOfRangeError
from pyspark_theflash.codec.tso import datetime_to_ts
from pyspark_theflash.scan.errors import ScanOptionError

NOT_A_TIME = ("is not a time: write ISO-8601 like '2026-11-21 06:00:00' (UTC unless an offset such as +08:00 is "
              "given) or unix seconds")
OUTSIDE_TSO = "is outside the times a TSO holds: from 1970-01-01 00:00:00 to 4199-11-24 01:22:57.663 UTC"


def as_of_to_ts(text: str, name: str = "as_of") -> int:
    """The TSO of a point in time: unix seconds (what ``float()`` reads), else ISO-8601 as
    ``datetime.fromisoformat`` reads it (naive = UTC). The logical part is the largest, so every
    commit stamped within that millisecond is visible. A malformed time, or one no TSO holds, is
    refused under ``name``, the option's name as the user gave it. The connector jar reads the
    same (jvm-shim AsOfTime.java; tests/spark/test_jvm_source.py runs both over the same texts)."""
    raw = str(text).strip()
    try:
        seconds = float(raw)
    except ValueError:
        seconds = None
    if seconds is not None:
        if not math.isfinite(seconds):
            raise ScanOptionError(f"option {name}={text!r} {NOT_A_TIME}")
        try:
            moment = _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc)
        except (OverflowError, ValueError, OSError):
            raise ScanOptionError(f"option {name}={text!r} {OUTSIDE_TSO}") from None
    else:
        try:
            moment = _dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise ScanOptionError(f"option {name}={text!r} {NOT_A_TIME}") from None
    try:
        return datetime_to_ts(moment, (1 << 18) - 1)
    except ValueOutOfRangeError:
        raise ScanOptionError(f"option {name}={text!r} {OUTSIDE_TSO}") from None
