"""The version checksum of a published version (``_delta_log/<v>.crc``, lake/checksum.py) checked
against independent readers: delta-rs's own list of the version's files and deletion vectors,
DuckDB's row count, and the log's own actions (tests/integration/test_delta_checksums.py and the
other publication tests on local disk)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa

from pyspark_theflash.lake.checksum import (
    DELETED_RECORD_BINS,
    checksum_name,
    deleted_records_bin,
    metadata_action,
    protocol_action,
    read_checksum,
)


def log_actions_at(root: Path, version: int, kind: str) -> dict[str, Any]:
    """The newest ``kind`` action (``metaData``, ``protocol``) at or before ``version``, from the
    JSON versions, or the checkpoint the log starts at: as the log itself holds it."""
    log_dir = root / "_delta_log"
    for v in range(version, -1, -1):
        path = log_dir / f"{v:020d}.json"
        if not path.exists():   # the log starts at version v + 1, at its checkpoint
            checkpoint = log_dir / f"{v + 1:020d}.checkpoint.parquet"
            import pyarrow.parquet as pq

            (found,) = [r[kind] for r in pq.read_table(checkpoint).to_pylist() if r.get(kind)]
            return dict(found)
        for line in path.read_text().splitlines():
            action = json.loads(line)
            if kind in action:
                return dict(action[kind])
    raise AssertionError(f"no {kind} action at or before version {version}")


def check_checksum(root: Path, version: int, con: Any) -> dict[str, Any]:
    """The checksum of ``version`` against independent readers: delta-rs's add actions (the files
    and their sizes after its own reconciliation), DuckDB's row count, the log's own actions."""
    import deltalake

    crc = read_checksum(root, version)
    assert crc is not None, f"version {version} has no {checksum_name(version)}"
    table = deltalake.DeltaTable(str(root), version=version)
    adds = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    assert crc["numFiles"] == len(adds), (version, crc["numFiles"], len(adds))
    assert crc["tableSizeBytes"] == sum(a["size_bytes"] for a in adds), version
    assert (crc["numMetadata"], crc["numProtocol"]) == (1, 1)
    # delta-rs's own reading of each file's deletion vector: the rows it keeps and deletes
    vectors = pa.table(table.deletion_vectors()).to_pylist()
    deleted = {Path(unquote(urlparse(v["filepath"]).path)).relative_to(root).as_posix(): v["selection_vector"].count(False)
               for v in vectors}
    assert set(deleted) <= {a["path"] for a in adds}
    cardinalities = [deleted.get(a["path"], 0) for a in adds]
    assert crc["numDeletionVectorsOpt"] == len(vectors), version
    assert crc["numDeletedRecordsOpt"] == sum(cardinalities), version
    histogram = [0] * len(DELETED_RECORD_BINS)
    for c in cardinalities:
        histogram[deleted_records_bin(c)] += 1
    assert crc["deletedRecordCountsHistogramOpt"] == {"deletedRecordCounts": histogram}
    # the rows a reader returns: every file's records less the ones its vector deletes
    (count,), = con.sql(f"select count(*) from delta_scan('{root}', version => {version})").fetchall()
    assert sum(a["num_records"] for a in adds) - crc["numDeletedRecordsOpt"] == count, version
    # metadata and protocol: the log's own actions (a JSON version's, or the checkpoint's row)
    assert crc["metadata"] == metadata_action(log_actions_at(root, version, "metaData")), version
    assert crc["protocol"] == protocol_action(log_actions_at(root, version, "protocol")), version
    assert crc["metadata"]["id"] == table.metadata().id
    assert json.loads(crc["metadata"]["schemaString"]) == json.loads(table.schema().to_json())
    p = table.protocol()
    assert (crc["protocol"]["minReaderVersion"], crc["protocol"]["minWriterVersion"]) == (p.min_reader_version,
                                                                                          p.min_writer_version)
    assert set(crc["protocol"]["readerFeatures"]) == set(p.reader_features or ())
    assert set(crc["protocol"]["writerFeatures"]) == set(p.writer_features or ())
    # the version's own in-commit timestamp and txn
    commit_info = next(json.loads(line)["commitInfo"] for line in
                       (root / "_delta_log" / f"{version:020d}.json").read_text().splitlines() if "commitInfo" in line)
    assert crc["inCommitTimestampOpt"] == commit_info["inCommitTimestamp"]
    assert crc["setTransactions"] == [{"appId": "theflash", "version": commit_info["theflashTs"],
                                       "lastUpdated": commit_info["inCommitTimestamp"]}]
    assert table.transaction_version("theflash") == commit_info["theflashTs"]
    assert crc["domainMetadata"] == []
    return crc
