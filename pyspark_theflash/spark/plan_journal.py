"""Notice, without the connector jar, a query whose theflash reads took different snapshots.

Spark plans each Python data source read of a query in a Python worker process of its own that
sees the read's options only, never the query (docs/reading.md): a join of two theflash tables
reads two snapshot ts, and the Python source cannot make them one. It can notice and say so.

Each read's planning appends one line (table, ts, when it started and ended) to a journal in
the Spark application's local directory (``SPARK_LOCAL_DIRS`` of its Python workers: one per
application, removed with it). A query's reads are planned together (Spark 4.2 plans a join's
sides at once, in parallel workers), so a planning that overlaps another's in time at another
ts is taken as one query reading two snapshots: the first such planning of the application
warns, on the worker's stderr, which Spark shows on the driver's console. Two actions run back
to back on separately loaded DataFrames plan apart (the first action runs between them) and do
not warn.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

JOURNAL = "theflash-read-plans.jsonl"
WARNED = "theflash-several-snapshots.warned"
# Plannings this close in time count as one query's (a join's sides start within milliseconds)
SLACK_S = 0.05
TAIL_BYTES = 64 << 10  # only the journal's recent lines are read
MESSAGE = ("theflash: one Spark query read {tables} at different snapshot ts ({stamps}). Without the connector "
           "jar each theflash table of a query takes its own ts, so a join can pair rows no single snapshot holds. "
           "Give every read of the query the same option snapshot_ts, or read through the jar "
           "(theflash_session() loads it) for one ts per query. (Said once per Spark application.)")


@dataclass(frozen=True)
class Planning:
    table: str
    ts: int
    started: float  # time.time() of the worker
    ended: float

    def overlaps(self, other: "Planning") -> bool:
        return other.started <= self.ended + SLACK_S and self.started <= other.ended + SLACK_S


def journal_dir() -> Path | None:
    """This Spark application's local directory, as its Python workers see it (None outside Spark)."""
    dirs = os.environ.get("SPARK_LOCAL_DIRS", "")
    first = dirs.split(",")[0].strip()
    return Path(first) if first and Path(first).is_dir() else None


def record_planning(table: str, ts: int, started: float, ended: float | None = None,
                    directory: Path | None = None) -> str | None:
    """Journal a read's planning (``ended``: now); the warning it gave, if it was the first
    planning of the application to overlap another's at another ts. Never raises: a journal that
    cannot be written only costs the warning."""
    directory = directory or journal_dir()
    if directory is None:
        return None
    mine = Planning(table, int(ts), started, time.time() if ended is None else ended)
    try:
        path = directory / JOURNAL
        line = json.dumps([mine.table, mine.ts, mine.started, mine.ended]) + "\n"
        with open(path, "a", encoding="utf-8") as journal:  # one short append: whole lines, never interleaved
            journal.write(line)
        others = [p for p in _recent(path) if p != mine and p.ts != mine.ts and p.overlaps(mine)]
        if not others or (directory / WARNED).exists():
            return None
        together = sorted({(p.table, p.ts) for p in others} | {(mine.table, mine.ts)}, key=lambda p: p[1])
        message = MESSAGE.format(tables=", ".join(sorted({t for t, _ in together})),
                                 stamps=", ".join(f"{t} at {ts}" for t, ts in together))
        with open(directory / WARNED, "x", encoding="utf-8") as marker:  # the application's first to warn
            marker.write(message + "\n")
    except OSError:  # another planning warned first (FileExistsError), or the directory is gone
        return None
    log.warning("%s", message)
    return message


def _recent(path: Path) -> list[Planning]:
    with open(path, "rb") as journal:
        size = journal.seek(0, os.SEEK_END)
        journal.seek(max(0, size - TAIL_BYTES))
        lines = journal.read().splitlines()
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first may be cut
    plannings = []
    for raw in lines:
        try:  # a line torn by a full disk, or not ours, is passed over
            table, ts, started, ended = json.loads(raw)
            plannings.append(Planning(str(table), int(ts), float(started), float(ended)))
        except (ValueError, TypeError):
            continue
    return plannings
