"""Version checksum files (PROTOCOL.md, "Version Checksum File"): ``_delta_log/<version>.crc``,
one JSON object with the table's state after that version — its size and file count after
Action Reconciliation, its metadata and protocol — written after the version's commit.

delta-spark takes a version's protocol, metadata and in-commit timestamp from its checksum
instead of running Spark jobs over the log (``Snapshot.getProtocolMetadataICTAndLMCFromCrc``),
and checks the checksum against its own state reconstruction before a write or a checkpoint
(``ValidateChecksum``, fatal by default: ``spark.databricks.delta.checksum.mismatch.fatal``);
delta-kernel-rs reads protocol, metadata, in-commit timestamp and domain metadata from it. So a
checksum must never be wrong; a missing one is allowed ("Readers MUST continue functioning if
Version Checksum files are missing").

Every field is computed from the replayed state at exactly that version (``TableLog``: the
checkpoint and the JSON versions after it, as a fresh process rebuilds it), never carried from
the previous version's checksum, so a restart, a cleanup or a missing ``.crc`` cannot make a
total drift. A state the replay cannot count as the protocol does (``TableLog.reconciled``)
gets no checksum. Written fields:

* required: ``tableSizeBytes`` (the sum of the live ``add``s' ``size``), ``numFiles``,
  ``numMetadata`` = ``numProtocol`` = 1, ``metadata``, ``protocol`` (as the log has them);
* ``inCommitTimestampOpt``: the version's ``commitInfo.inCommitTimestamp``, when the metadata
  enables in-commit timestamps ("present if and only if");
* ``setTransactions``: the live ``txn`` of each appId; ``domainMetadata``: ``[]`` (TheFlash
  writes none; a log with one gets no checksum);
* ``numDeletionVectorsOpt``, ``numDeletedRecordsOpt`` and ``deletedRecordCountsHistogramOpt``
  (the spec's ten fixed bins) from the live files' deletion vector cardinalities.

Not written: ``txnId`` (the commits carry no transaction id to repeat), ``allFiles`` (the
whole file list again in every version; no reader's read path uses it), ``fileSizeHistogram``
(its bin boundaries are the writer's choice, and delta-spark reports a histogram whose
boundaries differ from its own defaults as a mismatch).
"""
from __future__ import annotations

import bisect
import json
import logging
from typing import Any, Mapping, Sequence, TypedDict

from pyspark_theflash.lake.delta_log import LOG_DIR, MetadataAction, ProtocolAction, TableLog, TxnAction
from pyspark_theflash.lake.location import Where, lake_dir

log = logging.getLogger(__name__)

IN_COMMIT_TIMESTAMPS_KEY = "delta.enableInCommitTimestamps"
# "Deleted Record Counts Histogram Schema": bin i holds the files whose deleted record count is
# at least DELETED_RECORD_BINS[i] (and below the next bound); files without a vector are in bin 0
DELETED_RECORD_BINS = (0, 1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 2_147_483_647)


class DeletedRecordCounts(TypedDict):
    """"Deleted Record Counts Histogram Schema": how many files fall in each bin."""

    deletedRecordCounts: list[int]


class _InCommitTimestamp(TypedDict, total=False):
    inCommitTimestampOpt: int   # only when in-commit timestamps are enabled


class VersionChecksum(_InCommitTimestamp):
    """A version checksum file (PROTOCOL.md, "Version Checksum File"), the fields TheFlash writes."""

    tableSizeBytes: int
    numFiles: int
    numMetadata: int
    numProtocol: int
    setTransactions: list[TxnAction]
    domainMetadata: list[dict[str, object]]  # none: TheFlash writes no domain metadata
    metadata: MetadataAction
    protocol: ProtocolAction
    numDeletedRecordsOpt: int
    numDeletionVectorsOpt: int
    deletedRecordCountsHistogramOpt: DeletedRecordCounts


def checksum_name(version: int) -> str:
    return f"{version:020d}.crc"


def metadata_action(metadata: Mapping[str, Any]) -> MetadataAction:
    """A ``metaData`` action's fields as PROTOCOL.md ("Change Metadata") names them, absent (or
    null) ones left out: the same whether the state came from a JSON version, a checkpoint's row
    or a checksum file (``metadata``: any of them, as parsed)."""
    m, out = metadata, MetadataAction()
    if m.get("id") is not None:
        out["id"] = m["id"]
    if m.get("name") is not None:
        out["name"] = m["name"]
    if m.get("description") is not None:
        out["description"] = m["description"]
    if m.get("format") is not None:
        out["format"] = {"provider": m["format"]["provider"], "options": dict(m["format"].get("options") or {})}
    if m.get("schemaString") is not None:
        out["schemaString"] = m["schemaString"]
    if m.get("partitionColumns") is not None:
        out["partitionColumns"] = list(m["partitionColumns"])
    if m.get("configuration") is not None:
        out["configuration"] = dict(m["configuration"])
    if m.get("createdTime") is not None:
        out["createdTime"] = m["createdTime"]
    return out


