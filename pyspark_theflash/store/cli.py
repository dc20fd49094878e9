"""``theflash store status|compact|gc|verify <dir>``: look after a store directory.

* ``status``: regions (range, epoch, applied index, resolved ts, open locks), tables (schema
  versions, partitions, delta and stable parts, rows, bytes), the binlog position and the GC
  safe point; human-readable, or ``--json``.
* ``history [table]``: a table's readable range (GC safe point to resolved ts), schema versions
  (commit ts, DDL), regions (resolved ts, lag) and parts (``service.history``); every table's
  when none is named; human-readable, or ``--json``.
* ``compact [--table db.t]``: merge delta parts into stable parts (and apply GC and deleted
  ranges) now, instead of waiting for the writer's background compaction.
* ``gc --safe-point TS``: move the store's GC safe point (never past a live read lease) and
  compact, so versions no reader can see any more are removed.
* ``verify``: check every part against the manifest (``store.verify``); exit status 1 when
  anything is wrong, with each problem's file and what to do.

``compact`` and ``gc`` open the store as its writer under the store's write latch, so they refuse
to run while a writer job holds it. ``status``, ``history`` and ``verify`` only read.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, NotRequired, TypedDict

from pyspark_theflash.cli import CommandError
from pyspark_theflash.errors import TheFlashError

if TYPE_CHECKING:
    from pyspark_theflash.service.history import TableMetadata
    from pyspark_theflash.store.manifest import SqlValue
    from pyspark_theflash.engine.txn_merge_tree import TxnMergeTreeEngine
    from pyspark_theflash.latch.types import WriterHolder


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    store = subparsers.add_parser("store", help="inspect and maintain a store directory",
                                  description=__doc__.splitlines()[0])
    sub = store.add_subparsers(dest="store_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("status", help="regions, tables, partitions, parts, sizes, position")
    p.add_argument("dir", help="the store directory")
    p.add_argument("--json", action="store_true", help="one JSON document instead of text")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("history", help="a table's readable ts range, schema versions, regions and parts")
    p.add_argument("dir", help="the store directory")
    p.add_argument("table", nargs="?", help="db.table (default: every live table)")
    p.add_argument("--json", action="store_true", help="one JSON document instead of text")
    p.add_argument("--upstream", help="the upstream whose GC safe point bounds the readable range: pd://HOST:PORT "
                   "or grpc://host:port (default: the one the writer recorded)")
    p.add_argument("--no-upstream", action="store_true",
                   help="do not ask the upstream: the range starts at the store's own GC safe point")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("compact", help="merge delta parts into stable parts now")
    p.add_argument("dir", help="the store directory")
    p.add_argument("--table", help="only this table (db.table or its numeric id; default: every table)")
    p.set_defaults(func=cmd_compact)

    p = sub.add_parser("gc", help="move the GC safe point and drop versions below it")
    p.add_argument("dir", help="the store directory")
    p.add_argument("--safe-point", type=int, required=True, metavar="TS",
                   help="a TSO timestamp; versions only visible below it are removed")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("convert", help="copy a store into a new store of another engine",
                       description="Copy a native store SRC (as of one manifest version; its writer may keep running) "
                       "into a new store DST of the clickhouse engine: the same regions, schemas, locks and binlog "
                       "position, so a writer started on DST with --engine clickhouse resumes where SRC's is, and "
                       "every version SRC holds.")
    p.add_argument("src", help="the native store directory")
    p.add_argument("dst", help="a new, empty directory")
    p.add_argument("--to", required=True, choices=("clickhouse",), help="the engine of the new store")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("verify", help="check every part against the manifest (exit 1 if anything is wrong)")
    p.add_argument("dir", help="the store directory")
    p.add_argument("--json", action="store_true", help="one JSON document instead of text")
    p.add_argument("--online", action="store_true",
                   help="the store's writer runs: pass over its in-flight files (temporary files of a live "
                   "process, parts renamed in before their edit commits, parts removed while checking); without it, "
                   "verify refuses while a writer holds the store's write latch")
    p.set_defaults(func=cmd_verify)


def _require_store(path: str) -> Path:
    from pyspark_theflash.store.manifest import manifest_path

    root = Path(path)
    if not manifest_path(root).exists():
        raise CommandError(f"{root} is not a store (no manifest.db there); pass the store directory "
                           "a writer created")
    return root


# ---------------------------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------------------------

def _handle_bounds(start_key: bytes, end_key: bytes, table_ids: list[int]) -> str:
    """A region's PD range as handle intervals of the store's tables, for people."""
    from pyspark_theflash.store.keyspace import region_handle_range

    parts = []
    for tid in table_ids:
        rng = region_handle_range(bytes(start_key), bytes(end_key), tid)
        if rng is not None:
            lo, hi = rng
            parts.append(f"t{tid}[{'-inf' if lo is None else lo!r}, {'+inf' if hi is None else hi!r})")
    if not start_key and not end_key:
        return "everything"
    return " ".join(parts) or f"{bytes(start_key).hex()}..{bytes(end_key).hex()}"


class PartitionStatus(TypedDict):
    """A partition of a table in ``store status``: its handle bounds and live parts."""

    partition_id: int
    lo: object
    hi: object
    delta_parts: int
    stable_parts: int
    rows: int
    bytes: int
    delete_marks: int


class TableStatus(TypedDict):
    """A table in ``store status``: its versions, partitions and their parts summed."""

    table_id: int
    db: str
    name: str
    schema_versions: list[int]
    partitions: list[PartitionStatus]
    delta_parts: NotRequired[int]
    stable_parts: NotRequired[int]
    rows: NotRequired[int]
    bytes: NotRequired[int]
    delete_marks: NotRequired[int]


class RegionStatus(TypedDict):
    """A region in ``store status``."""

    region_id: int
    range: str
    start_key: str
    end_key: str
    epoch_version: int
    applied_index: int
    resolved_ts: int
    state: str
    open_locks: int


class LeaseStatus(TypedDict):
    lease_id: int
    ts: int
    holder: str
    expires_at: float


class PartsAndBytes(TypedDict):
    parts: int
    bytes: int


class Totals(TypedDict):
    rows: int
    bytes: int
    parts: int


class StoreStatus(TypedDict):
    """``theflash store status``: the store's state as plain data."""

    store: str
    manifest_version: int
    format_version: object
    position: str | None
    gc_safe_point: int
    regions: list[RegionStatus]
    tables: list[TableStatus]
    removed_parts_awaiting_deletion: PartsAndBytes
    leases: list[LeaseStatus]
    total: Totals


