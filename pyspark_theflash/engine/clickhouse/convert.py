"""``theflash store convert --to clickhouse SRC DST``: a native store copied into a new store
of the ClickHouse engine, as of one manifest version of SRC.

DST gets SRC's manifest (SQLite's online backup: one consistent version — regions and their
applied index, schemas, open locks, the binlog position, the part list), so a writer started
on DST with ``--engine clickhouse`` resumes where SRC's stopped. Its live parts become records
(no file; their statistics stay for read planning), and every version those parts hold (range
tombstones applied; columns by id under the current schema, origin defaults for columns added
later) goes from SRC's files into DST's ClickHouse tables: reads at any ts SRC could serve
read the same rows from DST. A read lease on SRC pins the parts while they are read, so SRC's
writer may keep running.
"""
from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, replace
from pathlib import Path


from pyspark_theflash.engine.clickhouse.errors import ClickHouseEngineError
from pyspark_theflash.store.txn_merge_tree import IN_ENGINE


@dataclass(frozen=True)
class ConversionResult:
    manifest_version: int
    tables: int
    parts: int
    versions: int
    seconds: float


def convert_to_clickhouse(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> ConversionResult:
    from pyspark_theflash.engine.selection import META_KEY, recorded_engine
    from pyspark_theflash.store import Store
    from pyspark_theflash.store import manifest as mf

    t0 = time.monotonic()
    src_root, dst_root = Path(src), Path(dst)
    if dst_root.exists() and any(dst_root.iterdir()):
        raise ClickHouseEngineError(f"{dst_root} is not empty: convert writes a new store; give a new directory")
    source = Store.open(src_root, readonly=True)
    try:
        engine = recorded_engine(source)
        if engine != "native":
            raise ClickHouseEngineError(f"store {src_root} already uses the {engine} engine")
        with source.snapshot() as view:
            safe_point = int(view.gc_safe_point() or 0)
        lease = source.leases.acquire(max(safe_point, 1 << 62), 3600.0, holder=f"convert to {dst_root}")
        try:
            dst_root.mkdir(parents=True, exist_ok=True)
            target = sqlite3.connect(str(mf.manifest_path(dst_root)))
            try:
                with sqlite3.connect(str(mf.manifest_path(src_root))) as from_conn:
                    from_conn.backup(target)
                target.execute("DELETE FROM leases")
                target.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (META_KEY, "clickhouse"))
                target.execute("DELETE FROM parts WHERE removed_version IS NOT NULL")
                files = {int(pid): str(rel) for pid, rel in target.execute("SELECT part_id, file FROM parts")}
                target.execute("UPDATE parts SET file = ?", (IN_ENGINE,))
                target.commit()
            finally:
                target.close()
            version, tables, parts, versions = _load_rows(src_root, dst_root, files)
        finally:
            source.leases.release(lease.id)
    finally:
        source.close()
    return ConversionResult(version, tables, parts, versions, time.monotonic() - t0)


def _load_rows(src_root: Path, dst_root: Path, files: dict[int, str]) -> tuple[int, int, int, int]:
    """Every version of DST's parts, read from their files in SRC, into DST's ClickHouse
    tables; (manifest version, tables, parts, versions)."""
    from pyspark_theflash.engine.clickhouse.engine import ClickHouseEngine
    from pyspark_theflash.store import Store
    from pyspark_theflash.store.row_sink import BufferedRows
    from pyspark_theflash.store.parts import DEFAULT_BATCH_ROWS, PartsReader

    store = Store.open(dst_root)
    ch = ClickHouseEngine(store)
    parts = versions = 0
    try:
        with store.snapshot() as view:
            version = int(view.version)
            tables = list(view.tables())
            # a partitioned table's rows are its partitions' (every one it had, for reads at past ts)
            tables += [h.latest for h in view.histories().values() if h.latest.partition_of is not None]
            refs = {t.id: view.parts(t.id) for t in tables}
        for info in tables:
            latest = store.histories()[info.id].latest
            reader = PartsReader(src_root, latest, (1 << 64) - 1, (None, None), None, None, (), DEFAULT_BATCH_ROWS)
            for ref in refs[info.id]:
                rows = reader.visible_versions(replace(ref, path=files[ref.part_id]))
                parts += 1
                if rows.num_rows == 0:
                    continue
                versions += rows.num_rows
                batch = BufferedRows(info.id, latest.schema_version, [rows], [], [c.id for c in latest.columns])
                ch.tables_ch.write_flush(int(ref.added_version), [batch], [])
    finally:
        ch.close()
    return version, len(tables), parts, versions


def describe(result: ConversionResult) -> dict[str, object]:
    return {"manifest_version": result.manifest_version, "tables": result.tables, "parts": result.parts,
            "versions": result.versions, "seconds": round(result.seconds, 3)}


__all__ = ["ConversionResult", "convert_to_clickhouse", "describe"]
