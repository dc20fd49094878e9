"""Log cleanup (PROTOCOL.md, "Metadata Cleanup"): what a table's log and the publication's own
files keep once versions fall out of the retention.

Time travel to any time within the retention reads the newest version whose in-commit timestamp
is at or before it, so the oldest version kept is the one holding the retention's start. The
log is cut at the newest checkpoint at or before that version: every JSON version and
checkpoint before it is deleted (the checkpoint stands for them, as the protocol requires), and
then every file the publication wrote (converted parts under ``lake/``, ``deletion_vector_*.bin``)
that no kept version names. The store's own part files are never touched here: their deletion
follows the store's leases (docs/delta.md, "Retention")."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyspark_theflash.lake.delta_log import LOG_DIR, TableLog, actions_of, from_checkpoint, log_name
from pyspark_theflash.lake.deletion_vectors import DeletionVector
from pyspark_theflash.lake.files import CONVERTED_DIR


@dataclass(frozen=True)
class Cleaned:
    cut: int | None          # the oldest version kept (None: nothing cleaned)
    log_files: int = 0
    data_files: int = 0


def clean(state: TableLog, retention_ms: int) -> Cleaned:
    """Cut ``state``'s log for a retention of ``retention_ms`` before its newest version."""
    horizon = state.in_commit_ms - retention_ms
    holding = max((v for v, _, ict in state.history if ict <= horizon), default=None)
    log_dir = state.root / LOG_DIR
    checkpoints = sorted(int(p.name[:20]) for p in log_dir.glob("*.checkpoint.parquet") if p.name[:20].isdigit())
    cut = max((c for c in checkpoints if holding is not None and c <= holding), default=None)
    if cut is None:
        return Cleaned(None)
    removed = 0
    for path in list(log_dir.glob("*.json")) + list(log_dir.glob("*.checkpoint.parquet")):
        if path.name[:20].isdigit() and int(path.name[:20]) < cut:
            path.unlink(missing_ok=True)
            removed += 1
    state.history = [h for h in state.history if h[0] >= cut]
    named = named_files(state.root, cut, state.version)
    data = 0
    candidates = list((state.root / CONVERTED_DIR).glob("*.parquet")) + list(state.root.glob("deletion_vector_*.bin"))
    for path in candidates:
        if path.relative_to(state.root).as_posix() not in named:
            path.unlink(missing_ok=True)
            data += 1
    return Cleaned(cut, removed, data)


def named_files(root: Path, cut: int, newest: int) -> set[str]:
    """Every data file and deletion vector file versions ``cut``..``newest`` name."""
    named: set[str] = set()
    for f in from_checkpoint(root, cut).files.values():
        named.add(f.path)
        if f.dv is not None and f.dv.storage == "u":
            named.add(f.dv.file_name())
    for version in range(cut + 1, newest + 1):
        for action in actions_of(root / LOG_DIR / log_name(version)):
            add = action.get("add")
            if add:
                named.add(add["path"])
                dv = add.get("deletionVector")
                if dv and dv.get("storageType") == "u":
                    named.add(DeletionVector.from_json(dv).file_name())
    return named
