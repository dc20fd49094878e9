"""The read options a user gives (``spark.read.format("theflash").option(...)``, SQL
``OPTIONS (...)``, or ``plan(..., options)``), parsed once into a typed value.

Every option, its default and its meaning is listed in ``OPTION_DOCS`` (the README's table
is generated from it), so the documentation and the parser cannot drift apart.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, TypeVar

from pyspark_theflash.scan.as_of import as_of_to_ts
from pyspark_theflash.scan.bearer_token import BearerToken
from pyspark_theflash.scan.errors import ScanOptionError
from pyspark_theflash.store.keyspace import Handle

# The session-level pin (``spark.conf.set("theflash.snapshot_ts", ts)``) travels to the
# planner as this option: Spark hands a Python data source its options only, never the
# session's conf, so the session helper copies the conf into the reader's options.
SESSION_SNAPSHOT_OPTION = "theflash.snapshot_ts"
# Spark users type Delta's and Iceberg's names for time travel: the same options.
OPTION_ALIASES = {"versionasof": "snapshot_ts", "timestampasof": "as_of"}
SNAPSHOT_MODES = ("fresh", "resolved")

HIDDEN_READABLE = ("_tidb_rowid", "_tidb_commit_ts")

DEFAULT_REGION_WAIT_TIMEOUT_S = 30.0
DEFAULT_LOCK_WAIT_TIMEOUT_S = 60.0
DEFAULT_LEASE_TTL_S = 120.0
DEFAULT_BATCH_ROWS = 65536
DEFAULT_PARTITION_TARGET_BYTES = 128 << 20  # Spark's spark.sql.files.maxPartitionBytes, Iceberg's split size
SCHEMA_MODES = ("current", "as_of")

OPTION_DOCS: list[tuple[str, str, str]] = [
    ("store", "(required)", "the store directory the writer fills"),
    ("table", "(or the load() path)", "`db.table` to read"),
    ("upstream", "address recorded in the store", "the TiDB cluster, `pd://HOST:PORT[,HOST:PORT...]` (TSO and GC from PD, lock status from TiKV, the learner read on resolved ts), or the mini cluster's private service `grpc://host:port`"),
    ("latch", "in-process on the store", "latch service address `grpc://host:port` (`theflash latch serve`)"),
    ("snapshot_ts", "a fresh ts from the upstream TSO", "read at this TSO timestamp"),
    ("as_of", "-", "read as of this time: ISO-8601 (`2026-11-21 06:00:00`, UTC unless an offset is given) or unix seconds; the forms taken (`+0800`, `20261121T06`, week dates, ...) are listed once in docs/reading.md (Times)"),
    ("versionAsOf", "-", "Delta's and Iceberg's name of `snapshot_ts`"),
    ("timestampAsOf", "-", "Delta's and Iceberg's name of `as_of`"),
    ("snapshot", "fresh", "without `snapshot_ts`/`as_of`: `fresh` reads at a fresh ts from the upstream TSO (learner read, lock resolution); `resolved` reads at the newest ts every region of the table has resolved in the store, with no call to the upstream (a stopped writer's store, a copy of one, a lagging writer)"),
    ("max_staleness", "none", "bounded staleness (`5s`): a fresh ts if the store catches up to it within the bound (or `region_wait_timeout`, if shorter), else the resolved ts if it is no older than the bound, else `StalenessBoundExceededError`"),
    ("isolation", "SI", "`SI`: resolve locks of transactions that may have committed at or below ts; `RC`: skip lock checks"),
    ("region_wait_timeout", "30s", "how long the learner read waits for lagging regions (`500ms`, `30s`, `2m`)"),
    ("lock_wait_timeout", "60s", "how long to back off on a live lock before failing"),
    ("lease_ttl", "120s", "read-lease TTL; renewed by the planner and by every partition read"),
    ("batch_rows", "65536", "at most this many rows per Arrow batch handed to Spark"),
    ("columns", "all", "comma list of columns to read (like a `.schema(...)` subset)"),
    ("hidden", "none", "comma list of hidden columns to add: `_tidb_rowid`, `_tidb_commit_ts`"),
    ("partition_target_bytes", "128MiB", "neighbouring small regions are grouped into one Spark partition up to this size (Spark's `maxPartitionBytes` and Iceberg's split size): a table of 10,000 regions is a few partitions sized by bytes, not 10,000 (the jar's `explain()` shows them: `ReadStreams: 3 over 10000 regions, sized by bytes`)"),
    ("min_partitions", "CPUs of the planning machine", "small tables still get this many partitions of about equal size (while regions last), as Spark's file sources do for its default parallelism"),
    ("schema", "as_of", "which table and schema a read at a past ts (`snapshot_ts`, `as_of`, a session pin, SQL `VERSION`/`TIMESTAMP AS OF`) uses: `as_of` (the table that had the name at ts, with the schema in force at ts, as TiDB's stale read: across TRUNCATE, DROP + CREATE and MODIFY COLUMN it returns the rows the table had; a name no table had at ts is refused, saying when the table was created) or `current` (the table that has the name now, with its current schema; columns added since read their origin default, dropped ones are gone); a read at the latest ts is the same either way; see docs/schema.md"),
    ("changes_from", "none", "a change read: every committed version with `changes_from` < commit_ts <= `snapshot_ts` (required with it), with `_change_type` (insert, update_preimage, update_postimage, delete), `_commit_ts`, `_commit_timestamp` and `_tidb_rowid` (docs/changes.md); refused below the GC safe point, and refused, naming the option, without `snapshot_ts` or beside `as_of`, `snapshot=resolved`, `max_staleness`, `hidden`, `starting_ts` or `max_rows_per_trigger`"),
    ("readChangeFeed", "false", "Delta's change data feed: `true` makes the read a change read whose range `startingVersion`/`startingTimestamp` (required) and `endingVersion`/`endingTimestamp` name, as Delta's; with `spark.read` `changes_from` = start - 1 and `snapshot_ts` = the end (without an end: the latest, a fresh ts at planning, or the session's pinned ts); with `spark.readStream` (no end) a stream with `starting_ts` = start - 1 (its first batch is the rows there, as inserts); refused beside `changes_from`, `snapshot_ts`/`versionAsOf`, `as_of`/`timestampAsOf` or `starting_ts`"),
    ("startingVersion", "-", "with `readChangeFeed`: the first commit TSO to read, inclusive (`changes_from` = startingVersion - 1)"),
    ("startingTimestamp", "-", "with `readChangeFeed`: the first time to read, inclusive, written as `as_of` is (`changes_from` = the first TSO of that millisecond - 1)"),
    ("endingVersion", "-", "with `readChangeFeed` and `spark.read`: the last commit TSO to read, inclusive (`snapshot_ts` = endingVersion)"),
    ("endingTimestamp", "-", "with `readChangeFeed` and `spark.read`: the last time to read, inclusive, written as `as_of` is (`snapshot_ts` = the last TSO of that millisecond)"),
    ("changes", "all", "with `changes_from` (refused without it): `all` (every version) or `net` (one change per row, from its row at `changes_from` to its row at `snapshot_ts`)"),
    ("starting_ts", "latest", "a stream (`readStream`): where it starts, a TSO, `latest` (the newest ts every region of the table has resolved) or `earliest` (the store's GC safe point); its first batch is the table's rows there, as inserts, then changes (docs/changes.md); refused beside `changes_from`, `changes`, `snapshot_ts`, `as_of`, `snapshot=resolved`, `max_staleness` or `hidden`"),
    ("max_rows_per_trigger", "none", "a stream: about this many changes per micro-batch (cut at a commit ts; never less than one commit)"),
    ("stream_id", "none", "a stream: an id that outlives restarts (the connector jar sends a digest of the checkpoint location); with it each commit releases the stream's older leases"),
    ("stream_columns", "none", "a stream: the column names of the schema Spark fixed for it, a JSON list (the connector jar and the Python reader send it); a batch whose schema has a column the table gained since is refused, asking for a restart"),
    ("token", "`token_file`, else the `THEFLASH_TOKEN` environment variable", "the bearer token of a service started with `--token-file` (`writer run --serve-token-file`): the JVM connector's `server`, and for a ClickHouse-engine store the service of the process that owns it, which the Python source reads through; never shown in errors, `explain()` or logs"),
    ("token_file", "`THEFLASH_TOKEN`", "a file whose first line is that token, read by the driver"),
]

# Set by the service for a client that reads one planned stream's handle ranges (the read
# request's ``handle_ranges``): JSON list of [lo, hi], null = unbounded, ``{"hex": ...}`` = a
# common handle's bytes. Not for users.
HANDLE_RANGES_OPTION = "_theflash_handle_ranges"

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|min|h)?\s*$", re.IGNORECASE)
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$", re.IGNORECASE)


def parse_duration_s(name: str, text: str) -> float:
    """``"500ms"``, ``"30s"``, ``"2m"``, ``"1h"`` or a bare number of seconds."""
    m = _DURATION.match(str(text))
    if not m:
        raise ScanOptionError(f"option {name}={text!r} is not a duration; write e.g. 500ms, 30s or 2m")
    value = float(m.group(1))
    unit = (m.group(2) or "s").lower()
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}[unit]


def parse_size_bytes(name: str, text: str) -> int:
    """``"64MiB"``, ``"1g"``, ``"4096"`` (bytes)."""
    m = _SIZE.match(str(text))
    if not m:
        raise ScanOptionError(f"option {name}={text!r} is not a size; write e.g. 64MiB or 1048576")
    unit = (m.group(2) or "b").lower()
    mult = {"b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
            "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}[unit]
    return int(float(m.group(1)) * mult)


def parse_positive_int(name: str, text: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ScanOptionError(f"option {name}={text!r} is not an integer") from None
    if value <= 0:
        raise ScanOptionError(f"option {name}={text!r} must be positive")
    return value


def parse_list(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    return tuple(part.strip() for part in str(text).split(",") if part.strip())


HandleBound = Optional[Handle]  # None: unbounded


def _bound_from_json(value: object) -> HandleBound:
    if value is None:
        return None
    if isinstance(value, dict):
        return bytes.fromhex(value["hex"])
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is neither an int handle, a {{\"hex\": ...}} common handle nor null")
    return value


def parse_handle_ranges(text: str | None) -> tuple[tuple[HandleBound, HandleBound], ...] | None:
    """The option's JSON list of [lo, hi]: an int handle, ``{"hex": "..."}`` for a common
    handle's bytes (JSON has no bytes), null for unbounded."""
    if text is None:
        return None
    try:
        ranges = tuple((_bound_from_json(lo), _bound_from_json(hi)) for lo, hi in json.loads(text))
    except (ValueError, TypeError, KeyError) as exc:
        raise ScanOptionError(f"option {HANDLE_RANGES_OPTION}={text!r} is not a JSON list of [lo, hi]: {exc}") from None
    return ranges


