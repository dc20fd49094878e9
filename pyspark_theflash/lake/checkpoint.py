"""Classic checkpoints (PROTOCOL.md, "Checkpoints", V1 spec, "Checkpoint Schema"): every
``interval`` versions, ``<version>.checkpoint.parquet`` holds the table's state after that
version — its protocol, metadata, the ``theflash`` txn and one ``add`` per logical file — and
``_last_checkpoint`` points at it, so a reader replays at most ``interval`` JSON versions after
it instead of the whole log. Remove tombstones are left out (they serve only VACUUM, which is not
for these tables: docs/delta.md). The JSON versions before a checkpoint stay while they are
within the retention (``lake.cleanup``): ``theflash delta versions`` and ``timestampAsOf`` read
their in-commit timestamps."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from pyspark_theflash.lake.delta_log import LOG_DIR, TableLog, checkpoint_name

_MAP = pa.map_(pa.string(), pa.string())
_DV = pa.struct([("storageType", pa.string()), ("pathOrInlineDv", pa.string()), ("offset", pa.int32()),
                 ("sizeInBytes", pa.int32()), ("cardinality", pa.int64())])
SCHEMA = pa.schema([
    ("txn", pa.struct([("appId", pa.string()), ("version", pa.int64()), ("lastUpdated", pa.int64())])),
    ("add", pa.struct([("path", pa.string()), ("partitionValues", _MAP), ("size", pa.int64()),
                       ("modificationTime", pa.int64()), ("dataChange", pa.bool_()), ("stats", pa.string()),
                       ("tags", _MAP), ("deletionVector", _DV), ("baseRowId", pa.int64()),
                       ("defaultRowCommitVersion", pa.int64())])),
    ("remove", pa.struct([("path", pa.string()), ("deletionTimestamp", pa.int64()), ("dataChange", pa.bool_()),
                          ("extendedFileMetadata", pa.bool_()), ("partitionValues", _MAP), ("size", pa.int64()),
                          ("deletionVector", _DV)])),
    ("metaData", pa.struct([("id", pa.string()), ("name", pa.string()), ("description", pa.string()),
                            ("format", pa.struct([("provider", pa.string()), ("options", _MAP)])),
                            ("schemaString", pa.string()), ("partitionColumns", pa.list_(pa.string())),
                            ("configuration", _MAP), ("createdTime", pa.int64())])),
    ("protocol", pa.struct([("minReaderVersion", pa.int32()), ("minWriterVersion", pa.int32()),
                            ("readerFeatures", pa.list_(pa.string())), ("writerFeatures", pa.list_(pa.string()))])),
])


def _pairs(d: dict[str, str] | None) -> list[tuple[str, str]]:
    return list((d or {}).items())


def write_checkpoint(state: TableLog) -> str:
    """The checkpoint of ``state`` (its newest version), then ``_last_checkpoint``; the file's name."""
    m, p = state.metadata, state.protocol
    rows: list[dict[str, object]] = [
        {"protocol": {"minReaderVersion": p["minReaderVersion"], "minWriterVersion": p["minWriterVersion"],
                      "readerFeatures": list(p.get("readerFeatures", [])),
                      "writerFeatures": list(p.get("writerFeatures", []))}},
        {"metaData": {"id": m["id"], "name": m.get("name"), "description": m.get("description"),
                      "format": {"provider": m["format"]["provider"], "options": _pairs(m["format"].get("options"))},
                      "schemaString": m["schemaString"], "partitionColumns": list(m.get("partitionColumns", [])),
                      "configuration": _pairs(m.get("configuration")), "createdTime": m.get("createdTime")}},
    ]
    # the live txn of each appId, as the log has them (the ``theflash`` one: the newest version's ts)
    rows += [{"txn": {"appId": t["appId"], "version": t["version"], "lastUpdated": t.get("lastUpdated")}}
             for t in state.txns.values()]
    for f in state.files.values():
        add = f.add_action()["add"]
        add["partitionValues"] = []
        rows.append({"add": add})
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    log_dir = state.root / LOG_DIR
    name = checkpoint_name(state.version)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    log_dir.write(name, sink.getvalue().to_pybytes())  # a checkpoint of a version is the same whoever writes it
    log_dir.write("_last_checkpoint", json.dumps({"version": state.version, "size": table.num_rows}).encode())
    return name
