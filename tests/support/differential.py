"""Comparing the replica with its source row for row: the rows Spark reads from the store at a
ts (``format("theflash")``, ``schema=as_of``) against the upstream's own read at that ts
(``UpstreamClient.read_table`` over the Upstream gRPC service), for the differential tests."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pyspark_theflash.codec.batch import record_batch_from_rows
from pyspark_theflash.schema import TableInfo, row_columns

ROWID = "_tidb_rowid"


@dataclass
class Comparison:
    table: str
    ts: int
    rows: int = 0
    differences: list[str] = field(default_factory=list)
    absent: bool = False  # no table had the name at ts, on either side


def _sorted(rows: list[dict[str, Any]], key_columns: list[str]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: tuple(r[c] for c in key_columns))


def compare_at(spark: Any, upstream: Any, options: dict[str, str], table: str, ts: int,
               schema: str = "as_of") -> Comparison:
    """Read ``table`` at ``ts`` through Spark (with the schema as of ts, or with ``schema=
    "current"``, which at the latest ts is the same) and from the upstream; return what differs
    (nothing, when the replica is right)."""
    from pyspark_theflash.upstream_client.errors import SchemaError

    out = Comparison(table, ts)
    try:
        scan = upstream.read_table(table, ts)
    except SchemaError:
        scan = None
    try:
        info = None if scan is None else TableInfo.from_json(scan.table_info, db=scan.db)
        hidden = ROWID if info is not None and not info.pk_is_handle and not info.is_common_handle else ""
        reader = spark.read.format("theflash").options(**options, snapshot_ts=str(ts), schema=schema)
        if hidden:
            reader = reader.option("hidden", hidden)
        got = reader.load(table).toArrow()
    except Exception as exc:  # the replica refused: right only when the upstream had no such table
        if scan is None and ("not" in str(exc) and table in str(exc)):
            out.absent = True
            return out
        text = str(exc)  # Spark wraps the Python error: its own message is at the end
        out.differences.append(f"replica read failed: {type(exc).__name__}: {text[:300]} ... {text[-1500:]}")
        return out
    if scan is None or info is None:
        out.differences.append(f"upstream has no {table} at ts {ts}, the replica read {got.num_rows} rows")
        return out
    keys = [ROWID] if hidden else list(info.primary_key)
    expected_batch = record_batch_from_rows(scan.rows, row_columns(info))
    if hidden:
        rowids = pa.array([r[ROWID] for r in scan.rows], type=pa.int64())
        expected_batch = pa.RecordBatch.from_arrays([*expected_batch.columns, rowids],
                                                    names=[*expected_batch.schema.names, ROWID])
    want_schema = got.schema
    if expected_batch.schema.names != want_schema.names:
        out.differences.append(f"columns differ: replica {want_schema.names}, upstream {expected_batch.schema.names}")
        return out
    expected = pa.Table.from_batches([expected_batch]).cast(want_schema) if expected_batch.num_rows else \
        want_schema.empty_table()
    a, b = _sorted(expected.to_pylist(), keys), _sorted(got.to_pylist(), keys)
    out.rows = len(a)
    if len(a) != len(b):
        out.differences.append(f"{len(b)} rows in the replica, {len(a)} upstream")
    for want, have in zip(a, b):
        if want != have:
            out.differences.append(f"row differs: upstream {want!r:.600} replica {have!r:.600}")
            if len(out.differences) > 5:
                break
    return out
