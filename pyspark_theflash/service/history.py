"""What a store holds of one table, as the rows of four metadata tables (Iceberg's
``db.t.history``, ``db.t.files``...), all from one read of the manifest:

* ``history``: the readable range, one row: a read of the store alone is served at any ts in
  [``readable_from``, ``readable_to``]: from the GC safe point (the later of the store's and the
  upstream's, when the upstream answers: a read below the upstream's is refused) or the table's
  CREATE/TRUNCATE, whichever is later, to the table's resolved ts (the lowest resolved ts of the regions over
  it); ``lag_ms`` is how far the resolved ts trails the clock.
* ``schemas``: each schema version with the commit ts it is in force from and its definition
  as ``CREATE TABLE`` text, and what changed from the version before.
* ``regions``: the live regions over the table: id, key range as handles, epoch, applied
  index, resolved ts, lag and open locks.
* ``parts``: the live parts: partition, kind (delta / stable), rows, bytes, delete marks,
  min/max handle and commit ts, schema version and file.

``theflash store history`` prints them, the service answers ``GET /v1/tables/{db.t}/{kind}``
and the catalog reads them as ``theflash.db.t.history`` (``.schemas``, ``.regions``, ``.parts``).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, NotRequired, TypedDict

from pyspark_theflash.schema.partitioning import physical_ids_of

if TYPE_CHECKING:
    from pyspark_theflash.schema import TableInfo
    from pyspark_theflash.store.views import RegionState, StoreView

KINDS = ("history", "schemas", "regions", "parts")

# Each kind's columns and their types (Arrow type names the JVM maps: int64, string, bool).
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "history": (("table", "string"), ("table_id", "int64"), ("schema_version", "int64"),
                ("gc_safe_point", "int64"), ("created_ts", "int64"), ("readable_from", "int64"),
                ("readable_to", "int64"), ("resolved_ts", "int64"), ("lag_ms", "int64"), ("regions", "int64"),
                ("gaps", "string"), ("manifest_version", "int64")),
    "schemas": (("schema_version", "int64"), ("commit_ts", "int64"), ("current", "bool"), ("change", "string"),
                ("ddl", "string")),
    "regions": (("region_id", "int64"), ("range", "string"), ("start_key", "string"), ("end_key", "string"),
                ("epoch_version", "int64"), ("applied_index", "int64"), ("resolved_ts", "int64"), ("lag_ms", "int64"),
                ("open_locks", "int64")),
    "parts": (("part_id", "int64"), ("physical_table_id", "int64"), ("partition_id", "int64"), ("kind", "string"),
              ("rows", "int64"), ("bytes", "int64"), ("delete_marks", "int64"), ("min_handle", "string"),
              ("max_handle", "string"), ("min_commit_ts", "int64"), ("max_commit_ts", "int64"),
              ("schema_version", "int64"), ("file", "string")),
}


class HistoryRow(TypedDict):
    """The ``history`` metadata table's one row: the readable ts range of the table. ``theflash
    store history`` adds whose GC safe point bounds it, and why the upstream's is not known."""

    table: str
    table_id: int
    schema_version: int
    gc_safe_point: int
    created_ts: int
    readable_from: int
    readable_to: int
    resolved_ts: int
    lag_ms: int | None
    regions: int
    gaps: str | None
    manifest_version: int
    gc_safe_point_of: NotRequired[str]
    upstream_unasked: NotRequired[str | None]


class SchemaRow(TypedDict):
    """A row of the ``schemas`` metadata table: one schema version of the table."""

    schema_version: int
    commit_ts: int
    current: bool
    change: str
    ddl: str


class RegionMetaRow(TypedDict):
    """A row of the ``regions`` metadata table: a live region holding rows of the table."""

    region_id: int
    range: str
    start_key: str
    end_key: str
    epoch_version: int
    applied_index: int
    resolved_ts: int
    lag_ms: int | None
    open_locks: int


class PartMetaRow(TypedDict):
    """A row of the ``parts`` metadata table: a live part of one of the table's physical tables."""

    part_id: int
    physical_table_id: int
    partition_id: int
    kind: str
    rows: int
    bytes: int
    delete_marks: int
    min_handle: str | None
    max_handle: str | None
    min_commit_ts: int | None
    max_commit_ts: int | None
    schema_version: int
    file: str | None


