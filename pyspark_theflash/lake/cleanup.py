"""Log cleanup (PROTOCOL.md, "Metadata Cleanup"): what a table's log and the publication's own
files keep once versions fall out of the retention.

Time travel to any time within the retention reads the newest version whose in-commit timestamp
is at or before it, so the oldest version kept is the one holding the retention's start. The
log is cut at the newest checkpoint at or before that version: every JSON version,
checkpoint and version checksum (``.crc``) before it is deleted (the checkpoint stands for them, as the protocol requires), and
then every file the publication wrote (converted parts under ``lake/``, ``deletion_vector_*.bin``)
that no kept version names. The store's own part files are never touched here: their deletion
follows the store's leases (docs/delta.md, "Retention"). Tables published to another place
(``--to``, an object store) hold *copies* of the parts their versions name: those copies are the
publication's, and a copy no kept version names is deleted like a converted part."""
from __future__ import annotations

from dataclasses import dataclass

from pyspark_theflash.lake.delta_log import LOG_DIR, TableLog, actions_of, from_checkpoint, log_name
from pyspark_theflash.lake.deletion_vectors import DeletionVector
from pyspark_theflash.lake.files import CONVERTED_DIR, TABLE_IDS_DIR
from pyspark_theflash.lake.location import LakeDir, Where, lake_dir


@dataclass(frozen=True)
class Cleaned:
    cut: int | None          # the oldest version kept (None: nothing cleaned)
    log_files: int = 0
    data_files: int = 0


def clean(state: TableLog, retention_ms: int, owns_parts: bool = False) -> Cleaned:
    """Cut ``state``'s log for a retention of ``retention_ms`` before its newest version;
    ``owns_parts``: the table's ``p<partition>/`` files are the publication's copies (module
    docstring). Those and the ``ids/<table id>/p<partition>/`` links or copies of other table
    ids' parts (always the publication's) are deleted when no kept version names them."""
    horizon = state.in_commit_ms - retention_ms
    holding = max((v for v, _, ict in state.history if ict <= horizon), default=None)
    root = state.root
    log_dir = root / LOG_DIR
    logs = [n for n in log_dir.names() if n[:20].isdigit() and n.endswith((".json", ".checkpoint.parquet", ".crc"))]
    checkpoints = sorted(int(n[:20]) for n in logs if n.endswith(".checkpoint.parquet"))
    cut = max((c for c in checkpoints if holding is not None and c <= holding), default=None)
    if cut is None:
        return Cleaned(None)
    removed = 0
    for name in logs:
        if int(name[:20]) < cut:
            log_dir.delete(name)
            removed += 1
    state.history = [h for h in state.history if h[0] >= cut]
    named = named_files(root, cut, state.version)
    candidates = [f"{CONVERTED_DIR}/{n}" for n in root.names(CONVERTED_DIR) if n.endswith(".parquet")]
    candidates += [n for n in root.names() if n.startswith("deletion_vector_") and n.endswith(".bin")]
    candidates += [f"{d}/{n}" for d in _partition_dirs(root, owns_parts) for n in root.names(d)]
    data = 0
    for rel in candidates:
        if rel not in named:
            root.delete(rel)
            data += 1
    return Cleaned(cut, removed, data)


def _partition_dirs(root: LakeDir, owns_parts: bool) -> list[str]:
    """The directories of part files the publication owns: ``ids/<table id>/p<partition>``
    (always its links or copies of other table ids' parts), and the root's own ``p<partition>``
    when ``owns_parts`` (copies; in the store's directory they are the store's)."""
    def store_partitions(under: str) -> list[str]:
        return [f"{under}{d}" for d in root.subdirs(under.rstrip("/")) if d[:1] == "p" and d[1:].isdigit()]

    found = store_partitions("") if owns_parts else []
    for table_id in root.subdirs(TABLE_IDS_DIR):
        found += store_partitions(f"{TABLE_IDS_DIR}/{table_id}/")
    return found


def named_files(root: Where, cut: int, newest: int) -> set[str]:
    """Every data file and deletion vector file versions ``cut``..``newest`` name."""
    named: set[str] = set()
    for f in from_checkpoint(root, cut).files.values():
        named.add(f.path)
        if f.dv is not None and f.dv.storage == "u":
            named.add(f.dv.file_name())
    for version in range(cut + 1, newest + 1):
        for action in actions_of(lake_dir(root) / LOG_DIR, log_name(version)):
            add = action.get("add")
            if add:
                named.add(add["path"])
                dv = add.get("deletionVector")
                if dv and dv.get("storageType") == "u":
                    named.add(DeletionVector.from_json(dv).file_name())
    return named
