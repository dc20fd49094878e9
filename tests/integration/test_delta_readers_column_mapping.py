"""How delta-rs and DuckDB resolve the columns of a table with column mapping (docs/delta.md,
"The readers, measured", which this test keeps true): on hand-written one-file tables of reader 3
/ writer 7 with ``columnMapping``. Files named as TheFlash names them (``c<id>`` with field id
``<id>``) read right in ``id`` mode and in ``name`` mode. The two readers resolve by physical name
even in ``id`` mode: a log whose physical names differ from the file's, its field ids right,
reads NULLs, and a file without field ids reads by name. That is why every file TheFlash names
carries both the physical name and the field id: each way of resolving finds the same column. If
a reader starts resolving by field id, the third case fails here, and the table in docs/delta.md
is to be updated (the files TheFlash writes read right either way: the first two cases)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from delta_readers import delta_rs_rows, duckdb_rows, duckdb_with_delta

ROWS = [(1, "a"), (2, "b")]


def _table(root: Path, mode: str, physical: tuple[str, str], file_ids: bool) -> Path:
    """One version, one file: columns ``id`` BIGINT and ``v`` STRING, ids 1 and 2 in ``mode``
    with the log's ``physical`` names; the file's columns are ``c1``/``c2``, with their field
    ids unless ``file_ids`` is False."""
    (root / "_delta_log").mkdir(parents=True)

    def field(arrow: pa.DataType, column_id: int) -> pa.Field:
        return pa.field(f"c{column_id}", arrow, metadata={b"PARQUET:field_id": str(column_id).encode()} if file_ids else None)

    schema = pa.schema([field(pa.int64(), 1), field(pa.string(), 2)])
    data = pa.table([pa.array([r[0] for r in ROWS], pa.int64()), pa.array([r[1] for r in ROWS])], schema=schema)
    pq.write_table(data, root / "part-0.parquet")
    fields = [{"name": name, "type": kind, "nullable": True,
               "metadata": {"delta.columnMapping.id": column_id, "delta.columnMapping.physicalName": phys}}
              for (name, kind, column_id), phys in zip((("id", "long", 1), ("v", "string", 2)), physical)]
    actions: list[dict[str, Any]] = [
        {"protocol": {"minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": ["columnMapping"],
                      "writerFeatures": ["columnMapping"]}},
        {"metaData": {"id": "00000000-0000-0000-0000-000000000051", "format": {"provider": "parquet", "options": {}},
                      "schemaString": json.dumps({"type": "struct", "fields": fields}), "partitionColumns": [],
                      "configuration": {"delta.columnMapping.mode": mode, "delta.columnMapping.maxColumnId": "2"},
                      "createdTime": 1_700_000_000_000}},
        {"add": {"path": "part-0.parquet", "partitionValues": {}, "size": (root / "part-0.parquet").stat().st_size,
                 "modificationTime": 1_700_000_000_000, "dataChange": True,
                 "stats": json.dumps({"numRecords": len(ROWS)})}},
        {"commitInfo": {"timestamp": 1_700_000_000_000, "operation": "WRITE"}},
    ]
    (root / "_delta_log" / "00000000000000000000.json").write_text("\n".join(json.dumps(a) for a in actions) + "\n")
    return root


@pytest.mark.parametrize("mode, physical, file_ids, want", [
    ("id", ("c1", "c2"), True, ROWS),                       # what TheFlash writes
    ("name", ("c1", "c2"), True, ROWS),                     # the same files under name mode
    ("id", ("x1", "x2"), True, [(None, None)] * 2),         # by physical name, not by field id
    ("id", ("c1", "c2"), False, ROWS),                      # no field ids: read by name, not refused
], ids=["theflash-files", "name-mode", "names-differ-ids-right", "no-field-ids"])
def test_delta_rs_and_duckdb_resolve_column_mapping_by_physical_name(
        tmp_path: Path, mode: str, physical: tuple[str, str], file_ids: bool, want: list[tuple[Any, ...]]) -> None:
    root = _table(tmp_path / "t", mode, physical, file_ids)
    by_rs = sorted(delta_rs_rows(root, 0, ["id", "v"]), key=repr)
    by_duckdb = sorted(duckdb_rows(duckdb_with_delta(), root, 0, ["id", "v"]), key=repr)
    assert (by_rs, by_duckdb) == (sorted(want, key=repr), sorted(want, key=repr))
