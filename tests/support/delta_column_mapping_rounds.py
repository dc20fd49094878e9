"""Rounds of ``shop.items`` through RENAME COLUMN, DROP COLUMN and a re-add of the dropped
column's name (a new column id, another type), each published as a Delta version, with the
stable part written before the first change kept (no compaction until the last round): what a
column-mapped Delta table must name in place, and what each reader must read of it.

And a table published before column mapping (its version 0 rewritten as that code wrote it)
turning it on at its next version. Used by tests/integration/test_delta_column_mapping.py
(delta-rs, DuckDB) and tests/spark/test_delta_spark_column_mapping.py (delta-spark)."""
from __future__ import annotations

import copy
import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pyspark_theflash.lake import delta_log
from pyspark_theflash.lake.publish import Publisher, table_root
from pyspark_theflash.schema import TableInfo
from pyspark_theflash.store import Store, StoreOptions
from pyspark_theflash.store.integrity import file_checksum
from store_events import DB, committed, event, items_table, key, resolved_ts, row

T1 = items_table()   # id (1), name (2), price DECIMAL(10,2) (3)


def changed(info: TableInfo, version: int, *, rename: tuple[str, str] | None = None, drop: str | None = None,
            add: tuple[int, str, dict[str, Any]] | None = None) -> TableInfo:
    """``info`` after one DDL, as TiDB's table info has it: a RENAME keeps the column id, a DROP
    removes the column, an ADD gives the new column the next id (``add``: id, name, type)."""
    j = copy.deepcopy(info.to_json())
    cols = j["cols"]
    if rename is not None:
        col = next(c for c in cols if c["name"]["L"] == rename[0])
        col["name"] = {"O": rename[1], "L": rename[1]}
    if drop is not None:
        cols[:] = [c for c in cols if c["name"]["L"] != drop]
    if add is not None:
        cid, name, tp = add
        new = copy.deepcopy(cols[0])
        new.update({"id": cid, "name": {"O": name, "L": name}, "origin_default": None, "default": None, "type": tp})
        cols.append(new)
        j["max_col_id"] = max(int(j.get("max_col_id") or 0), cid)
    for offset, c in enumerate(cols):
        c["offset"] = offset
    j["schema_version"] = version
    return TableInfo.from_json(j, DB)


VARCHAR_16 = {"Tp": 15, "Flag": 0, "Flen": 16, "Decimal": 0, "Charset": "utf8mb4", "Collate": "utf8mb4_bin",
              "Elems": None}
T2 = changed(T1, 2, rename=("name", "title"))              # RENAME COLUMN name TO title (id 2 stays)
T3 = changed(T2, 3, drop="price")                          # DROP COLUMN price (id 3 gone)
T4 = changed(T3, 4, add=(4, "price", VARCHAR_16))          # ADD COLUMN price VARCHAR(16): id 4, NULL default


@dataclass
class Published:
    """What the rounds published: the table's root, and per version (version, its columns,
    TheFlash's own rows at its ts ordered by id); the stable part every version names in place."""

    root: Path
    versions: list[tuple[int, list[str], list[tuple[Any, ...]]]] = field(default_factory=list)
    stable_path: str = ""
    converted: list[int] = field(default_factory=list)      # files each round converted
    store_parts: list[list[str]] = field(default_factory=list)   # the store's Parquet parts each version names