def protocol_action(protocol: Mapping[str, Any]) -> ProtocolAction:
    """A ``protocol`` action's fields (PROTOCOL.md, "Protocol Evolution"), absent (or null) ones
    left out (``protocol``: from a log, a checkpoint or a checksum file, as parsed)."""
    p, out = protocol, ProtocolAction()
    if p.get("minReaderVersion") is not None:
        out["minReaderVersion"] = p["minReaderVersion"]
    if p.get("minWriterVersion") is not None:
        out["minWriterVersion"] = p["minWriterVersion"]
    if p.get("readerFeatures") is not None:
        out["readerFeatures"] = list(p["readerFeatures"])
    if p.get("writerFeatures") is not None:
        out["writerFeatures"] = list(p["writerFeatures"])
    return out


def deleted_records_bin(count: int) -> int:
    return bisect.bisect_right(DELETED_RECORD_BINS, count) - 1


def version_checksum(state: TableLog) -> VersionChecksum | None:
    """The checksum of ``state``'s newest version, or None when the state cannot give an exact
    one (no version yet, no metadata or protocol, or a log ``state`` does not reconcile as the
    protocol does)."""
    if state.version < 0 or not state.metadata or not state.protocol or not state.reconciled:
        return None
    metadata = metadata_action(state.metadata)
    deleted = [0 if f.dv is None else f.dv.cardinality for f in state.files.values()]
    histogram = [0] * len(DELETED_RECORD_BINS)
    for count in deleted:
        histogram[deleted_records_bin(count)] += 1
    in_commit: _InCommitTimestamp = {}
    if (metadata.get("configuration") or {}).get(IN_COMMIT_TIMESTAMPS_KEY) == "true":
        in_commit["inCommitTimestampOpt"] = state.in_commit_ms
    checksum: VersionChecksum = {
        "tableSizeBytes": sum(f.size for f in state.files.values()),
        "numFiles": len(state.files),
        "numMetadata": 1,
        "numProtocol": 1,
        **in_commit,
        "setTransactions": [t.copy() for t in state.txns.values()],
        "domainMetadata": [],
        "metadata": metadata,
        "protocol": protocol_action(state.protocol),
        "numDeletedRecordsOpt": sum(deleted),
        "numDeletionVectorsOpt": sum(1 for f in state.files.values() if f.dv is not None),
        "deletedRecordCountsHistogramOpt": {"deletedRecordCounts": histogram},
    }
    return checksum


def write_checksum(state: TableLog) -> bool:
    """Write the checksum of ``state``'s newest version (just committed) beside it, put-if-absent
    like the commit itself (``LakeDir.create``: never overwritten, never seen half-written).
    False, having written nothing, when there is no exact checksum or it could not be written
    (the version stands without one: readers rebuild the state from the log)."""
    checksum = version_checksum(state)
    if checksum is None:
        return False
    name = checksum_name(state.version)
    try:
        state.log_dir.create(name, (json.dumps(checksum, separators=(",", ":")) + "\n").encode())
    except OSError as exc:   # FileExistsError too: a checksum is never overwritten
        log.warning("%s: the version checksum was not written (%s); readers rebuild version %d from the log",
                    state.log_dir.where(name), exc, state.version)
        return False
    return True


def read_checksum(root: Where, version: int) -> dict[str, object] | None:
    """The checksum file of ``version`` under a table's root, parsed (None: there is none)."""
    log_dir = lake_dir(root) / LOG_DIR
    try:
        data = log_dir.read_bytes(checksum_name(version))
    except FileNotFoundError:
        return None
    found = json.loads(data)
    if not isinstance(found, dict):
        raise ValueError(f"{log_dir.where(checksum_name(version))} is not one JSON object")
    return found


def _by_app_id(txns: Sequence[Mapping[str, object]]) -> list[str]:
    """``txn`` actions as sorted JSON texts, in the order of their appIds: compared as sets."""
    return [json.dumps(t, sort_keys=True) for t in sorted(txns, key=lambda t: str(t.get("appId")))]


def checksum_mismatches(state: TableLog, found: Mapping[str, object]) -> list[str]:
    """The fields of a checksum file ``found`` that differ from ``state`` (its version's state),
    as 'field: file has X, the log gives Y'. A field the file leaves out is not compared, except
    the required ones."""
    expected = version_checksum(state)
    if expected is None:
        return []
    required = ("tableSizeBytes", "numFiles", "numMetadata", "numProtocol", "metadata", "protocol")
    out = []
    for key, want in expected.items():
        if key not in found and key not in required:
            continue
        got = found.get(key)
        if key == "metadata" and isinstance(got, Mapping):
            got = metadata_action(got)
        elif key == "protocol" and isinstance(got, Mapping):
            got = protocol_action(got)
        elif key == "setTransactions" and isinstance(got, list):
            got, want = _by_app_id(got), _by_app_id(expected["setTransactions"])
        if got != want:
            out.append(f"{key}: the file has {json.dumps(got)[:200]}, the log gives {json.dumps(want)[:200]}")
    return out


__all__ = ["checksum_mismatches", "checksum_name", "read_checksum", "version_checksum", "write_checksum"]
