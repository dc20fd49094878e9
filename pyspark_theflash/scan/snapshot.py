"""Choosing the one snapshot ts of a query and checking that it can be served.

The ts comes from, in order: the ``snapshot_ts`` option, the ``as_of`` option, the session's
pinned ts (``theflash.snapshot_ts``), else a fresh ts from the upstream TSO. A ts below the
GC safe point (old versions may be gone) or ahead of the TSO (commits at or below it may
still come) is refused with the readable range in the message.
"""
from __future__ import annotations

import datetime as _dt
import math
import time
from typing import Any, Protocol

from pyspark_theflash.codec.errors import ValueOutOfRangeError
from pyspark_theflash.codec.tso import datetime_to_ts, physical_ms, ts_to_datetime
from pyspark_theflash.scan.errors import ScanOptionError, SnapshotTsOutOfRangeError
from pyspark_theflash.scan.options import ScanOptions


class TimestampSource(Protocol):
    def get_ts(self) -> int: ...


NOT_A_TIME = ("is not a time: write ISO-8601 like '2026-11-21 06:00:00' (UTC unless an offset such as +08:00 is "
              "given) or unix seconds")
OUTSIDE_TSO = "is outside the times a TSO holds: from 1970-01-01 00:00:00 to 4199-11-24 01:22:57.663 UTC"


def as_of_to_ts(text: str, name: str = "as_of") -> int:
    """The TSO of a point in time: unix seconds (what ``float()`` reads), else ISO-8601 as
    ``datetime.fromisoformat`` reads it (naive = UTC). The logical part is the largest, so every
    commit stamped within that millisecond is visible. A malformed time, or one no TSO holds, is
    refused under ``name``, the option's name as the user gave it. The connector jar reads the
    same (jvm-shim AsOfTime.java; tests/test_jvm_source.py runs both over the same texts)."""
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


