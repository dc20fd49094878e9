"""Errors of the scan planner. Each names the table, ts, regions or locks involved and says
what the user can do about it."""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Callable, Iterator, Mapping

from pyspark_theflash.codec.tso import describe_ts, physical_ms
from pyspark_theflash.errors import TheFlashError

# How a front end writes a read option in a remedy: (option, value or None) -> its spelling, or
# None when that front end has no such option (the remedy's clause is left out).
OptionSpelling = Callable[[str, "str | None"], "str | None"]


def as_read_option(name: str, value: str | None = None) -> str | None:
    """The Python source's, the jar's and the service's spelling: ``snapshot=resolved``."""
    return name if value is None else f"{name}={value}"


def as_flags(flags: Mapping[str, str]) -> OptionSpelling:
    """A command line's spelling, ``flags`` from option to flag: ``--snapshot resolved``."""
    def spell(name: str, value: str | None = None) -> str | None:
        flag = flags.get(name)
        return None if flag is None else flag if value is None else f"{flag} {value}"
    return spell


# How the front end running this read writes its options, for what the read says while it runs
# (the learner's wait notice): the read options' spelling unless a command line says otherwise
# (``spelled``). A context variable: a command's reads plan on the thread that runs it.
_SPELLING: ContextVar[OptionSpelling] = ContextVar("theflash_option_spelling", default=as_read_option)


@contextlib.contextmanager
def spelled(spelling: OptionSpelling) -> Iterator[None]:
    """Within the block, what a read says names its options as ``spelling`` writes them."""
    token = _SPELLING.set(spelling)
    try:
        yield
    finally:
        _SPELLING.reset(token)


def spell_option(name: str) -> str:
    """``name`` as the front end running this read writes it (the read option's name if it has no such flag)."""
    return _SPELLING.get()(name, None) or name


class ScanError(TheFlashError):
    """Base class of the scan planner's errors."""

    def phrased(self, spell: OptionSpelling) -> str:
        """The message with the read options of its remedy written as ``spell`` writes them
        (a command line's flags); the message is the read options' phrasing."""
        return str(self)


class ScanOptionError(ScanError):
    """A read option is missing or malformed (store, table, snapshot_ts, as_of, ...)."""


class SnapshotTsOutOfRangeError(ScanError):
    """The requested snapshot ts is below the GC safe point or ahead of the upstream TSO."""

    def __init__(self, ts: int, safe_point: int, now_ts: int, reason: str) -> None:
        self._what = (f"snapshot ts {ts} ({describe_ts(ts)}) is {reason}; readable snapshots are "
                      f"[{safe_point}, {now_ts}] ({describe_ts(safe_point)} .. {describe_ts(now_ts)})")
        super().__init__(self.phrased(as_read_option))
        self.ts = ts
        self.safe_point = safe_point
        self.now_ts = now_ts

    def phrased(self, spell: OptionSpelling) -> str:
        named = list(dict.fromkeys(n for n in (spell("snapshot_ts", None), spell("as_of", None)) if n))
        if not named:
            return f"{self._what}: read at a ts inside that range"
        return (f"{self._what}: pick a {' / '.join(named)} inside that range, or leave "
                f"{'both' if len(named) > 1 else 'it'} unset to read the latest data")


class ChangesBelowSafePointError(ScanError):
    """A change read whose range starts below the GC safe point: the versions it needs may be gone."""

    def __init__(self, table: str, from_ts: int, to_ts: int, safe_point: int, detail: str = "") -> None:
        super().__init__(
            f"changes of {table} in ({from_ts}, {to_ts}] ({describe_ts(from_ts)} .. {describe_ts(to_ts)}): the range "
            f"starts below the GC safe point {safe_point} ({describe_ts(safe_point)}), so versions it needs may "
            f"have been collected{f' ({detail})' if detail else ''}; start the range at or above {safe_point}, or "
            "read the snapshot at it and the changes after")
        self.table = table
        self.from_ts = from_ts
        self.to_ts = to_ts
        self.safe_point = safe_point


