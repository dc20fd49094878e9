"""Building binlog events by hand for store tests (shared by the store's test modules).

Rows use the real codec (record keys, row format v2) and tables are built with the schema
box's builder, so the bytes are exactly what TiDB/TiKV would put in the log.

    t = items_table()
    k = key(t, 7)
    ev = event(1, 10, [prewrite(k, row(t, id=7, name="a"), start_ts=100), commit(k, 100, 110)])
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from pyspark_theflash.codec.datum import Datum
from pyspark_theflash.codec.keys import encode_common_handle_key, encode_record_key, encode_region_key, record_prefix
from pyspark_theflash.codec.row_v2 import encode_row_for_table
from pyspark_theflash.codec.txn import Lock, Write
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.schema import builder, row_columns
from pyspark_theflash.schema.table_info import TableInfo

Row = binlog_pb2.Row
PUT, DELETE, LOCK = binlog_pb2.PUT, binlog_pb2.DELETE, binlog_pb2.LOCK
DB = "shop"


# --- tables and rows ----------------------------------------------------------------------------

def items_table(table_id: int = 100, schema_version: int = 1, *, with_price: bool = True,
                extra: Sequence[Any] = (), name: str = "items") -> TableInfo:
    """``shop.items``: an int ``_tidb_rowid`` handle, ``id`` BIGINT, ``name`` VARCHAR,
    optionally ``price`` DECIMAL(10,2), plus ``extra`` builder columns (for schema changes)."""
    cols = [builder.column("id", "BIGINT"), builder.column("name", "VARCHAR(64)")]
    if with_price:
        cols.append(builder.column("price", "DECIMAL(10,2)"))
    cols.extend(extra)
    return builder.table(table_id, name, cols, db=DB, schema_version=schema_version)


def table_json(table: TableInfo) -> dict[str, Any]:
    return table.to_json()


def row(table: TableInfo, **values: Any) -> bytes:
    """A row value (format v2) of ``table``."""
    return encode_row_for_table(row_columns(table), values)


def codes_table(table_id: int = 400, schema_version: int = 1) -> TableInfo:
    """``shop.codes``: a clustered VARCHAR primary key ``code`` (a common handle) and ``qty``."""
    cols = [builder.column("code", "VARCHAR(16)", primary_key=True), builder.column("qty", "INT")]
    return builder.table(table_id, "codes", cols, primary_key=["code"], db=DB, schema_version=schema_version)


def common_key(table: TableInfo | int, *values: Any) -> bytes:
    """The record key of a clustered common-handle row: the memcomparable key datums
    (strings as bytes datums, ints as int datums)."""
    tid = table if isinstance(table, int) else table.id
    datums = [Datum("int", v) if isinstance(v, int) else Datum("bytes", v) for v in values]
    return encode_common_handle_key(tid, datums)


def common_handle(*values: Any) -> bytes:
    """The ``_tidb_rowid`` of a common-handle row: its key after ``t{id}_r``."""
    return common_key(0, *values)[11:]


def key(table: TableInfo | int, handle: int) -> bytes:
    tid = table if isinstance(table, int) else table.id
    return encode_record_key(tid, handle)


def boundary(table: TableInfo | int, handle: int | bytes | None = None) -> bytes:
    """A PD-encoded region boundary: the table's first record key, or a handle's key (an int
    handle, or a raw record key for common handles)."""
    tid = table if isinstance(table, int) else table.id
    if isinstance(handle, bytes):
        raw = handle
    else:
        raw = record_prefix(tid) if handle is None else encode_record_key(tid, handle)
    return encode_region_key(raw)


# --- rows of an Entries event -------------------------------------------------------------------

def prewrite(k: bytes, value: bytes | None, start_ts: int, primary: bytes | None = None,
             op: int | None = None, ttl: int = 3000) -> binlog_pb2.Row:
    """A PREWRITE; ``value=None`` means a DELETE (unless ``op`` says otherwise)."""
    if op is None:
        op = DELETE if value is None else PUT
    return Row(type=Row.PREWRITE, op=op, start_ts=start_ts, key=k, value=value or b"",
               primary=primary if primary is not None else k, ttl=ttl)


def commit(k: bytes, start_ts: int, commit_ts: int) -> binlog_pb2.Row:
    return Row(type=Row.COMMIT, start_ts=start_ts, commit_ts=commit_ts, key=k)


def rollback(k: bytes, start_ts: int) -> binlog_pb2.Row:
    return Row(type=Row.ROLLBACK, start_ts=start_ts, key=k)


def committed(k: bytes, value: bytes | None, commit_ts: int, start_ts: int | None = None,
              op: int | None = None) -> binlog_pb2.Row:
    """A 1PC write (or initial-snapshot row); ``value=None`` is a delete."""
    if op is None:
        op = DELETE if value is None else PUT
    return Row(type=Row.COMMITTED, op=op, start_ts=start_ts if start_ts is not None else commit_ts - 1,
               commit_ts=commit_ts, key=k, value=value or b"")


# --- events ---------------------------------------------------------------------------------------

def epoch(version: int = 1, conf_ver: int = 1) -> binlog_pb2.RegionEpoch:
    return binlog_pb2.RegionEpoch(version=version, conf_version=conf_ver)


def event(region_id: int, index: int, rows: Iterable[binlog_pb2.Row] = (), epoch_version: int = 1) -> binlog_pb2.Event:
    return binlog_pb2.Event(region_id=region_id, index=index, epoch=epoch(epoch_version),
                            entries=binlog_pb2.Entries(rows=list(rows)))


def resolved_ts(region_id: int, index: int, ts: int) -> binlog_pb2.Event:
    return binlog_pb2.Event(region_id=region_id, index=index, resolved_ts=ts)


def region(region_id: int, start: bytes = b"", end: bytes = b"", version: int = 1,
           conf_ver: int = 1) -> binlog_pb2.Region:
    """A region with PD-encoded boundaries (use ``boundary`` to make them)."""
    return binlog_pb2.Region(id=region_id, start_key=start, end_key=end, epoch=epoch(version, conf_ver))


def split_event(region_id: int, index: int, regions: Sequence[binlog_pb2.Region]) -> binlog_pb2.Event:
    return binlog_pb2.Event(region_id=region_id, index=index,
                            admin=binlog_pb2.Admin(split=binlog_pb2.Split(regions=list(regions))))


def merge_event(region_id: int, index: int, source: binlog_pb2.Region, target: binlog_pb2.Region) -> binlog_pb2.Event:
    return binlog_pb2.Event(region_id=region_id, index=index,
                            admin=binlog_pb2.Admin(merge=binlog_pb2.Merge(source=source, target=target)))


def removed_event(region_id: int, index: int) -> binlog_pb2.Event:
    return binlog_pb2.Event(region_id=region_id, index=index,
                            admin=binlog_pb2.Admin(removed=binlog_pb2.RegionRemoved()))


def snapshot_write(k: bytes, commit_ts: int, start_ts: int, value: bytes | None, *,
                   short: bool = True, write_type: str | None = None) -> binlog_pb2.SnapshotWrite:
    """One committed version as TiKV's write CF holds it: a Put with the value inline
    (``short``) or in the default CF, a Delete when ``value`` is None."""
    wt = write_type or ("D" if value is None else "P")
    inline = value if (short and wt == "P") else None
    w = Write(write_type=wt, start_ts=start_ts, short_value=inline)
    return binlog_pb2.SnapshotWrite(key=k, commit_ts=commit_ts, write=w.to_bytes(),
                                    value=b"" if inline is not None or value is None else value)


def snapshot_lock(k: bytes, start_ts: int, value: bytes | None, primary: bytes | None = None, *,
                  ttl: int = 3000, lock_type: str | None = None, short: bool = True) -> binlog_pb2.SnapshotLock:
    lt = lock_type or ("D" if value is None else "P")
    inline = value if (short and lt == "P") else None
    lock = Lock(lock_type=lt, primary=primary if primary is not None else k, start_ts=start_ts, ttl=ttl,
                short_value=inline)
    return binlog_pb2.SnapshotLock(key=k, lock=lock.to_bytes(),
                                   value=b"" if inline is not None or value is None else value)


def snapshot_event(region_id: int, index: int, reg: binlog_pb2.Region,
                   writes: Sequence[binlog_pb2.SnapshotWrite] = (),
                   locks: Sequence[binlog_pb2.SnapshotLock] = ()) -> binlog_pb2.Event:
    return binlog_pb2.Event(region_id=region_id, index=index, epoch=reg.epoch,
                            snapshot=binlog_pb2.RegionSnapshot(region=reg, writes=list(writes), locks=list(locks)))


# --- reading back ---------------------------------------------------------------------------------

def rows_by_id(table: Any) -> dict[int, dict[str, Any]]:
    """A scanned pyarrow Table as {_tidb_rowid or id: row dict}."""
    out: dict[int, dict[str, Any]] = {}
    for r in table.to_pylist():
        h = r.get("_tidb_rowid", r.get("id"))
        out[int(h)] = r
    return out


def names(values: Mapping[int, Mapping[str, Any]]) -> dict[int, Any]:
    return {h: v.get("name") for h, v in values.items()}