def store_status(root: Path) -> StoreStatus:
    """The store's state as plain data, from one consistent read of the manifest."""
    from pyspark_theflash.store import manifest as mf

    conn = mf.connect(root, create=False)
    try:
        mf.check_format(conn, root)
        with mf.read(conn):
            meta: dict[str, mf.SqlValue] = {k: v for k, v in conn.execute("SELECT key, value FROM meta")}
            tables: dict[int, TableStatus] = {}
            for tid, version, db, name in conn.execute(
                    "SELECT table_id, schema_version, db, name FROM tables ORDER BY table_id, schema_version"):
                t = tables.setdefault(int(tid), {"table_id": int(tid), "db": db, "name": name,
                                                 "schema_versions": [], "partitions": []})
                t["schema_versions"].append(int(version))
                t["db"], t["name"] = db, name  # the newest version names the table
            partitions: dict[tuple[int, int], PartitionStatus] = {}
            for tid, pid, lo, hi in conn.execute(
                    "SELECT table_id, partition_id, lo, hi FROM partitions ORDER BY table_id, lo IS NOT NULL, lo"):
                p: PartitionStatus = {"partition_id": int(pid), "lo": _handle_text(lo), "hi": _handle_text(hi),
                     "delta_parts": 0, "stable_parts": 0,
                     "rows": 0, "bytes": 0, "delete_marks": 0}
                partitions[(int(tid), int(pid))] = p
                tables.setdefault(int(tid), {"table_id": int(tid), "db": "?", "name": "?",
                                             "schema_versions": [], "partitions": []})["partitions"].append(p)
            for tid, pid, kind, n, rows, size, marks in conn.execute(
                    "SELECT table_id, partition_id, kind, COUNT(*), SUM(rows), SUM(bytes), SUM(delete_marks) "
                    "FROM parts WHERE removed_version IS NULL GROUP BY table_id, partition_id, kind"):
                part = partitions.get((int(tid), int(pid)))
                if part is None:
                    continue  # verify reports parts of unknown partitions
                if kind == "delta":  # the parts table's kinds: delta | stable
                    part["delta_parts"] += int(n)
                else:
                    part["stable_parts"] += int(n)
                part["rows"] += int(rows or 0)
                part["bytes"] += int(size or 0)
                part["delete_marks"] += int(marks or 0)
            removed_pending = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM parts WHERE removed_version IS NOT NULL").fetchone()
            locks = {int(r): int(n) for r, n in conn.execute("SELECT region_id, COUNT(*) FROM locks GROUP BY region_id")}
            table_ids = sorted(tables)
            regions: list[RegionStatus] = [
                {"region_id": int(rid), "range": _handle_bounds(sk, ek, table_ids), "start_key": bytes(sk).hex(),
                 "end_key": bytes(ek).hex(), "epoch_version": int(ev), "applied_index": int(ai),
                 "resolved_ts": int(rts), "state": state, "open_locks": locks.get(int(rid), 0)}
                for rid, sk, ek, ev, ai, rts, state in conn.execute(
                    "SELECT region_id, start_key, end_key, epoch_version, applied_index, resolved_ts, state "
                    "FROM regions ORDER BY start_key")
            ]
            leases: list[LeaseStatus] = [{"lease_id": int(i), "ts": int(ts), "holder": h, "expires_at": float(e)}
                      for i, ts, h, e in conn.execute("SELECT lease_id, ts, holder, expires_at FROM leases")]
    except sqlite3.DatabaseError as exc:
        raise CommandError(f"{mf.manifest_path(root)} cannot be read: {exc}; run `theflash store verify`") from exc
    except TheFlashError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        conn.close()
    for t in tables.values():
        ps = t["partitions"]
        t.update({"delta_parts": sum(p["delta_parts"] for p in ps), "stable_parts": sum(p["stable_parts"] for p in ps),
                  "rows": sum(p["rows"] for p in ps), "bytes": sum(p["bytes"] for p in ps),
                  "delete_marks": sum(p["delete_marks"] for p in ps)})
    position = None
    if meta.get("position_segment") is not None or meta.get("position") is not None:
        position = _position_text(meta)
    return {
        "store": str(root),
        "manifest_version": int(meta.get("version") or 0),
        "format_version": meta.get("format_version"),
        "position": position,
        "gc_safe_point": int(meta.get("gc_safe_point") or 0),
        "regions": regions,
        "tables": [tables[t] for t in table_ids],
        "removed_parts_awaiting_deletion": {"parts": int(removed_pending[0]), "bytes": int(removed_pending[1])},
        "leases": leases,
        "total": {"rows": sum(t["rows"] for t in tables.values()), "bytes": sum(t["bytes"] for t in tables.values()),
                  "parts": sum(t["delta_parts"] + t["stable_parts"] for t in tables.values())},
    }


