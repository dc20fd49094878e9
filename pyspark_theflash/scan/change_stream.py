"""Change streams: the offsets a micro-batch engine moves a stream of one table's changes
through, and the read lease that keeps GC off what the stream has not read yet. Spark's
``MicroBatchStream`` in the connector jar (through the service's ``/v1/change-streams``) and
PySpark's ``DataSourceStreamReader`` (``spark/stream.py``) are both this module.

An offset is a ts every region of the table has resolved in the store (no commit at or below
it is still to come), so a batch never misses a late commit. The first offset, ``starting_ts``
(a TSO, ``latest`` or ``earliest``), carries ``snapshot: true``: its batch is the table's rows
at that ts, as inserts (a change read from 0, ``scan.options``); every later batch (a, b] is the
change read of the versions with a < commit_ts <= b. ``max_rows_per_trigger`` cuts a batch at a
commit ts so that it holds about that many changes (never less than one commit's).

Leases. After each committed batch the stream holds a read lease at its end ts (holder
``theflash change stream <table>``), renewed on every offset request, so the store's GC never
passes what the next batch reads. The lease lives in the store's latch with ``lease_ttl``: a
stream restarted within it finds its offset's versions there (its lease is adopted); one
restarted later may find them collected, and then fails with :class:`StreamExpiredError`
instead of skipping changes.

The store. A stream reads its store through one open ``store.Store`` for its life: the one it
is handed (the service's engine's: its opener's), or the directory it is given, opened
read-only on first use and closed by :meth:`ChangeStream.close` (``stop`` closes it too).
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, SupportsIndex, SupportsInt

from pyspark_theflash.scan.errors import (
    ChangesBelowSafePointError,
    ScanOptionError,
    StreamExpiredError,
    StreamSchemaChangedError,
)
from pyspark_theflash.scan.options import parse_duration_s, parse_positive_int
from pyspark_theflash.scan.snapshot import TableResolved, stream_start_ts, table_resolved
from pyspark_theflash.store.errors import UnknownTableNameError

if TYPE_CHECKING:
    from pyspark_theflash.latch import Latch
    from pyspark_theflash.store import Store

LEASE_HOLDER = "theflash change stream {table}"
DEFAULT_STREAM_LEASE_TTL_S = 600.0
# options a stream takes besides the read options (scan.options)
STREAM_OPTIONS = ("starting_ts", "max_rows_per_trigger", "lease_ttl", "stream_id")


@dataclass(frozen=True)
class StreamOffset:
    """Read through ``ts`` (every change with commit_ts <= ts), or with ``snapshot`` the rows at
    ``ts`` are still to read (the stream's first batch)."""

    ts: int
    snapshot: bool = False

    def to_json(self) -> str:
        return json.dumps({"ts": self.ts, "snapshot": self.snapshot}, sort_keys=True)

    def to_dict(self) -> dict[str, object]:
        return {"ts": self.ts, "snapshot": self.snapshot}

    @staticmethod
    def from_dict(data: Mapping[str, object]) -> "StreamOffset":
        try:
            given = data["ts"]
            if not isinstance(given, (str, bytes, bytearray, SupportsInt, SupportsIndex)):
                raise TypeError(f"ts {given!r}")  # what int() refuses
            ts = int(given)
        except (KeyError, TypeError, ValueError):
            raise ScanOptionError(f"a change stream offset is {{\"ts\": <TSO>, \"snapshot\": bool}}, not {data!r}") from None
        return StreamOffset(ts, bool(data.get("snapshot", False)))

    @staticmethod
    def from_json(text: str) -> "StreamOffset":
        return StreamOffset.from_dict(json.loads(text))


def tso_physical_ms(ts: int) -> int:
    return int(ts) >> 18


class ChangeStream:
    """One stream of ``table``'s changes in ``store`` (read ``options``: upstream, latch, ...
    plus ``starting_ts``, ``max_rows_per_trigger``, ``lease_ttl``). ``store``: an open ``Store``
    (read-only; its opener's to close), or its directory, opened read-only when the stream first
    reads it and closed by ``close()`` / ``stop()``."""

    def __init__(self, store: str | os.PathLike[str] | Store, table: str,
                 options: Mapping[str, object] | None = None) -> None:
        from pyspark_theflash.scan.context import store_root

        raw = {str(k).lower(): str(v) for k, v in dict(options or {}).items() if v is not None}
        self.store = store_root(store)  # the directory, as the stream's reads and errors name it
        # the store handed in (its opener's), else the one this stream opens on first use (its own)
        self._given: Store | None = None if isinstance(store, (str, os.PathLike)) else store
        self._opened: Store | None = None
        self._open_mu = threading.Lock()
        self.table = table
        self.starting = raw.pop("starting_ts", "latest").strip().lower()
        if self.starting not in ("latest", "earliest") and not self.starting.isdigit():
            raise ScanOptionError(f"option starting_ts={self.starting!r}: use a TSO number, latest or earliest")
        self.max_rows = (parse_positive_int("max_rows_per_trigger", raw.pop("max_rows_per_trigger"))
                         if "max_rows_per_trigger" in raw else None)
        self.lease_ttl_s = (parse_duration_s("lease_ttl", raw["lease_ttl"]) if "lease_ttl" in raw
                            else DEFAULT_STREAM_LEASE_TTL_S)
        self.wait_s = (parse_duration_s("region_wait_timeout", raw["region_wait_timeout"])
                       if "region_wait_timeout" in raw else 30.0)
        raw["lease_ttl"] = str(self.lease_ttl_s)
        for name in ("store", "table", "path", "snapshot_ts", "as_of", "changes_from", "changes"):
            raw.pop(name, None)
        self.read_options = raw
        # a stream id that outlives restarts (the jar's: a digest of the checkpoint location) makes
        # the lease holder the stream's own: every older lease of it is released at each commit
        self.stream_id = raw.pop("stream_id", "").strip()
        # the column names of the schema the engine fixed for this stream (the jar and the Python
        # reader send them, a JSON list): a column the table gains later is not in it
        self.stream_columns = self._parse_columns(raw.pop("stream_columns", None))
        self.holder = LEASE_HOLDER.format(table=table) + (f" {self.stream_id}" if self.stream_id else "")
        self._lease_id: int | None = None
        self._lease_ts: int | None = None
        self._latch: Latch | None = None
        self.latest_seen: StreamOffset | None = None
        self.resolved_seen = 0

    @staticmethod
    def _parse_columns(text: str | None) -> frozenset[str] | None:
        if text is None:
            return None
        try:
            names = json.loads(text)
        except ValueError:
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ScanOptionError(f"option stream_columns is a JSON list of column names, not {text!r}")
        return frozenset(n.lower() for n in names)

    # --- the store's view of the table ----------------------------------------------------------
    def opened_store(self) -> Store:
        """The stream's open store: the one handed in, else the directory opened read-only once,
        on first use, and kept until ``close()``. A writer's store handed in is not read through
        (``scan.context.opened_store`` says why): its directory is opened read-only instead."""
        if self._given is not None and self._given.readonly:
            return self._given
        with self._open_mu:
            if self._opened is None:
                from pyspark_theflash.scan.context import open_store

                self._opened = open_store(self.store)
            return self._opened

    def __getstate__(self) -> dict[str, object]:
        """A copy (PySpark pickles its stream reader, this stream with it, to other workers)
        reads the store by its directory and connects its latch, there on first use: an open
        Store, a latch client and a lock stay in their process."""
        state = dict(self.__dict__)
        state.update(_given=None, _opened=None, _open_mu=None, _latch=None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._open_mu = threading.Lock()

    def close(self) -> None:
        """Close the store this stream opened (a store handed in stays open: its opener's)."""
        with self._open_mu:
            opened, self._opened = self._opened, None
        if opened is not None:
            opened.close()

    def newest_commit_ts(self) -> int:
        """The newest commit ts the store holds for the table (its parts' statistics): a stream
        whose offset is there or past it has nothing new, and stays where it is."""
        from pyspark_theflash.scan.schema_at import lookup_table

        with self.opened_store().snapshot() as view:
            info = lookup_table(view, self.table)
            if info is None:
                return 0
            return max((int(p.max_commit_ts or 0) for p in view.parts(int(info.id))), default=0)

    def _table_state(self) -> TableResolved:
        return table_resolved(self.opened_store(), self.store, self.table, self.wait_s)

    def resolved_ts(self) -> int:
        return self._table_state().ts

    # --- offsets ------------------------------------------------------------------------------
    def initial_offset(self) -> StreamOffset:
        """The first offset: the rows at ``starting_ts`` are its batch (``scan.snapshot``
        chooses that ts, as every snapshot ts of a read)."""
        ts = stream_start_ts(self.opened_store(), self.store, self.table, self.starting, self.wait_s)
        self.hold(ts)
        return StreamOffset(ts, snapshot=True)

    def latest_offset(self, start: StreamOffset, max_rows: int | None = None) -> StreamOffset:
        """The end of the next batch after ``start``: the snapshot's own batch, or the newest
        resolved ts, cut at a commit ts to about ``max_rows`` changes (None: no cut; the engine
        passes its read limit, which is ``max_rows_per_trigger`` unless it asks for all)."""
        self.hold(start.ts)  # a restarted stream adopts (or re-takes) the lease at its offset
        if start.snapshot:
            end = StreamOffset(start.ts)
        else:
            # a TRUNCATE past the offset is refused as soon as the store holds it, even before
            # the new table has rows or its regions have resolved past it: the old rows' deletes
            # are changes no batch of the new table id would carry
            self._refuse_new_table(start.ts)
            resolved = self._table_state().ts
            self.resolved_seen = resolved
            if resolved > start.ts:
                resolved = self._within_the_streams_columns(start.ts, resolved)
            # nothing committed past the offset: the same offset (Spark runs no batch); else the
            # newest resolved ts (every commit at or below it is in the store)
            idle = self.newest_commit_ts() <= start.ts
            end = start if resolved <= start.ts or idle else StreamOffset(resolved)
            if max_rows is not None and end.ts > start.ts:
                end = StreamOffset(self._cut(start.ts, end.ts, max_rows))
        self.latest_seen = end
        return end

    def _refuse_new_table(self, from_ts: int) -> None:
        """A TRUNCATE or DROP + CREATE after ``from_ts`` gives the name a new table id, whose
        rows start from nothing: the old rows' deletes are no change of the new table, so a
        stream across it would miss them. It fails instead, naming when.

        Decided by the schema changes the store holds, not by a resolved ts: the new table's
        regions may still be settling (split off at the TRUNCATE), and a stream waiting for
        them would otherwise answer "nothing new" past a change it can never cross."""
        from pyspark_theflash.scan.schema_at import lookup_table

        with self.opened_store().snapshot() as view:
            try:
                before = view.table_at(self.table, from_ts)
            except UnknownTableNameError:
                return  # a name the store cannot place at the offset: the change read says what is wrong
            now = lookup_table(view, self.table)
        if now is not None and int(before.id) != int(now.id):
            raise StreamExpiredError(
                f"{self.table} is another table (id {now.id}, was {before.id}) since ts {from_ts}: it was truncated "
                "or dropped and created again; a change stream does not cross that (its old rows' deletes are no "
                "change of the new table): start a new stream from a snapshot")

    def _within_the_streams_columns(self, from_ts: int, to_ts: int) -> int:
        """The end of the batch (from_ts, to_ts], cut before the first schema change in it, so
        a batch's commits share one schema. Batches are read with the table's current schema
        (``batch_options``: a version from before a column was added reads its origin default,
        as TiDB reads such a row today), so the stream's columns must be the table's now: a
        batch is refused when the schema in force over it has a column the stream lacks and
        the table still has (the stream would drop its values), or when the stream has a column
        the table no longer has. A restarted query takes the table's columns now."""
        from pyspark_theflash.store.changes import CHANGE_COLUMNS

        if self.stream_columns is None:
            return to_ts
        with self.opened_store().snapshot() as view:
            try:
                current = view.table_at(self.table, to_ts)
            except UnknownTableNameError:
                return to_ts
            history = view.histories().get(int(current.id))
        if history is None:
            return to_ts
        changes = [ts for ts in history.commit_ts if from_ts + 1 < ts <= to_ts]
        era = history.at(from_ts + 1)
        live = {c.name.lower() for c in history.latest.columns}
        added = [c.name for c in era.columns if c.name.lower() not in self.stream_columns and c.name.lower() in live]
        dropped = sorted(self.stream_columns - live - {c.lower() for c in CHANGE_COLUMNS})
        if added or dropped:
            since = max((ts for ts in history.commit_ts if ts <= from_ts + 1), default=from_ts + 1)
            what = (f"has column(s) {', '.join(added)} since ts {since}, which this stream's schema lacks (the "
                    "stream would drop their values)" if added else
                    f"no longer has column(s) {', '.join(dropped)} of this stream's schema")
            raise StreamSchemaChangedError(
                f"{self.table} {what}: Spark fixes a stream's schema when the query starts; restart the query: it "
                f"resumes from its checkpoint (offset ts {from_ts}) with the table's columns now")
        return min(changes) - 1 if changes else to_ts

    def _cut(self, from_ts: int, to_ts: int, limit: int) -> int:
        """The highest commit ts c in (from_ts, to_ts] with at most ``limit`` changes in
        (from_ts, c] (the first commit's ts when that one alone holds more); to_ts when all fit."""
        import numpy as np
        import pyarrow.compute as pc

        from pyspark_theflash.scan.session import open_change_session, read_stream

        commit_ts = []
        with open_change_session(self.opened_store(), self.table, from_ts, to_ts, columns=["_commit_ts"],
                                 options=self.read_options) as s:
            for n in range(len(s.streams)):
                commit_ts += [b.column("_commit_ts") for b in read_stream(s, n)]
        if not commit_ts:
            return to_ts
        ts = np.sort(np.concatenate([np.asarray(pc.cast(c, "int64")) for c in commit_ts]))
        if len(ts) <= limit:
            return to_ts
        cut = int(ts[limit - 1])
        if limit < len(ts) and int(ts[limit]) == cut:  # the commit at the cut goes whole
            below = ts[ts < cut]
            cut = int(below[-1]) if len(below) else cut
        return cut

    def batch_options(self, start: StreamOffset, end: StreamOffset) -> dict[str, str] | None:
        """The read options of the batch (start, end] (None: an empty batch)."""
        if not start.snapshot and end.ts <= start.ts:
            return None
        # the table's current schema: a stream's columns are the table's now (see
        # _within_the_streams_columns), and a version from before a column was added reads its
        # origin default, as TiDB reads such a row today
        return {**self.read_options, "snapshot_ts": str(end.ts),
                "changes_from": "0" if start.snapshot else str(start.ts), "schema": "current"}

    def lag_ms(self, offset: StreamOffset | None = None, now_ms: float | None = None) -> float:
        """How far ``offset`` (default: the latest one handed out) is behind now, in ms."""
        offset = offset or self.latest_seen
        if offset is None:
            return 0.0
        # an idle stream is as far behind as the store's resolved ts, not its last commit
        ts = max(offset.ts, self.resolved_seen if self.newest_commit_ts() <= offset.ts else 0)
        return max(0.0, (time.time() * 1000 if now_ms is None else now_ms) - tso_physical_ms(ts))

    # --- the lease ------------------------------------------------------------------------------
    def _latch_handle(self) -> Latch:
        if self._latch is None:
            from pyspark_theflash.latch import connect

            self._latch = connect(self.store, self.read_options.get("latch") or None)
        return self._latch

    def hold(self, ts: int) -> int:
        """Hold the stream's lease at ``ts``: renew it when held there (by this object, or left by
        the stream before a restart), else take one and release the one held before. A ts
        below the store's safe point fails the stream (:class:`StreamExpiredError`)."""
        from pyspark_theflash.latch import LeaseNotFoundError, LeaseRefusedError

        latch = self._latch_handle()
        if self._lease_id is not None and self._lease_ts == ts:
            try:
                latch.renew_lease(self._lease_id, self.lease_ttl_s, late_ok=True)
                return self._lease_id
            except LeaseNotFoundError:
                self._lease_id = None
        previous = self._lease_id
        adopted = next((lease for lease in latch.leases() if lease.holder == self.holder and int(lease.ts) == ts
                        and lease.lease_id != previous), None)
        try:
            if adopted is not None:
                latch.renew_lease(adopted.lease_id, self.lease_ttl_s, late_ok=True)
                lease_id = int(adopted.lease_id)
            else:
                lease_id = int(latch.acquire_lease(ts, self.lease_ttl_s, self.holder).lease_id)
        except (LeaseRefusedError, LeaseNotFoundError) as exc:
            safe_point = self._table_state().safe_point
            raise StreamExpiredError(
                f"the change stream of {self.table} is at ts {ts}, below the store's GC safe point {safe_point}: its "
                f"read lease lapsed (the stream was stopped for longer than lease_ttl={self.lease_ttl_s:g}s) and GC "
                "may have collected changes it has not read; start a new stream (a new checkpoint) from a snapshot"
            ) from exc
        self._lease_id, self._lease_ts = lease_id, ts
        older = {previous} if previous is not None else set()
        if self.stream_id:
            older |= {int(lease.lease_id) for lease in latch.leases()
                      if lease.holder == self.holder and int(lease.ts) < ts}
        for old in older - {lease_id}:
            try:
                latch.release_lease(old)
            except LeaseNotFoundError:
                pass
        return lease_id

    def commit(self, end: StreamOffset) -> None:
        """Spark committed the batch ending at ``end``: hold the lease there."""
        self.hold(end.ts)

    def stop(self) -> None:
        """The lease stays (a restart within lease_ttl continues from it); it expires on its own.
        The store this stream opened is closed."""
        self._latch = None
        self.close()


def reraise_expired(exc: BaseException, table: str) -> None:
    """A change read refused below the safe point, as the stream's failure."""
    if isinstance(exc, ChangesBelowSafePointError):
        raise StreamExpiredError(f"the change stream of {table}: {exc}; its read lease lapsed (the stream was stopped "
                                 "for longer than lease_ttl): start a new stream") from exc


__all__ = ["ChangeStream", "StreamExpiredError", "StreamOffset", "tso_physical_ms"]