def query_snapshot_ts(store: str, tables: list[str], options: dict[str, str] | None = None, *,
                      upstream: Any = None, latch: Any = None) -> dict[str, Any]:
    """The one snapshot ts of a query over ``tables`` of ``store`` (the JVM connector asks
    once per Spark query, ``POST /v1/snapshots``), chosen as ``options`` say:

    * ``snapshot=fresh`` (default): a fresh ts from the upstream TSO; each table's read session
      then catches up to it and resolves locks.
    * ``snapshot=resolved``: the newest ts every region of every table has resolved in the
      store (the least of the tables' resolved ts), with no upstream call.
    * ``max_staleness``: a fresh ts if every table catches up to it within the bound (or
      ``region_wait_timeout`` if shorter), else the resolved ts if it is no older than the
      bound, else ``StalenessBoundExceededError``.

    Returns ``{"ts", "snapshot": "fresh" | "resolved", "tables"}``."""
    from dataclasses import replace

    from pyspark_theflash.codec.tso import compose_ts
    from pyspark_theflash.scan.errors import (
        MissingRegionsError,
        RegionWaitTimeoutError,
        ScanError,
        SchemaNotCaughtUpError,
        StalenessBoundExceededError,
        TableNotReplicatedError,
        UpstreamUnreachableError,
    )
    from pyspark_theflash.scan.planner import (
        _unreachable,
        connect_upstream,
        lookup_table,
        open_store,
        plan,
        upstream_address,
    )
    from pyspark_theflash.scan.resolved import settled_resolved_ts, writer_live_on

    if not tables:
        raise ScanOptionError("a query snapshot needs the tables the query reads (field tables: [\"db.table\", ...])")
    base = {k: v for k, v in dict(options or {}).items() if v is not None}
    opts = [ScanOptions.from_mapping({**base, "store": store, "table": t}) for t in tables]
    first = opts[0]
    if requested_ts(first) is not None:
        raise ScanOptionError("a query snapshot is chosen for reads that name no ts: leave snapshot_ts / as_of out")

    from pyspark_theflash.store.errors import did_you_mean

    def resolved_now(wait_s: float) -> tuple[int, list[Any]]:
        with open_store(store) as opened:
            found = []
            for o in opts:
                with opened.snapshot() as view:
                    info = lookup_table(view, o.table)
                    hint = did_you_mean(o.table, [f"{t.db}.{t.name}" for t in view.tables()]) if info is None else ""
                if info is None:
                    raise TableNotReplicatedError(f"store {store} has no table {o.table}{hint}: the store alone cannot "
                                                  "serve it (is the writer replicating it? theflash writer --tables ...)")
                found.append(settled_resolved_ts(opened.snapshot, info, o.table, wait_s,
                                                  writer_live=writer_live_on(store, o.latch)))
        return min(r.ts for r in found), found

    def resolved_answer() -> dict[str, Any]:
        ts, found = resolved_now(first.region_wait_timeout_s)
        for r in found:
            if r.gaps:
                raise MissingRegionsError(r.table, store, list(r.gaps))
            if r.ts <= 0:
                raise ScanError(f"reading {r.table} with snapshot=resolved: the store has resolved no ts over it yet; "
                                "wait for the writer (theflash writer status), or read snapshot=fresh")
        return {"ts": ts, "snapshot": "resolved", "tables": list(tables)}

    if first.snapshot == "resolved":
        return resolved_answer()
    own_upstream = upstream is None
    now_ts = 0
    why = ""
    try:
        if upstream is None:
            with open_store(store) as opened, opened.snapshot() as view:
                address = upstream_address(first, view)
            upstream = connect_upstream(first, address)
        try:
            now_ts = int(upstream.get_ts())
        except Exception as exc:
            if first.max_staleness_s is None:
                raise UpstreamUnreachableError(f"choosing the snapshot of a query over {', '.join(tables)}: the "
                                               f"upstream did not answer: {exc}") from exc
            why = f"the upstream cannot give a fresh ts ({exc})"
        if now_ts and first.max_staleness_s is None:
            return {"ts": now_ts, "snapshot": "fresh", "tables": list(tables)}
        if now_ts:
            bound = float(first.max_staleness_s or 0.0)
            deadline = time.monotonic() + min(bound, first.region_wait_timeout_s)
            try:
                for o in opts:
                    # the learner read of each table at the fresh ts, within what is left of the wait
                    left = max(0.001, deadline - time.monotonic())
                    checked = replace(o, snapshot_ts=now_ts, max_staleness_s=None, region_wait_timeout_s=left,
                                      isolation="RC")
                    plan(store, options=checked, upstream=upstream, latch=latch).close()
                return {"ts": now_ts, "snapshot": "fresh", "tables": list(tables)}
            except RegionWaitTimeoutError as exc:
                why = (f"{exc.table} did not catch up to a fresh ts within {min(bound, first.region_wait_timeout_s):g}s "
                       f"({len(exc.lagging)} region(s) behind)")
            except SchemaNotCaughtUpError as exc:  # schema=as_of: the schema changes up to the fresh ts are not in
                why = (f"{exc.table} did not catch up to a fresh ts within {min(bound, first.region_wait_timeout_s):g}s "
                       "(its schema changes up to it are not in the store yet)")
            except UpstreamUnreachableError as exc:
                why = f"the upstream cannot give a fresh ts ({exc})"
            except Exception as exc:
                if not _unreachable(exc):
                    raise
                why = f"the upstream cannot give a fresh ts ({exc})"
    except UpstreamUnreachableError as exc:
        if first.max_staleness_s is None:
            raise
        why = f"the upstream cannot give a fresh ts ({exc})"
    finally:
        if own_upstream and upstream is not None and hasattr(upstream, "close"):
            upstream.close()
    bound = float(first.max_staleness_s or 0.0)
    if not now_ts:
        now_ts = compose_ts(int(time.time() * 1000), 0)  # no TSO: this machine's clock says how old
    ts, found = resolved_now(min(1.0, first.region_wait_timeout_s))
    servable = all(r.servable for r in found)
    if servable and physical_ms(now_ts) - physical_ms(ts) <= bound * 1000:
        return {"ts": ts, "snapshot": "resolved", "tables": list(tables)}
    gaps = [g for r in found for g in r.gaps]
    if gaps:
        why += f"; no region of the store holds {gaps[0]}"
    raise StalenessBoundExceededError(", ".join(tables), bound, ts, now_ts, why)