def _handle_text(handle: object) -> object:
    """A partition bound for people and JSON: an int handle, or a common handle's bytes in hex."""
    if isinstance(handle, (bytes, bytearray, memoryview)):
        return "0x" + bytes(handle).hex()
    return handle


def _position_text(meta: dict[str, SqlValue]) -> str:
    segment = meta.get("position_segment")
    if segment is not None:
        return f"{int(segment)}:{int(meta.get('position_offset') or 0)}"
    value = meta["position"]
    if isinstance(value, (bytes, bytearray)):
        from pyspark_theflash.binlog.position import Position
        from pyspark_theflash.proto import binlog_pb2

        return str(Position.from_proto(binlog_pb2.Position.FromString(bytes(value))))
    text = str(value)
    if text.startswith("["):
        segment, offset = json.loads(text)
        return f"{segment}:{offset}"
    return text


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def print_status(status: StoreStatus) -> None:
    total = status["total"]
    print(f"store {status['store']}  manifest version {status['manifest_version']}")
    print(f"binlog position {status['position'] or 'none (nothing written yet)'}  "
          f"GC safe point {status['gc_safe_point']}")
    print(f"{len(status['tables'])} table(s), {total['parts']} live part(s), {total['rows']} row versions, "
          f"{_size(total['bytes'])}")
    print()
    live = [r for r in status["regions"] if r["state"] == "normal"]
    gone = len(status["regions"]) - len(live)
    print(f"regions ({len(live)}{f'; {gone} merged or removed not shown' if gone else ''}):")
    print(f"  {'id':>6} {'state':8} {'epoch':>5} {'applied':>9} {'resolved ts':>20} {'locks':>5}  range")
    for r in live:
        print(f"  {r['region_id']:>6} {r['state']:8} {r['epoch_version']:>5} {r['applied_index']:>9} "
              f"{r['resolved_ts']:>20} {r['open_locks']:>5}  {r['range']}")
    for t in status["tables"]:
        print()
        print(f"table {t['db']}.{t['name']} (id {t['table_id']}, schema versions "
              f"{', '.join(map(str, t['schema_versions'])) or '-'}): {len(t['partitions'])} partition(s), "
              f"{t['delta_parts']} delta + {t['stable_parts']} stable part(s), {t['rows']} row versions "
              f"({t['delete_marks']} delete marks), {_size(t['bytes'])}")
        for p in t["partitions"]:
            lo = "-inf" if p["lo"] is None else p["lo"]
            hi = "+inf" if p["hi"] is None else p["hi"]
            print(f"  partition {p['partition_id']:>4} [{lo}, {hi}): {p['delta_parts']} delta, "
                  f"{p['stable_parts']} stable, {p['rows']} rows, {_size(p['bytes'])}")
    pending = status["removed_parts_awaiting_deletion"]
    if pending["parts"]:
        print()
        print(f"{pending['parts']} removed part(s) ({_size(pending['bytes'])}) await deletion until no lease sees them")
    if status["leases"]:
        print(f"{len(status['leases'])} read lease(s): " + ", ".join(
            f"#{lease['lease_id']} ts {lease['ts']} ({lease['holder']})" for lease in status["leases"]))