class TableMetadata(TypedDict):
    """The four metadata tables of one table (``KINDS``; their columns: ``COLUMNS``)."""

    history: list[HistoryRow]
    schemas: list[SchemaRow]
    regions: list[RegionMetaRow]
    parts: list[PartMetaRow]


def tso_lag_ms(ts: int, now_ms: float | None = None) -> int:
    """How many milliseconds the TSO ``ts`` (physical ms << 18) trails the clock (0 if ahead)."""
    now = time.time() * 1000 if now_ms is None else now_ms
    return max(0, int(now - (int(ts) >> 18)))


# How long a metadata read waits for the upstream's GC safe point before going on without it.
UPSTREAM_WAIT_S = 5.0


def upstream_gc_safe_point(address: str | None, timeout_s: float = UPSTREAM_WAIT_S) -> tuple[int | None, str]:
    """The GC safe point of the upstream at ``address`` (``pd://`` or ``grpc://``) and "", or
    None and why there is none (no address, no answer within ``timeout_s``, an error)."""
    if not address:
        return None, "the store records no upstream"
    answer: dict[str, int | str] = {}

    def ask() -> None:
        from pyspark_theflash.upstream_client.client import connect

        client = None
        try:
            client = connect(address)
            answer["ts"] = int(client.gc_safe_point())
        except Exception as exc:  # unreachable, or not an upstream: the store's own safe point stands
            answer["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        finally:
            if client is not None and hasattr(client, "close"):
                client.close()

    asking = threading.Thread(target=ask, name="theflash-gc-safe-point", daemon=True)
    asking.start()
    asking.join(timeout_s)
    if "ts" in answer:
        return int(answer["ts"]), ""
    return None, (f"the upstream {address} did not answer within {timeout_s:g}s" if "error" not in answer
                  else f"the upstream {address} did not answer ({answer['error']})")


def table_metadata(view: "StoreView", table: str,
                   upstream_safe_point: int | None = None) -> TableMetadata:
    """The four metadata tables of ``table`` (``db.t``, or its id) in ``view``; the readable range
    starts no lower than ``upstream_safe_point`` (the upstream's GC safe point, when known)."""
    from pyspark_theflash.scan.context import physical_key_ranges
    from pyspark_theflash.scan.learner import ranges_overlap, region_id, region_is_live
    from pyspark_theflash.scan.resolved import table_resolved_ts

    info = view.table(table)
    name = f"{info.db}.{info.name}"
    now_ms = time.time() * 1000
    ranges = physical_key_ranges(info)
    physical = physical_ids_of(info)
    resolved = table_resolved_ts(view, info, name)
    history = view.histories().get(int(info.id))
    created = history.created_ts if history is not None else 0
    safe_point = max(int(view.gc_safe_point()), int(upstream_safe_point or 0))
    history_rows: list[HistoryRow] = [{
        "table": name, "table_id": int(info.id), "schema_version": int(info.schema_version),
        "gc_safe_point": safe_point, "created_ts": int(created), "readable_from": max(safe_point, int(created)),
        "readable_to": int(resolved.ts), "resolved_ts": int(resolved.ts),
        "lag_ms": tso_lag_ms(resolved.ts, now_ms) if resolved.ts else None, "regions": len(resolved.regions),
        "gaps": "; ".join(resolved.gaps) or None, "manifest_version": int(view.version)}]

    schemas: list[SchemaRow] = []
    if history is not None:
        infos, stamps = history.infos, history.commit_ts
        newest = max(int(i.schema_version) for i in infos)
        for i, (version, ts) in enumerate(zip(infos, stamps)):
            schemas.append({"schema_version": int(version.schema_version), "commit_ts": int(ts),
                            "current": int(version.schema_version) == newest,
                            "change": schema_change(infos[i - 1] if i else None, version),
                            "ddl": create_table_text(version)})

    conn = view.conn()
    locks = {int(r): int(n) for r, n in conn.execute("SELECT region_id, COUNT(*) FROM locks GROUP BY region_id")}
    regions: list[RegionMetaRow] = []
    for r in view.regions():
        if not region_is_live(r) or not any(ranges_overlap(bytes(r.start_key), bytes(r.end_key), lo, hi)
                                            for lo, hi in ranges):
            continue
        rid = region_id(r)
        regions.append({"region_id": rid, "range": _handles(view, r, physical),
                        "start_key": bytes(r.start_key).hex(), "end_key": bytes(r.end_key).hex(),
                        "epoch_version": int(r.epoch_version), "applied_index": int(r.applied_index),
                        "resolved_ts": int(r.resolved_ts),
                        "lag_ms": tso_lag_ms(r.resolved_ts, now_ms) if r.resolved_ts else None,
                        "open_locks": locks.get(rid, 0)})

    parts: list[PartMetaRow] = []
    for tid in physical:
        for p in view.parts(int(tid)):
            parts.append({"part_id": int(p.part_id), "physical_table_id": int(tid),
                          "partition_id": int(p.partition_id), "kind": str(p.kind), "rows": int(p.rows),
                          "bytes": int(p.bytes), "delete_marks": int(p.delete_marks),
                          "min_handle": _handle_text(p.min_handle), "max_handle": _handle_text(p.max_handle),
                          "min_commit_ts": p.min_commit_ts, "max_commit_ts": p.max_commit_ts,
                          "schema_version": int(p.schema_version), "file": str(p.path) or None})
    return {"history": history_rows, "schemas": schemas, "regions": regions, "parts": parts}


def store_table_metadata(root: str | Path, table: str, ask_upstream: bool = False) -> TableMetadata:
    """``table_metadata`` of the store at ``root``, read without opening it as a writer; with
    ``ask_upstream`` the readable range also respects the recorded upstream's GC safe point."""
    from pyspark_theflash.store import manifest as mf
    from pyspark_theflash.store.views import StoreView

    conn = mf.connect(Path(root), create=False)
    mf.check_format(conn, Path(root))
    upstream = mf.get_meta(conn, "upstream") if ask_upstream else None
    upstream_safe_point = upstream_gc_safe_point(str(upstream) if upstream else None)[0] if ask_upstream else None
    with StoreView(conn) as view:
        return table_metadata(view, table, upstream_safe_point)


def _handles(view: StoreView, region: RegionState, physical: tuple[int, ...]) -> str:
    out = []
    for tid in physical:
        rng = view.region_handle_range(region, int(tid))
        if rng is not None:
            lo, hi = (_handle_text(h) for h in rng)
            out.append(f"{'' if len(physical) == 1 else f't{tid}'}[{'-inf' if lo is None else lo}, "
                       f"{'+inf' if hi is None else hi})")
    return " ".join(out)


def _handle_text(handle: object) -> str | None:
    if handle is None:
        return None
    if isinstance(handle, (bytes, bytearray, memoryview)):
        return "0x" + bytes(handle).hex()
    return str(handle)


def create_table_text(info: TableInfo) -> str:
    """The table at one schema version as TiDB's ``SHOW CREATE TABLE`` would write it (columns,
    primary key; no indexes or options, which the replica does not keep)."""
    cols = []
    for c in info.columns:
        if getattr(c, "is_public", True):
            cols.append(f"`{c.name}` {c.type_text}{' NOT NULL' if c.not_null else ''}")
    pk = list(info.primary_key)
    if pk:
        cols.append("PRIMARY KEY (" + ", ".join(f"`{n}`" for n in pk) + ")")
    return f"CREATE TABLE `{info.db}`.`{info.name}` (" + ", ".join(cols) + ")"


def schema_change(before: TableInfo | None, after: TableInfo) -> str:
    """What changed from ``before`` to ``after`` as DDL clauses (``CREATE TABLE`` for the first)."""
    if before is None:
        return "CREATE TABLE"
    changes = []
    if (before.db, before.name) != (after.db, after.name):
        changes.append(f"RENAME TO `{after.db}`.`{after.name}`")
    old = {c.id: c for c in before.columns}
    new = {c.id: c for c in after.columns}
    for cid, c in new.items():
        if cid not in old:
            changes.append(f"ADD COLUMN `{c.name}` {c.type_text}")
        elif old[cid].name != c.name or old[cid].type_text != c.type_text:
            changes.append(f"CHANGE COLUMN `{old[cid].name}` `{c.name}` {c.type_text}")
    changes += [f"DROP COLUMN `{c.name}`" for cid, c in old.items() if cid not in new]
    return ", ".join(changes) or "no column change (index, option or partition DDL)"