class UpstreamUnreachableError(ScanError):
    """No upstream address was given or recorded, or the upstream did not answer."""


class TableNotReplicatedError(ScanError):
    """The store has no schema for the table the user asked for."""


# A message names at most this many regions, then how many others there are.
REGIONS_SHOWN = 5


class RegionWaitTimeoutError(ScanError):
    """The learner read did not see every region reach its read index in time."""

    def __init__(self, table: str, ts: int, timeout_s: float, lagging: list[tuple[int, int, int]],
                 by_resolved_ts: bool = False, gap: bytes | None = None) -> None:
        if by_resolved_ts:  # a learner read through pd://: (region, its resolved ts, the read ts)
            where = f" from key {gap.hex()}" if gap is not None else ""
            shown = ", ".join(
                f"region {rid}: resolved ts {resolved} < {needed}" if rid else
                f"a key range of the table no region of the store holds yet{where}"
                for rid, resolved, needed in lagging[:REGIONS_SHOWN])
        else:
            shown = ", ".join(
                f"region {rid}: applied {applied} < needed {needed} (lag {needed - applied} entries)"
                if applied >= 0 else f"region {rid}: not in the store yet, needs index {needed}"
                for rid, applied, needed in lagging[:REGIONS_SHOWN]
            )
        more = f" and {len(lagging) - REGIONS_SHOWN} other region(s)" if len(lagging) > REGIONS_SHOWN else ""
        self._what = (f"reading {table} at ts {ts}: {len(lagging)} region(s) did not catch up within "
                      f"{timeout_s:g}s ({shown}{more})")
        super().__init__(self.phrased(as_read_option))
        self.table = table
        self.ts = ts
        self.lagging = lagging
        self.gap = gap  # PD-encoded key where the store's live regions stop covering the table

    def phrased(self, spell: OptionSpelling) -> str:
        wait = spell("region_wait_timeout", None)
        return (f"{self._what}. {f'Wait longer ({wait}), read' if wait else 'Read'} what the store already has "
                f"({spell('snapshot', 'resolved')}, or {spell('max_staleness', '5s')} to take it only while it is "
                "recent), or check the writer: is the writer running and keeping up (theflash writer status)?")


class UnresolvedRegionsError(ScanError):
    """A read from the store alone (its ts at or below the store's resolved ts when planning
    began) met regions whose resolved ts stayed below ts for the whole wait."""

    def __init__(self, table: str, ts: int, timeout_s: float, regions: list[tuple[int, int]]) -> None:
        shown = ", ".join(f"region {rid}: resolved up to {resolved}" for rid, resolved in regions[:REGIONS_SHOWN])
        more = f" and {len(regions) - REGIONS_SHOWN} other region(s)" if len(regions) > REGIONS_SHOWN else ""
        self._what = (f"reading {table} at ts {ts} from the store alone: {len(regions)} region(s) did not resolve "
                      f"ts within {timeout_s:g}s ({shown}{more})")
        super().__init__(self.phrased(as_read_option))
        self.table = table
        self.ts = ts
        self.regions = regions

    def phrased(self, spell: OptionSpelling) -> str:
        wait = spell("region_wait_timeout", None)
        return (f"{self._what}. {f'Wait longer ({wait}), read' if wait else 'Read'} an older ts "
                f"({spell('snapshot', 'resolved')} takes the newest the store has), or check the writer: is the "
                "writer running and keeping up (theflash writer status)?")