def cmd_status(args: argparse.Namespace) -> int:
    status = store_status(_require_store(args.dir))
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print_status(status)
    return 0


# ---------------------------------------------------------------------------------------------
# history
# ---------------------------------------------------------------------------------------------

def store_history(root: Path, table: str | None, upstream: str | None = None,
                  ask_upstream: bool = True) -> dict[str, TableMetadata]:
    """``service.history.table_metadata`` of ``table`` (or of every live table), by table name.
    The readable range starts at or above the upstream's GC safe point (``upstream``, else the
    one the writer recorded) when it answers; each table's ``history`` row then says which
    safe point it is (``gc_safe_point_of``: "upstream" or "store", and why not the upstream's)."""
    from pyspark_theflash.store import manifest as mf
    from pyspark_theflash.service.history import table_metadata, upstream_gc_safe_point
    from pyspark_theflash.store.views import StoreView

    conn = mf.connect(root, create=False)
    try:
        mf.check_format(conn, root)
        view = StoreView(conn, owns_conn=False)
        try:
            upstream_safe_point, why_not = (upstream_gc_safe_point(upstream or view.upstream()) if ask_upstream
                                            else (None, "not asked (--no-upstream)"))
            names = [table] if table else [f"{t.db}.{t.name}" for t in view.tables()]
            out: dict[str, TableMetadata] = {}
            for name in names:
                meta = table_metadata(view, name, upstream_safe_point)
                h = meta["history"][0]
                h["gc_safe_point_of"] = ("upstream" if upstream_safe_point is not None
                                         and upstream_safe_point >= int(view.gc_safe_point()) else "store")
                h["upstream_unasked"] = why_not or None
                out[meta["history"][0]["table"]] = meta
            return out
        finally:
            view.close()
    except sqlite3.DatabaseError as exc:
        raise CommandError(f"{mf.manifest_path(root)} cannot be read: {exc}; run `theflash store verify`") from exc
    except TheFlashError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        conn.close()