def format_handle_ranges(ranges: Sequence[tuple[HandleBound, HandleBound]]) -> str:
    def bound(value: HandleBound) -> int | dict[str, str] | None:
        return {"hex": value.hex()} if isinstance(value, bytes) else value

    return json.dumps([[bound(lo), bound(hi)] for lo, hi in ranges])


# A read request's field (service/request.py: Flight, HTTP) -> the read option it sets: the one
# table the service, the Python source's service reads (spark/service_read.py) and the jar's
# form (connector_read_form) name them by.
REQUEST_FIELD_OPTIONS = {
    "schema": "schema", "lease_ttl": "lease_ttl", "batch_rows": "batch_rows", "min_streams": "min_partitions",
    "stream_target_bytes": "partition_target_bytes", "region_wait_timeout": "region_wait_timeout",
    "lock_wait_timeout": "lock_wait_timeout", "handle_ranges": HANDLE_RANGES_OPTION,
    "snapshot": "snapshot", "max_staleness": "max_staleness",
    "changes_from": "changes_from", "changes": "changes",
}

KNOWN_OPTIONS = frozenset([name.lower() for name, _, _ in OPTION_DOCS]
                          + ["path", SESSION_SNAPSHOT_OPTION, HANDLE_RANGES_OPTION])


def option_names() -> list[str]:
    """The options a read takes, as the README spells them, in the order errors list them
    (case-insensitive, as the jar's ReadOptions lists its own)."""
    return sorted((name for name, _, _ in OPTION_DOCS), key=str.lower)


