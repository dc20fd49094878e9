"""The writer's options, their defaults, and the small parsers the CLI shares (durations,
table patterns)."""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from pyspark_theflash.store.options import StoreOptions
from pyspark_theflash.store.options import PART_COMPRESSION

DEFAULT_INTERVAL_S = 0.2
# Events per read and atomic apply. A batch is decoded and applied as arrays, so its cost is
# mostly per call: 10k events (~25k rows of small transactions) apply in ~0.1 s, less than the
# old default of 2000 took event by event; catching up costs ~20% less CPU than at 2000.
DEFAULT_BATCH_EVENTS = 10_000
DEFAULT_FLUSH_ROWS = 50_000
DEFAULT_FLUSH_INTERVAL_S = 1.0
DEFAULT_LATCH_TTL_S = 10.0
DEFAULT_COMPACT_INTERVAL_S = 30.0
# Delta publication rounds (docs/delta.md): off unless asked for. 30 s is TiCDC's proposed
# Iceberg sink's commit interval; a round's cost follows the partitions that changed.
DEFAULT_DELTA_PUBLISH_INTERVAL_S = 0.0
DEFAULT_FILE_RETENTION_S = 60.0  # removed parts' files outlive their last lease pin by this long
DEFAULT_PROGRESS_INTERVAL_S = 1.0

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str, allow_zero: bool = False) -> float:
    """``"200ms"``, ``"1.5s"``, ``"2m"``, ``"0.5"`` (seconds) → seconds (> 0, or >= 0 with
    ``allow_zero``)."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 200ms, 1.5s, 2m)")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"duration must be {'>=' if allow_zero else '>'} 0, got {text!r}")
    return seconds


@dataclass(frozen=True)
class TableFilter:
    """Which tables to replicate: ``db.table`` patterns with ``*`` wildcards (case-insensitive,
    as TiDB names are). Empty = every table."""

    patterns: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> "TableFilter":
        if not text:
            return cls(())
        patterns = tuple(p.strip().lower() for p in text.split(",") if p.strip())
        for p in patterns:
            if "." not in p:
                raise ValueError(f"table pattern {p!r} must look like db.table or db.* (e.g. bank.accounts,shop.*)")
        return cls(patterns)

    def matches(self, db: str, table: str) -> bool:
        if not self.patterns:
            return True
        name = f"{db}.{table}".lower()
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)

    def __str__(self) -> str:
        return ",".join(self.patterns) or "*.*"


DEFAULT_LOCAL_PARTS_BYTES = StoreOptions.local_parts_bytes


@dataclass
class WriterOptions:
    binlog: str
    store: str
    upstream: str | None = None
    schema_url: str | None = None
    tables: TableFilter = field(default_factory=TableFilter)
    interval_s: float = DEFAULT_INTERVAL_S
    batch_events: int = DEFAULT_BATCH_EVENTS
    flush_rows: int = DEFAULT_FLUSH_ROWS
    flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S
    metrics_port: int | None = None
    # the store engine (engine.selection): "native" (TxnMergeTree) or "clickhouse" (chdb)
    engine: str = "native"
    # the TheFlash API service in the writer's process (theflash writer run --serve PORT)
    serve_port: int | None = None
    serve_http_port: int | None = None
    serve_host: str = "127.0.0.1"
    serve_token_file: str | None = None
    bootstrap_snapshot: bool = False
    latch_ttl_s: float = DEFAULT_LATCH_TTL_S
    compact_interval_s: float = DEFAULT_COMPACT_INTERVAL_S
    file_retention_s: float = DEFAULT_FILE_RETENTION_S
    delta_publish_interval_s: float = DEFAULT_DELTA_PUBLISH_INTERVAL_S  # 0: no Delta publication rounds
    delta_retention_s: float = 600.0  # how long a published Delta version stays readable (lake.publish)
    delta_to: str | None = None  # where the Delta tables go (a directory, s3://bucket/prefix); None: the store's directory
    part_compression: str = PART_COMPRESSION  # stable parts' Parquet codec (StoreOptions.part_compression)
    parts_to: str | None = None  # where the stable parts live besides the local disk (store.remote); None: local only
    local_parts_bytes: int = DEFAULT_LOCAL_PARTS_BYTES  # with parts_to: the local cache of stable parts
    progress_interval_s: float = DEFAULT_PROGRESS_INTERVAL_S
    name: str = "writer"
    until_caught_up: bool = False  # stop once the binlog head is applied and flushed (one-shot runs)