class MissingRegionsError(ScanError):
    """A read that needs no upstream (``snapshot=resolved``, or a ts at or below the store's
    resolved ts) found key ranges of the table that no region of the store holds: the writer
    never saw the regions there (or a split or merge it applies outlasted the read's wait), so
    the store cannot answer for them."""

    def __init__(self, table: str, store: str, gaps: list[str]) -> None:
        shown = "; ".join(gaps[:REGIONS_SHOWN])
        more = f"; and {len(gaps) - REGIONS_SHOWN} other range(s)" if len(gaps) > REGIONS_SHOWN else ""
        super().__init__(
            f"reading {table} from store {store} without the upstream: no region of the store holds {shown}{more}. "
            "The writer has not applied the regions there: start it if it is stopped (theflash writer run) and "
            "wait until `theflash writer status` shows them, or read with snapshot=fresh while the upstream is reachable"
        )
        self.table = table
        self.gaps = gaps


class StalenessBoundExceededError(ScanError):
    """``max_staleness``: the store served neither a fresh ts in time nor a resolved ts within the bound."""

    def __init__(self, table: str, bound_s: float, resolved_ts: int, now_ts: int, why: str) -> None:
        from pyspark_theflash.codec.tso import physical_ms
        age_s = max(0, physical_ms(now_ts) - physical_ms(resolved_ts)) / 1000.0 if resolved_ts > 0 else float("inf")
        self._facts = (f"{why}, and the newest ts the store has resolved, {resolved_ts} "
                       f"({describe_ts(resolved_ts)}), is {age_s:.1f}s old")
        self.table = table
        self.bound_s = bound_s
        self.resolved_ts = resolved_ts
        self.age_s = age_s
        super().__init__(self.phrased(as_read_option))

    def phrased(self, spell: OptionSpelling) -> str:
        return (f"reading {self.table} with {spell('max_staleness', f'{self.bound_s:g}s')}: {self._facts}. Wait for "
                f"the writer to catch up (theflash writer status), raise {spell('max_staleness', None)}, or read "
                f"{spell('snapshot', 'resolved')} (any age)")


class LockResolveTimeoutError(ScanError):
    """A lock met by the read could not be resolved in time (its transaction stays alive)."""


class SnapshotExpiredError(ScanError):
    """A partition was read after its lease expired and the data at its ts is gone."""


class SchemaNotCaughtUpError(ScanError):
    """A read with ``schema=as_of`` needs every schema change at or below its ts, and the
    store had not applied the binlog that far in time."""

    def __init__(self, table: str, ts: int, seen_until: int, timeout_s: float) -> None:
        self._what = (f"reading {table} with schema=as_of at ts {ts}: within {timeout_s:g}s the store saw the binlog's "
                      f"schema changes only up to ts {seen_until} (no region's resolved ts reached {ts}); is the writer "
                      "running and keeping up (theflash writer status)?")
        super().__init__(self.phrased(as_read_option))
        self.table = table
        self.ts = ts
        self.seen_until = seen_until

    def phrased(self, spell: OptionSpelling) -> str:
        remedies = [f"Raise {wait}" for wait in [spell("region_wait_timeout", None)] if wait]
        remedies += [f"read with {current} (today's table at ts)" for current in [spell("schema", "current")] if current]
        return self._what + (f" {', or '.join(remedies)}" if remedies else "")


class TableNotAtTsError(TableNotReplicatedError):
    """A read with ``schema=as_of`` at a ts when no table had the name (``schema_at``)."""

    def __init__(self, what: str, today_table: bool = True) -> None:
        self._what = what
        self._today_table = today_table  # a table has the name now: schema=current reads it
        super().__init__(self.phrased(as_read_option))

    def phrased(self, spell: OptionSpelling) -> str:
        current = spell("schema", "current") if self._today_table else None
        return self._what + (f", or read with {current} to read today's table at ts" if current else "")


class StreamExpiredError(ScanError):
    """A change stream's offset is below the store's GC safe point: its lease lapsed (the stream
    was stopped longer than lease_ttl) and GC collected versions it had not read."""


class StreamSchemaChangedError(ScanError):
    """The table gained a column the running stream's schema lacks (Spark fixes a stream's
    schema when the query starts): restarting the query resumes from its checkpoint with it."""