def print_history(tables: dict[str, TableMetadata]) -> None:
    for i, (name, meta) in enumerate(tables.items()):
        if i:
            print()
        h = meta["history"][0]
        lag = "" if h["lag_ms"] is None else f" ({h['lag_ms'] / 1000:.1f}s behind the clock)"
        print(f"table {name} (id {h['table_id']}, schema version {h['schema_version']}, manifest version "
              f"{h['manifest_version']})")
        if h["readable_to"] and h["readable_to"] >= h["readable_from"]:
            created = f", created at {h['created_ts']}" if h["created_ts"] > h["gc_safe_point"] else ""
            whose = (f"the {h['gc_safe_point_of']}'s GC safe point" if h.get("gc_safe_point_of") else "GC safe point")
            print(f"readable ts range [{h['readable_from']}, {h['readable_to']}]: {whose} {h['gc_safe_point']}"
                  f"{created} to the resolved ts of its {h['regions']} region(s){lag}")
            if h.get("upstream_unasked"):
                print(f"  (the upstream's GC safe point is not known: {h['upstream_unasked']}; a read below it is "
                      "refused)")
        else:
            print(f"nothing readable from the store alone yet: resolved ts {h['resolved_ts']}, GC safe point "
                  f"{h['gc_safe_point']}{'; no region holds ' + h['gaps'] if h['gaps'] else ''}")
        print("schema versions:")
        for s in meta["schemas"]:
            print(f"  {s['schema_version']:>5} from ts {s['commit_ts']:<20} {s['change']}"
                  f"{'  (current)' if s['current'] else ''}")
            print(f"        {s['ddl']}")
        print(f"regions ({len(meta['regions'])}):")
        print(f"  {'id':>6} {'epoch':>5} {'applied':>9} {'resolved ts':>20} {'lag':>9} {'locks':>5}  range")
        for r in meta["regions"]:
            lag_s = "-" if r["lag_ms"] is None else f"{r['lag_ms'] / 1000:.1f}s"
            print(f"  {r['region_id']:>6} {r['epoch_version']:>5} {r['applied_index']:>9} {r['resolved_ts']:>20} "
                  f"{lag_s:>9} {r['open_locks']:>5}  {r['range']}")
        parts = meta["parts"]
        print(f"parts ({len(parts)}: {sum(p['rows'] for p in parts)} row versions, "
              f"{_size(sum(p['bytes'] for p in parts))}):")
        print(f"  {'part':>6} {'partition':>9} {'kind':6} {'rows':>8} {'bytes':>10} {'deletes':>7}  commit ts")
        for p in parts:
            print(f"  {p['part_id']:>6} {p['partition_id']:>9} {p['kind']:6} {p['rows']:>8} {_size(p['bytes']):>10} "
                  f"{p['delete_marks']:>7}  [{p['min_commit_ts']}, {p['max_commit_ts']}]")


def cmd_history(args: argparse.Namespace) -> int:
    tables = store_history(_require_store(args.dir), args.table, args.upstream, not args.no_upstream)
    if args.json:
        print(json.dumps(tables, indent=2, sort_keys=True))
    else:
        print_history(tables)
    return 0


# ---------------------------------------------------------------------------------------------
# compact, gc
# ---------------------------------------------------------------------------------------------

# compact/gc hold the store's write latch while they run, so no writer job applies meanwhile;
# long enough for a big compaction (released at the end; a crash leaves it to expire).
MAINTENANCE_LATCH_TTL_S = 3600.0


@contextlib.contextmanager
def _as_writer(path: str, what: str) -> Iterator[TxnMergeTreeEngine]:
    """The store's engine (the one it records), opened as the store's single writer under the
    write latch (refused while a writer job holds it)."""
    from pyspark_theflash import latch as latch_box
    from pyspark_theflash.engine.selection import open_writer_engine, recorded_engine
    from pyspark_theflash.store import Store

    root = _require_store(path)
    latch = latch_box.connect(str(root))
    try:
        try:
            holder = latch.acquire_write_latch(f"theflash store {what}", MAINTENANCE_LATCH_TTL_S)
        except TheFlashError as exc:
            raise CommandError(f"cannot {what} now: {exc}") from exc
        try:
            try:
                store = Store.open(str(root))
            except TheFlashError as exc:
                raise CommandError(str(exc)) from exc
            try:
                engine = open_writer_engine(store, recorded_engine(store))
            except BaseException:
                store.close()
                raise
            try:
                yield engine
            except TheFlashError as exc:
                raise CommandError(str(exc)) from exc
            finally:
                engine.close()
        finally:
            latch.release(holder.token)
    finally:
        latch.close()


def _parts_summary(root: str) -> tuple[int, int, int]:
    status = store_status(Path(root))
    t = status["total"]
    return t["parts"], t["rows"], t["bytes"]


def cmd_compact(args: argparse.Namespace) -> int:
    before = _parts_summary(args.dir)
    with _as_writer(args.dir, "compact") as engine:
        if args.table:
            with engine.store.snapshot() as view:
                table = view.table(args.table)
            result = engine.compact(table.id, force=True)
        else:
            result = engine.compact(force=True)
    after = _parts_summary(args.dir)
    print(f"compacted {args.table or 'every table'}: {before[0]} -> {after[0]} live parts, "
          f"{before[1]} -> {after[1]} row versions, {_size(before[2])} -> {_size(after[2])}")
    print(_describe_compaction(result))
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    if args.safe_point < 0:
        raise CommandError("--safe-point must be a non-negative TSO timestamp")
    before = _parts_summary(args.dir)
    with _as_writer(args.dir, "gc") as engine:
        result = engine.gc(args.safe_point)  # moves the safe point and compacts with it
    after = store_status(Path(args.dir))
    print(f"GC safe point now {after['gc_safe_point']} (asked {args.safe_point}"
          f"{'; held back by a read lease' if after['gc_safe_point'] < args.safe_point else ''}): "
          f"{before[1]} -> {after['total']['rows']} row versions, {_size(before[2])} -> {_size(after['total']['bytes'])}")
    print(_describe_compaction(result))
    return 0


