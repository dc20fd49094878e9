"""Checks of a store's Delta publication, as ``theflash delta verify`` (and ``theflash store
verify``) run them: every log file of every table parses and the versions run without a gap;
every data file the newest version names is there with the size the log records; every
deletion vector any version names reads back with its size, CRC-32 and cardinality, and removes
only rows the file has (``numRecords``); every version checksum (``<version>.crc``) is the state
the log gives at its version (``lake.checksum``). The tables are read where they are: the store's
directory, or the ``to`` location they were published to (``lake.location``)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow.fs as pafs

from pyspark_theflash.lake import delta_log
from pyspark_theflash.lake.checksum import checksum_mismatches, checksum_name, read_checksum
from pyspark_theflash.lake.deletion_vectors import DeletionVector, read_vector
from pyspark_theflash.lake.errors import LakeDamagedError
from pyspark_theflash.lake.location import LakeDir, Where, lake_dir


@dataclass
class LakeReport:
    tables: int = 0
    versions: int = 0
    vectors: int = 0
    checksums: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)   # (file, what is wrong)

    @property
    def ok(self) -> bool:
        return not self.problems


def published_roots(where: Where) -> list[LakeDir]:
    """The table roots that have a Delta log under a store's directory or a ``to`` location."""
    tables = lake_dir(where) / "tables"
    return [tables / d for d in tables.subdirs() if d.isdigit() and (tables / d).is_dir(delta_log.LOG_DIR)]


def verify(where: Where) -> LakeReport:
    report = LakeReport()
    for root in published_roots(where):
        report.tables += 1
        try:
            state = delta_log.replay(root)
        except LakeDamagedError as exc:
            report.problems.append((exc.path, str(exc)))
            continue
        report.versions += len(state.history)
        try:
            _check_checksums(root, report)
        except LakeDamagedError as exc:
            report.problems.append((exc.path, str(exc)))
        for f in state.files.values():
            info, path = root.info(f.path), root.where(f.path)
            if info.type != pafs.FileType.File:
                report.problems.append((path, f"missing: version {state.version} of {root.name} names it"))
            elif info.size != f.size:
                report.problems.append((path, f"{info.size} bytes, the log records {f.size}"))
        seen: set[str] = set()
        # every kept version's adds (the log may start at a checkpoint: cleaned up before it),
        # and the newest state's, which a checkpoint may hold alone
        log_dir = root / delta_log.LOG_DIR
        newest = [(log_dir.where("(newest state)"), f.add_action()) for f in state.files.values()]
        kept = [(log_dir.where(delta_log.log_name(version)), action) for version, _, _ in state.history
                for action in delta_log.actions_of(log_dir, delta_log.log_name(version))]
        for log, action in kept + newest:
            add = action.get("add")
            if not add or not add.get("deletionVector"):
                continue
            dv = DeletionVector.from_json(add["deletionVector"])
            if dv.unique_id in seen:
                continue
            seen.add(dv.unique_id)
            report.vectors += 1
            try:
                rows = read_vector(root, dv)
            except LakeDamagedError as exc:
                report.problems.append((exc.path, str(exc)))
                continue
            records = int(json.loads(add["stats"])["numRecords"])
            if len(rows) and int(np.max(rows)) >= records:
                report.problems.append((str(log), f"the deletion vector of {add['path']} removes row "
                                                  f"{int(np.max(rows))} of a file of {records} rows"))
    return report


def _check_checksums(root: LakeDir, report: LakeReport) -> None:
    """Each kept version's checksum file against the state the log gives at that version (the
    log replayed one version at a time from where it starts)."""
    log_dir = root / delta_log.LOG_DIR
    present = set(log_dir.names())
    state: delta_log.TableLog | None = None
    for version in delta_log.log_versions(root):
        state = delta_log.replay(root, state, upto=version)
        name = checksum_name(version)
        if name not in present:
            continue   # a version may have none (PROTOCOL.md: readers do without)
        report.checksums += 1
        try:
            found = read_checksum(root, version)
        except ValueError as exc:
            report.problems.append((log_dir.where(name), f"not one JSON object ({exc})"))
            continue
        if found is None:
            continue
        for mismatch in checksum_mismatches(state, found):
            report.problems.append((log_dir.where(name), f"the checksum of version {version} disagrees with the log: {mismatch}"))