class Upstream:
    """Writes to the store as the binlog would: one region, commits then its resolved ts."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.index = 0
        self.now_ms = int(time.time() * 1000) - 60_000   # TSOs of this minute: Delta's time travel checks retention
        self.table = T1

    def ts(self) -> int:
        self.now_ms += 7
        return self.now_ms << 18

    def commit(self, rows: list[tuple[int, dict[str, Any] | None]]) -> int:
        ts = self.ts()
        values = [committed(key(self.table, h), None if v is None else row(self.table, id=h, **v), ts) for h, v in rows]
        self.index += 1
        self.store.write([event(1, self.index, values)])
        self.index += 1
        self.store.write([resolved_ts(1, self.index, ts)])
        return ts

    def ddl(self, info: TableInfo) -> None:
        self.store.put_schema(DB, info.to_json(), commit_ts=self.ts())
        self.table = info


def own_rows(store: Store, ts: int, columns: list[str]) -> list[tuple[Any, ...]]:
    t = store.scan_table(T1.id, ts, columns=columns).sort_by("id")
    return [tuple(r.values()) for r in t.to_pylist()]


def publish_through_column_changes(where: Path) -> Published:
    """The rounds: 300 rows compacted into one stable part (version 0), then after each of
    RENAME, DROP, re-ADD some upserts and deletes flushed as deltas (versions 1-3), then a
    compaction (version 4: a new stable part, written with the columns by id)."""
    store = Store.open(where, options=StoreOptions(row_group_rows=64, part_compression="zstd"))
    store.put_schema(DB, T1.to_json())
    up = Upstream(store)
    publisher = Publisher(store.root)
    out = Published(table_root(store.root, T1.id))

    def publish(columns: list[str]) -> None:
        done = publisher.publish()
        (pub,) = done.tables
        assert pub.version == len(out.versions), pub
        out.versions.append((pub.version, columns, own_rows(store, done.ts, columns)))
        out.converted.append(pub.converted)
        log = delta_log.replay(out.root)
        out.store_parts.append(sorted(p for p in log.files if p.startswith("p")))

    up.commit([(h, {"name": f"seed{h}", "price": f"{h}.25"}) for h in range(300)])
    store.flush()
    store.compact(force=True)
    with store.snapshot() as view:
        (stable,) = [p.path for p in view.parts(T1.id)]
    out.stable_path = stable[len(f"tables/{T1.id}/"):]
    publish(["id", "name", "price"])

    up.ddl(T2)
    up.commit([(h, {"title": f"renamed{h}", "price": "1.50"}) for h in range(0, 300, 7)] + [(301, None), (3, None)])
    store.flush()
    publish(["id", "title", "price"])

    up.ddl(T3)
    up.commit([(h, {"title": f"dropped{h}"}) for h in range(0, 300, 11)] + [(400, {"title": "new"})])
    store.flush()
    publish(["id", "title"])

    up.ddl(T4)
    up.commit([(h, {"title": f"readded{h}", "price": f"p{h}"}) for h in range(0, 300, 13)])
    store.flush()
    publish(["id", "title", "price"])

    up.commit([(5, {"title": "compacted", "price": "p5"})])
    store.flush()
    store.compact(force=True)
    publish(["id", "title", "price"])
    store.close()
    return out


def rewrite_part_as_before_ids(store: Path, rel: str) -> None:
    """Rewrites the stable part ``rel`` as the store wrote parts before naming columns by id: the
    TiDB names of its schema version, no field ids, no column list in the manifest."""
    conn = sqlite3.connect(store / "manifest.db")
    try:
        (columns,) = conn.execute("SELECT columns FROM parts WHERE file = ?", (rel,)).fetchone()
        by_physical = {name: col.name for (cid, name) in json.loads(columns) for col in T1.columns if col.id == cid}
        path = store / rel
        t = pq.read_table(path)
        t = t.rename_columns([by_physical.get(n, n) for n in t.column_names]).replace_schema_metadata(None)
        t = t.cast(pa.schema([f.remove_metadata() for f in t.schema]))   # no field ids
        pq.write_table(t, path, compression="zstd")
        conn.execute("UPDATE parts SET columns = NULL, bytes = ?, checksum = ? WHERE file = ?",
                     (path.stat().st_size, file_checksum(path), rel))
        conn.commit()
    finally:
        conn.close()


def rewrite_version_0_as_before_column_mapping(root: Path, store: Path, part_rel: str) -> None:
    """Rewrites version 0 of the table at ``root`` as the publication wrote it before column
    mapping: no ``columnMapping`` feature, no mapping in the schema or the properties, and the
    part ``part_rel`` (by TiDB names: ``rewrite_part_as_before_ids``) named in place, not converted."""
    log = root / "_delta_log" / "00000000000000000000.json"
    actions = []
    for line in log.read_text().splitlines():
        action = json.loads(line)
        if "protocol" in action:
            for key in ("readerFeatures", "writerFeatures"):
                action["protocol"][key] = [f for f in action["protocol"][key] if f != "columnMapping"]
        elif "metaData" in action:
            meta = action["metaData"]
            schema = json.loads(meta["schemaString"])
            for f in schema["fields"]:
                f["metadata"] = {}
            meta["schemaString"] = json.dumps(schema, separators=(",", ":"))
            meta["configuration"] = {k: v for k, v in meta["configuration"].items() if "columnMapping" not in k}
        elif "add" in action:
            (root / action["add"]["path"]).unlink()          # the conversion the old code did not make
            action["add"]["path"] = part_rel[len(f"tables/{T1.id}/"):]
            action["add"]["size"] = (store / part_rel).stat().st_size
        actions.append(json.dumps(action))
    log.write_text("\n".join(actions) + "\n")
    # the code before wrote no version checksum; the one written for the version as it was would
    # now contradict the log (delta-rs takes the protocol and metadata from it: a wrong one reads NULLs)
    (root / "_delta_log" / "00000000000000000000.crc").unlink()


def publish_across_turning_column_mapping_on(where: Path) -> Published:
    """A table whose version 0 is as the publication wrote it before column mapping (a stable
    part named in place by TiDB names), then a RENAME and version 1 by this code, which turns
    column mapping on; each version with its columns and TheFlash's rows at its ts."""
    options = StoreOptions(row_group_rows=64, part_compression="zstd")
    store = Store.open(where, options=options)
    store.put_schema(DB, T1.to_json())
    up = Upstream(store)
    up.commit([(h, {"name": f"seed{h}", "price": f"{h}.25"}) for h in range(200)])
    store.flush()
    store.compact(force=True)
    with store.snapshot() as view:
        (old,) = [p.path for p in view.parts(T1.id)]
    store.close()
    rewrite_part_as_before_ids(where, old)
    store = Store.open(where, options=options)
    up.store = store
    out = Published(table_root(store.root, T1.id), stable_path=old[len(f"tables/{T1.id}/"):])
    first = Publisher(store.root).publish()
    rewrite_version_0_as_before_column_mapping(out.root, where, old)
    out.versions.append((0, ["id", "name", "price"], own_rows(store, first.ts, ["id", "name", "price"])))
    out.converted.append(first.tables[0].converted)
    up.ddl(T2)                                               # RENAME name TO title
    up.commit([(7, {"title": "after", "price": "2.00"})])
    store.flush()
    done = Publisher(store.root).publish()                   # a new process: replays version 0
    assert done.tables[0].version == 1, done.tables[0]
    out.versions.append((1, ["id", "title", "price"], own_rows(store, done.ts, ["id", "title", "price"])))
    out.converted.append(done.tables[0].converted)
    store.close()
    return out


def check_json_schema(published: Published) -> None:
    """Each column of the newest version is mapped by id: its TiDB id and ``c<id>``."""
    log = delta_log.replay(published.root)
    fields = json.loads(log.schema_string or "{}")["fields"]
    assert [(f["name"], f["metadata"]["delta.columnMapping.id"], f["metadata"]["delta.columnMapping.physicalName"])
            for f in fields] == [("id", 1, "c1"), ("title", 2, "c2"), ("price", 4, "c4")]
    assert log.metadata["configuration"]["delta.columnMapping.mode"] == "id"
    assert log.metadata["configuration"]["delta.columnMapping.maxColumnId"] == "4"
    assert "columnMapping" in log.protocol["readerFeatures"] and "columnMapping" in log.protocol["writerFeatures"]