def _describe_compaction(result: object) -> str:
    """One line about a CompactionResult: what was rewritten and what was deleted."""
    from pyspark_theflash.store.compaction import CompactionResult

    if not isinstance(result, CompactionResult):
        return f"  {result}"
    return (f"  {result.partitions} partition(s) rewritten: {result.parts_in} -> {result.parts_out} part(s), "
            f"{result.rows_in} -> {result.rows_out} rows read/written, {result.splits} split(s), "
            f"{result.files_deleted} file(s) deleted")


# ---------------------------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------------------------

def cmd_verify(args: argparse.Namespace) -> int:
    from pyspark_theflash.store.verify import verify_store

    root = _require_store(args.dir)
    if not args.online:
        writer = _live_writer(root)
        if writer is not None:
            raise CommandError(f"store {root} has a running writer, {writer.describe()}: the files it is writing "
                               f"would be reported as problems; check it while it runs with theflash store verify "
                               f"--online {root}, or stop the writer first (theflash writer stop --store {root})")
    try:
        report = verify_store(root, online=args.online)
    except TheFlashError as exc:
        raise CommandError(str(exc)) from exc
    from pyspark_theflash.lake.location import default_location
    from pyspark_theflash.lake.verify import verify as verify_lake

    try:  # the tables' Delta publication, if any (docs/delta.md): in the store or where its parts live
        lake = verify_lake(default_location(root))
    except OSError as exc:
        raise CommandError(f"{default_location(root)}: {exc}; check the location and its credentials") from exc
    clean = report.clean and lake.ok
    if args.json:
        print(json.dumps({**report.to_json(), "delta": {"tables": lake.tables, "versions": lake.versions,
                                                        "deletion_vectors": lake.vectors,
                                                        "problems": [{"file": f, "problem": p} for f, p in lake.problems]}},
                         indent=2))
    else:
        for problem in report.problems:
            print(problem)
        for _, text in lake.problems:
            print(text)
        if lake.tables:
            print(f"delta: {lake.tables} table(s), {lake.versions} version(s), {lake.vectors} deletion vector(s) checked, "
                  f"{len(lake.problems)} problem(s)", file=sys.stdout if lake.ok else sys.stderr)
        verdict = "clean" if report.clean else f"{len(report.problems)} problem(s)"
        unsummed = f", {report.without_checksum} written before checksums" if report.without_checksum else ""
        flight = f", {report.in_flight} in-flight file(s) of the running writer passed over" if report.in_flight else ""
        print(f"store {root}: {verdict} — {report.parts_checked} live part(s) ({report.checksums_checked} "
              f"checksum(s) compared{unsummed}), {report.rows_checked} rows, "
              f"{report.files_seen} file(s) checked at manifest version {report.manifest_version}{flight}",
              file=sys.stdout if report.clean else sys.stderr)
    return 0 if clean else 1


def _live_writer(root: str | Path) -> WriterHolder | None:
    """Who holds the store's write latch (a writer job, or a store compact/gc), if anyone does
    now: the latch's own liveness rule (an unexpired latch whose process, on this host, lives)."""
    from pyspark_theflash import latch as latch_box
    from pyspark_theflash.latch.local import LATCH_DB

    if not (Path(root) / LATCH_DB).exists():  # no writer ever ran here
        return None
    latch = latch_box.connect(str(root))
    try:
        return latch.holder()
    finally:
        latch.close()


def cmd_convert(args: argparse.Namespace) -> int:
    import json

    from pyspark_theflash.cli import CommandError
    from pyspark_theflash.engine.clickhouse.convert import convert_to_clickhouse, describe
    from pyspark_theflash.errors import TheFlashError

    _require_store(args.src)
    try:
        result = convert_to_clickhouse(args.src, args.dst)
    except TheFlashError as exc:
        raise CommandError(str(exc)) from None
    print(json.dumps({"converted": args.src, "into": args.dst, "engine": args.to, **describe(result)}))
    return 0