def closest_option(name: str, names: Sequence[str]) -> str | None:
    """The known option nearest to a misspelt one: the least edit distance (over lower case,
    as options arrive), the first in ``names``' order on a tie, and none farther than a third
    of the name's length. The jar's rule (ReadOptions.closest), so both name the same one."""
    best, best_distance = None, None
    for known in names:
        d = _edit_distance(name, known.lower())
        if best_distance is None or d < best_distance:
            best, best_distance = known, d
    return best if best_distance is not None and best_distance * 3 <= max(len(name), 3) else None


def _edit_distance(a: str, b: str) -> int:
    """Insertions, deletions, substitutions and swaps of neighbours (``tabel`` is one from
    ``table``): the optimal string alignment distance, the jar's ReadOptions.distance."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(rows[i - 1][j - 1] + (a[i - 1] != b[j - 1]), rows[i - 1][j] + 1, row[j - 1] + 1)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[i - 2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def _refuse_unknown(opts: Mapping[str, object], known: frozenset[str] = KNOWN_OPTIONS,
                    names: Sequence[str] | None = None, also: Sequence[str] = ()) -> None:
    """A misspelt option (``isolaton=RC``, ``snapshotts=1``) must not be ignored: the read
    would silently answer something else than what was asked (the latest data, say). ``known``:
    the lower-case names a read takes; ``names``: those its message lists (this source's unless
    given); ``also``: a catalog's own options, listed apart and named as near matches too."""
    also_known = {a.lower() for a in also}
    unknown = sorted(k for k in opts if k not in known and k not in also_known)
    if not unknown:
        return
    public = option_names() if names is None else list(names)
    nearest = sorted({*public, *also}, key=str.lower)
    hints = []
    for name in unknown:
        close = closest_option(name, nearest)
        hints.append(f"'{name}'" + (f" (did you mean '{close}'?)" if close else ""))
    raise ScanOptionError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
                          f"theflash reads take: {', '.join(public)}"
                          + (f"; the catalog also takes: {', '.join(also)}" if also else ""))


