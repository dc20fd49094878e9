"""A TiDB table's records read as rows, as a client of the upstream reads them: a record key and
its row value (v2, or v1 of an old row format) to ``{column: value}``, the handle column or
``_tidb_rowid`` from the key, VIRTUAL generated columns computed as TiDB's SELECT computes them.

The reference reads of the upstream (``UpstreamClient.scan_table``/``read_table``) decode with
this, whether the pairs come from the mini cluster in-process or over its service."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from pyspark_theflash import codec
from pyspark_theflash.codec import decode_row
from pyspark_theflash.schema import TableInfo, row_columns
from pyspark_theflash.schema.arrow import ROWID
from pyspark_theflash.schema.info_json import TableInfoJson
from pyspark_theflash.upstream_client.errors import SchemaError


def split_table_name(qualified: str) -> tuple[str, str]:
    """``db.table`` as (db, table)."""
    db, sep, name = qualified.partition(".")
    if not sep:
        raise SchemaError(f"name tables as db.table, got {qualified!r}")
    return db, name


def decode_value(table: TableInfoJson, key: bytes, value: bytes, info: TableInfo | None = None) -> dict[str, object]:
    """Column values of a stored row, with the handle column (or _tidb_rowid) filled from the key."""
    if table.get("pk_is_handle"):
        _, handle = codec.decode_record_key(key)
        return dict(decode_row(value, row_columns(info or TableInfo.from_json(table)), handle=handle))
    row = dict(decode_row(value, row_columns(info or TableInfo.from_json(table))))
    if not table.get("is_common_handle"):
        _, handle = codec.decode_record_key(key)
        row[ROWID] = handle
    return row


def decode_records(table: TableInfoJson, pairs: Sequence[tuple[bytes, bytes]]) -> list[dict[str, object]]:
    """Rows as ``{column: value}`` (``codec.decode_row``'s values, the handle column or
    ``_tidb_rowid`` from the key) of records of ``table``."""
    info = TableInfo.from_json(table)
    rows = [decode_value(table, k, v, info) for k, v in pairs]
    if rows and any(c.is_virtual_generated for c in info.columns):
        # TiDB computes VIRTUAL generated columns as it reads (it never stores them)
        from pyspark_theflash.codec.batch import decode_rows_to_arrow
        from pyspark_theflash.schema.generated import virtual_columns

        handles = np.array([codec.decode_record_key(k)[1] if not info.is_common_handle else 0 for k, _ in pairs],
                           dtype=np.int64)
        stored = [c.name for c in info.columns if not c.is_virtual_generated]
        decoded = decode_rows_to_arrow([v for _, v in pairs], handles, row_columns(info, stored))
        values = {name: decoded.column(name) for name in decoded.schema.names}
        for vc in virtual_columns(info):
            values[vc.name] = vc.compute(values, decoded.num_rows)
            for row, v in zip(rows, values[vc.name].to_pylist()):
                row[vc.name] = v
    return rows