def _resolve_aliases(opts: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``opts`` (lower-case names) with Delta's and Iceberg's aliases under our names, and the
    name each aliased option was given by (``versionAsOf``, as the README spells it), for its
    errors; an alias that disagrees with its option is refused."""
    out = dict(opts)
    spelled = {name.lower(): name for name, _, _ in OPTION_DOCS}
    given = {name: spelled[alias] for alias, name in OPTION_ALIASES.items() if alias in out}
    for alias, name in OPTION_ALIASES.items():
        if alias in out:
            if name in out and str(out[name]).strip() != str(out[alias]).strip():
                raise ScanOptionError(f"option {name}={out[name]!r} and its alias {given[name]}={out[alias]!r} "
                                      "disagree: give one of them")
            out[name] = out.pop(alias)
    return out, given


# Delta's change data feed options (lower case, as they arrive) and how users spell them
CHANGE_FEED_NAMES = {"readchangefeed": "readChangeFeed", "startingversion": "startingVersion",
                     "startingtimestamp": "startingTimestamp", "endingversion": "endingVersion",
                     "endingtimestamp": "endingTimestamp"}
V = TypeVar("V")  # an option's value as given (change_feed_options passes the others on as they are)
# the marker a batch change feed without an end leaves in the options: its end is the read's ts
CHANGES_TO_LATEST = "readchangefeed"
TSO_LOGICAL_BITS = 18


def change_feed_options(opts: Mapping[str, V], stream: bool = False) -> dict[str, V | str]:
    """Delta's change data feed names (lower case) turned into ours, Delta's semantics mapped
    exactly: startingVersion v is inclusive (``changes_from`` = v - 1), endingVersion inclusive
    (``snapshot_ts`` = v); startingTimestamp/endingTimestamp are times (as ``as_of`` parses them)
    taken from the first/last TSO of their millisecond. A batch read (``stream=False``) becomes
    ``changes_from`` (+ ``snapshot_ts``; without an end, the marker ``readchangefeed`` stays and
    the read ends at its planned ts); a stream becomes ``starting_ts``. Contradictions are
    refused naming the options (``ScanOptionError``); options without Delta's names pass as
    they are. The connector jar maps the same (ReadOptions.java changeFeed)."""
    given = {k: str(opts[k]).strip() for k in CHANGE_FEED_NAMES if k in opts and str(opts[k]).strip() != ""}
    out: dict[str, V | str] = {k: v for k, v in opts.items() if k not in CHANGE_FEED_NAMES}
    if not given:
        return out
    flag = given.get("readchangefeed", "false").lower()
    if flag not in ("true", "false"):
        raise ScanOptionError(f"option readChangeFeed={given['readchangefeed']!r}: use true or false")
    range_names = [CHANGE_FEED_NAMES[k] for k in CHANGE_FEED_NAMES if k in given and k != "readchangefeed"]
    if flag != "true":
        if range_names:
            raise ScanOptionError(f"option {', '.join(range_names)} names the range of a change read: add "
                                  "readChangeFeed=true (Delta's change data feed), or give changes_from and snapshot_ts")
        return out
    for ours, shown in (("changes_from", "changes_from"), ("snapshot_ts", "snapshot_ts (versionAsOf)"),
                        ("as_of", "as_of (timestampAsOf)"), ("starting_ts", "starting_ts")):
        if str(out.get(ours) or "").strip():
            raise ScanOptionError(f"option {shown} does not go with readChangeFeed: readChangeFeed takes its range from "
                                  "startingVersion/startingTimestamp and endingVersion/endingTimestamp; give Delta's "
                                  "names or ours (changes_from with snapshot_ts, or starting_ts for a stream), not both")
    if "startingversion" in given and "startingtimestamp" in given:
        raise ScanOptionError("give startingVersion or startingTimestamp, not both: each is where the change read starts")
    if "endingversion" in given and "endingtimestamp" in given:
        raise ScanOptionError("give endingVersion or endingTimestamp, not both: each is where the change read ends")
    def version(key: str) -> int:
        try:
            value = int(given[key])
        except ValueError:
            raise ScanOptionError(f"option {CHANGE_FEED_NAMES[key]}={given[key]!r} is not a version: a version of a "
                                  "theflash table is a commit TSO (physical_ms << 18 | logical); for a time give "
                                  f"{CHANGE_FEED_NAMES[key].replace('Version', 'Timestamp')}") from None
        if value <= 1:
            raise ScanOptionError(f"option {CHANGE_FEED_NAMES[key]}={given[key]!r} is not a commit TSO "
                                  "(physical_ms << 18 | logical)")
        return value

    if "startingversion" in given:
        start_name, start = "startingVersion", version("startingversion") - 1
    elif "startingtimestamp" in given:
        ms = as_of_to_ts(given["startingtimestamp"], "startingTimestamp") >> TSO_LOGICAL_BITS
        start_name, start = "startingTimestamp", (ms << TSO_LOGICAL_BITS) - 1
    else:
        raise ScanOptionError("readChangeFeed=true needs where the changes start: give startingVersion (a commit TSO) or "
                              "startingTimestamp (a time); for a stream of the table from now, drop readChangeFeed "
                              "and give starting_ts=latest")
    end: int | None = None
    end_name = ""
    if "endingversion" in given:
        end_name, end = "endingVersion", version("endingversion")
    elif "endingtimestamp" in given:
        end_name, end = "endingTimestamp", as_of_to_ts(given["endingtimestamp"], "endingTimestamp")
    if end is not None and start >= end:
        raise ScanOptionError(f"{start_name}={given[start_name.lower()]!r} is after {end_name}="
                              f"{given[end_name.lower()]!r}: the change read's range runs from its start to its end, "
                              "both inclusive")
    if stream:
        if end is not None:
            raise ScanOptionError(f"option {end_name} ends a batch change read (spark.read); a stream follows the table "
                                  f"with no end: drop {end_name}, or read with spark.read")
        out["starting_ts"] = str(start)
        return out
    out["changes_from"] = str(start)
    if end is not None:
        out["snapshot_ts"] = str(end)
    else:
        out[CHANGES_TO_LATEST] = "true"
    return out


# a stream's own options (scan/change_stream.py): a batch change read names its range instead
STREAM_ONLY_OPTIONS = ("starting_ts", "max_rows_per_trigger")


def refuse_incomplete_change_read(opts: Mapping[str, object]) -> None:
    """A change read's options (lower-case names, aliases resolved) are a range, and only one:
    ``changes_from`` with ``snapshot_ts``, its end. Refused, naming the option, before anything
    is planned: an end given another way (``as_of``, ``snapshot=resolved``, ``max_staleness``, a
    session pin) or none, a stream's ``starting_ts`` beside it, ``changes`` without it, or
    ``hidden`` (a change has ``_tidb_rowid`` and ``_commit_ts`` already). A stream
    (``starting_ts``) has no end and no ``changes_from``: it reads its batches' ranges itself.
    The connector jar checks the same (ReadOptions.java)."""
    def given(name: str) -> bool:
        value = str(opts.get(name) or "").strip().lower()
        # snapshot=fresh is the default, which a named ts overrides (as in a snapshot read)
        return value != "" and not (name == "snapshot" and value == "fresh")

    if given("starting_ts"):
        for name in ("changes_from", "changes", "snapshot_ts", "as_of", "snapshot", "max_staleness", "hidden"):
            if given(name):
                raise ScanOptionError(
                    f"option {name} does not go with starting_ts: a stream (spark.readStream with starting_ts) starts "
                    f"there and follows the table, choosing each batch's range itself, and every change has "
                    f"_tidb_rowid and _commit_ts; a batch change read (spark.read) takes changes_from and "
                    f"snapshot_ts, without starting_ts")
    if not given("changes_from"):
        if given("changes"):
            raise ScanOptionError("option changes (all/net) applies to a change read: give changes_from too (and "
                                  "snapshot_ts, the range (changes_from, snapshot_ts] ends at)")
        return
    for name in STREAM_ONLY_OPTIONS:
        if given(name):
            raise ScanOptionError(f"option {name} is a stream's (spark.readStream); a batch change read (changes_from) "
                                  f"reads the range (changes_from, snapshot_ts]: drop {name}, or drop changes_from "
                                  f"and read a stream")
    if given("as_of"):
        raise ScanOptionError("a change read (changes_from) ends at snapshot_ts, a TSO: option as_of (timestampAsOf) "
                              "is not taken with it; give snapshot_ts instead")
    for name in ("snapshot", "max_staleness"):
        if given(name):
            raise ScanOptionError(f"option {name}={opts[name]!r} chooses the ts of a snapshot read; a change read "
                                  f"(changes_from) ends at the snapshot_ts it names: drop {name}")
    if given("hidden"):
        raise ScanOptionError(f"option hidden={opts['hidden']!r} does not go with changes_from: every change has "
                              "_tidb_rowid and _commit_ts (its commit TSO) already; drop hidden")
    if not given("snapshot_ts") and not given(CHANGES_TO_LATEST):
        raise ScanOptionError("a change read (changes_from) needs its end: give option snapshot_ts, the TSO the range "
                              "(changes_from, snapshot_ts] ends at (a session's pinned ts is not taken for it)")


@dataclass(frozen=True)
class ScanOptions:
    """What one read asks for. Built with :meth:`from_mapping` from the user's strings."""

    store: str
    table: str
    upstream: str | None = None
    latch: str | None = None
    snapshot_ts: int | None = None
    as_of: str | None = None
    session_snapshot_ts: int | None = None
    isolation: str = "SI"
    region_wait_timeout_s: float = DEFAULT_REGION_WAIT_TIMEOUT_S
    lock_wait_timeout_s: float = DEFAULT_LOCK_WAIT_TIMEOUT_S
    lease_ttl_s: float = DEFAULT_LEASE_TTL_S
    batch_rows: int = DEFAULT_BATCH_ROWS
    columns: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()
    partition_target_bytes: int = DEFAULT_PARTITION_TARGET_BYTES
    min_partitions: int = 1
    schema: str = "as_of"  # "as_of" | "current": the table and schema a read at a past ts uses
    snapshot: str = "fresh"  # "fresh" | "resolved": the ts of a read that names none
    max_staleness_s: float | None = None  # bounded staleness; None: off
    handle_ranges: tuple[tuple[HandleBound, HandleBound], ...] | None = None  # None: the whole table
    # options token / token_file, resolved on the driver (None: the sender's THEFLASH_TOKEN);
    # its repr names the source only
    token: BearerToken | None = None
    # a change read (store/changes.py): versions with changes_from < commit_ts <= snapshot_ts
    changes_from: int | None = None
    changes_net: bool = False

    @property
    def lease_ts(self) -> int | None:
        """The ts a read's lease pins: a change read needs the versions above changes_from and
        the one each row had at it, which a lease at changes_from keeps from GC (a read from 0,
        the snapshot as inserts, needs the rows at snapshot_ts only)."""
        return self.changes_from or None

    @staticmethod
    def from_mapping(options: Mapping[str, str]) -> "ScanOptions":
        opts = {str(k).lower(): v for k, v in options.items() if v is not None}
        _refuse_unknown(opts)
        # the name the user gave each option by, for its errors: versionAsOf, not snapshot_ts
        # (as the README spells it, whatever the case it arrived in: the jar's messages too)
        opts, given = _resolve_aliases(opts)
        opts = change_feed_options(opts)
        store = opts.get("store")
        if not store:
            raise ScanOptionError(
                'option "store" is required: spark.read.format("theflash").option("store", "/path/to/store")'
            )
        table = opts.get("table") or opts.get("path")
        if not table:
            raise ScanOptionError(
                'no table given: use .load("db.table") or .option("table", "db.table")'
            )
        if "." not in table:
            raise ScanOptionError(f"table {table!r} must be written as db.table")
        isolation = str(opts.get("isolation", "SI")).strip().upper()
        if isolation not in ("SI", "RC"):
            raise ScanOptionError(f"option isolation={opts['isolation']!r}: use SI (default) or RC")
        hidden = parse_list(opts.get("hidden"))
        for name in hidden:
            if name not in HIDDEN_READABLE:
                raise ScanOptionError(f"option hidden: {name!r} is not a readable hidden column; use {', '.join(HIDDEN_READABLE)}")

        def ts_option(name: str) -> int | None:
            raw = opts.get(name)
            if raw is None or str(raw).strip() == "":
                return None
            try:
                value = int(str(raw).strip())
            except ValueError:
                raise ScanOptionError(f"option {given.get(name, name)}={raw!r} is not a TSO number "
                                      "(physical_ms << 18 | logical)") from None
            if value <= 0:
                raise ScanOptionError(f"option {given.get(name, name)}={raw!r} must be a positive TSO number")
            return value

        refuse_incomplete_change_read(opts)
        snapshot_ts = ts_option("snapshot_ts")
        as_of = opts.get("as_of") or None
        if as_of is not None:
            as_of_to_ts(as_of, given.get("as_of", "as_of"))  # a malformed time, under the name it was given by
        if snapshot_ts is not None and as_of is not None:
            raise ScanOptionError(f"give either {given.get('snapshot_ts', 'snapshot_ts')} or "
                                  f"{given.get('as_of', 'as_of')}, not both")
        schema = str(opts.get("schema") or "as_of").strip().lower().replace("-", "_")
        if schema not in SCHEMA_MODES:
            raise ScanOptionError(f"option schema={opts['schema']!r}: use as_of (default) or current")
        snapshot = str(opts.get("snapshot") or "fresh").strip().lower()
        if snapshot not in SNAPSHOT_MODES:
            raise ScanOptionError(f"option snapshot={opts['snapshot']!r}: use fresh (default) or resolved")
        max_staleness_s = None
        if str(opts.get("max_staleness") or "").strip():
            max_staleness_s = parse_duration_s("max_staleness", opts["max_staleness"])
            if max_staleness_s <= 0:
                raise ScanOptionError(f"option max_staleness={opts['max_staleness']!r} must be a positive duration")
        if (snapshot_ts is not None or as_of is not None) and (snapshot != "fresh" or max_staleness_s is not None):
            raise ScanOptionError("snapshot_ts / as_of name the ts of a read; snapshot=resolved and max_staleness "
                                  "choose one: give one or the other")
        if snapshot == "resolved" and max_staleness_s is not None:
            raise ScanOptionError("snapshot=resolved reads the resolved ts whatever its age; max_staleness chooses "
                                  "between a fresh and the resolved ts: give one or the other")
        # changes_from=0: the rows at snapshot_ts as inserts (net changes from nothing), the first
        # batch of a change stream
        changes_from = 0 if str(opts.get("changes_from", "")).strip() == "0" else ts_option("changes_from")
        changes_mode = str(opts.get("changes") or "all").strip().lower()
        if changes_mode not in ("all", "net"):
            raise ScanOptionError(f"option changes={opts['changes']!r}: use all (default) or net")
        if changes_from is not None:
            # without snapshot_ts (readChangeFeed without an end) the read ends at its planned ts
            if snapshot_ts is not None and changes_from >= snapshot_ts:
                raise ScanOptionError(f"changes_from={changes_from} must be below snapshot_ts={snapshot_ts}: the "
                                      "range is (changes_from, snapshot_ts]")
            if changes_from == 0:
                changes_mode = "net"  # from nothing, every version folds to the row at snapshot_ts
        return ScanOptions(
            store=str(store),
            table=str(table),
            upstream=opts.get("upstream") or None,
            latch=opts.get("latch") or None,
            snapshot_ts=snapshot_ts,
            as_of=as_of,
            session_snapshot_ts=ts_option(SESSION_SNAPSHOT_OPTION),
            isolation=isolation,
            region_wait_timeout_s=parse_duration_s("region_wait_timeout", opts["region_wait_timeout"])
            if "region_wait_timeout" in opts else DEFAULT_REGION_WAIT_TIMEOUT_S,
            lock_wait_timeout_s=parse_duration_s("lock_wait_timeout", opts["lock_wait_timeout"])
            if "lock_wait_timeout" in opts else DEFAULT_LOCK_WAIT_TIMEOUT_S,
            lease_ttl_s=parse_duration_s("lease_ttl", opts["lease_ttl"]) if "lease_ttl" in opts else DEFAULT_LEASE_TTL_S,
            batch_rows=parse_positive_int("batch_rows", opts["batch_rows"]) if "batch_rows" in opts else DEFAULT_BATCH_ROWS,
            columns=parse_list(opts.get("columns")),
            hidden=hidden,
            partition_target_bytes=parse_size_bytes("partition_target_bytes", opts["partition_target_bytes"])
            if "partition_target_bytes" in opts else DEFAULT_PARTITION_TARGET_BYTES,
            min_partitions=parse_positive_int("min_partitions", opts["min_partitions"])
            if "min_partitions" in opts else (os.cpu_count() or 1),
            schema=schema,
            snapshot=snapshot,
            max_staleness_s=max_staleness_s,
            handle_ranges=parse_handle_ranges(opts.get(HANDLE_RANGES_OPTION)),
            token=BearerToken.from_options(opts.get("token"), opts.get("token_file")),
            changes_from=changes_from,
            changes_net=changes_mode == "net",
        )

    @property
    def db_and_name(self) -> tuple[str, str]:
        db, _, name = self.table.partition(".")
        return db, name

    def requested_ts(self) -> int | None:
        """The ts the user asked for (``snapshot_ts``, ``as_of``, the session's pin), or None
        for "the latest": ``scan.snapshot`` chooses one then."""
        if self.snapshot_ts is not None:
            return self.snapshot_ts
        if self.as_of is not None:
            return as_of_to_ts(self.as_of)
        return self.session_snapshot_ts


# -- the connector jar's reads: the same rules, checked here ------------------------------------
# The connector jar (jvm-shim/ReadOptions.java) parses nothing of a read's options itself: it
# hands them to the service it reads through (``POST /v1/read-options``), which checks them by
# the rules above, in the same words as the Python source, and answers the form below. The jar
# keeps three options of its own: ``server`` (the service it asks), ``token`` and ``token_file``
# (read on the driver, never sent); ``paths`` is Spark's for ``load(a, b)``.
CONNECTOR_OPTIONS = ("server",)
_CONNECTOR_HELD = ("server", "token", "token_file", "paths")
# Options only the Python reader's streams send (the jar sends its streams' to the change-stream
# calls, not as read options).
SOURCE_ONLY_OPTIONS = ("stream_id", "stream_columns")
# The read options the jar sends the service as read request fields, by the field's name; it
# sends the others (snapshot, max_staleness) as the session's confs decide them.
CONNECTOR_REQUEST_FIELDS = {option: name for name, option in REQUEST_FIELD_OPTIONS.items()
                            if name not in ("handle_ranges", "snapshot", "max_staleness")}
# The store a jar's read without option ``store`` reads: the service's own (named by it, not here).
_SERVICES_STORE = "(the service's store)"


def connector_option_names() -> list[str]:
    """The options a read through the connector jar takes, as errors list them."""
    names = [name for name, _, _ in OPTION_DOCS if name not in SOURCE_ONLY_OPTIONS]
    return sorted([*names, *CONNECTOR_OPTIONS], key=str.lower)


def connector_read_form(options: Mapping[str, str], catalog_options: Sequence[str] = ()) -> dict[str, object]:
    """A connector jar read's options (as Spark hands them: lower-case names; a catalog's read
    options beside its own ``catalog_options``), refused as ``ScanOptions.from_mapping`` refuses
    them (``ScanOptionError``, the Python source's words) and answered in the form
    ReadOptions.java keeps:

    * ``table``, ``store`` (None: the service's own), ``snapshot_ts`` (the option, else the
      session pin ``theflash.snapshot_ts``, unless ``as_of`` is given), ``as_of`` (the time as
      given: the service reads it again, to the same ts), ``isolation``;
    * ``snapshot`` and ``max_staleness`` as given (None: the session's confs then);
    * ``columns``, ``hidden``; ``request``: the options that travel as read request fields;
    * ``feed_from``: Delta's change feed without an end, where it starts (a batch read ends at
      its ts; a stream starts there: ``raw``'s ``starting_ts``), else None;
    * ``raw``: the options with the aliases and Delta's change feed names under ours, less
      ``token``."""
    opts = {str(k).lower(): str(v) for k, v in options.items() if v is not None}
    known = frozenset(name.lower() for name in connector_option_names()) | {"path", "paths", SESSION_SNAPSHOT_OPTION}
    _refuse_unknown(opts, known, connector_option_names(), catalog_options)
    checked = ScanOptions.from_mapping(
        {**{k: v for k, v in opts.items() if k not in _CONNECTOR_HELD},
         "store": opts.get("store", "").strip() or _SERVICES_STORE})
    raw, _given = _resolve_aliases(opts)
    fed = change_feed_options(raw)
    feed_from = None
    if fed.pop(CHANGES_TO_LATEST, None) is not None:
        feed_from = int(fed.pop("changes_from"))
        fed["starting_ts"] = str(feed_from)
    snapshot_ts = checked.snapshot_ts
    if snapshot_ts is None and checked.as_of is None:
        snapshot_ts = checked.session_snapshot_ts
    return {
        "table": checked.table.strip(),
        "store": opts.get("store", "").strip() or None,
        "snapshot_ts": snapshot_ts,
        "as_of": checked.as_of.strip() if checked.as_of else None,
        "isolation": checked.isolation,
        "snapshot": checked.snapshot if opts.get("snapshot", "").strip() else None,
        "max_staleness": opts.get("max_staleness", "").strip() or None,
        "columns": list(checked.columns),
        "hidden": list(checked.hidden),
        "request": {field: fed[name] for name, field in CONNECTOR_REQUEST_FIELDS.items() if name in fed},
        "feed_from": feed_from,
        "raw": {k: v for k, v in fed.items() if k != "token"},
    }
