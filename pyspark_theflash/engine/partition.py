"""A planned partition: the contract between the scan planner, which makes it, and the engines,
which read it (``Engine.read_partition``, ``engine.readers``).

A partition is plain picklable data (no Spark types here): the snapshot ts, the lease that
pins it, and one or more handle ranges each with the part list pinned for it. Planning it
(sizes, grouping) is ``scan.partitions``; the Spark layer wraps it in an ``InputPartition``.

What a reader needs from the boxes above the engines is typed here and handed to it: the
read's lease is renewed through a :class:`LeaseRenewal` (``scan.lease.LeaseKeeper``), and a
read that must go through another process's service is a :class:`ServiceRead`
(``scan.through_service.read_through_service``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Protocol

import pyarrow as pa

if TYPE_CHECKING:
    from pyspark_theflash.schema.info_json import TableInfoJson
    from pyspark_theflash.store.part_ref import PartRef


class ServiceToken(Protocol):
    """The read's bearer token (``scan.bearer_token.BearerToken``): only ``header()`` gives
    its value; ``source`` says where it came from."""

    source: str

    def header(self) -> str: ...


@dataclass(frozen=True)
class RangeScan:
    """One contiguous handle range [lo, hi) of the table (one region, or several adjacent
    ones) with the parts pinned for it."""

    region_ids: tuple[int, ...]
    lo: int | bytes | None          # a clustered common handle's key bytes, or an int handle
    hi: int | bytes | None
    parts: tuple[PartRef, ...]
    size_bytes: int
    # The physical table the range is of: a partition's id for a partitioned table (its rows
    # live under that id), None for the table's own id.
    table_id: int | None = None


@dataclass(frozen=True)
class ScanPartition:
    """Everything an executor needs to read its share of a snapshot."""

    index: int
    store: str                      # store root
    latch: str | None               # latch address, None = in-process on the store
    table: str                      # db.table, for messages
    table_info: TableInfoJson  # TiDB table info JSON (the schema version read)
    db: str
    ts: int
    lease_id: int | None
    lease_ttl_s: float
    ranges: tuple[RangeScan, ...]
    columns: tuple[str, ...] | None  # None: all visible columns
    hidden: tuple[str, ...]
    predicate_json: str | None
    batch_rows: int
    size_bytes: int = 0
    engine: str = "native"          # the store's engine (engine.selection): who reads the rows
    # The read's bearer token (scan.bearer_token; options token / token_file), for an executor
    # that reads through a service needing one (a ClickHouse store's owner). None: the
    # executor's THEFLASH_TOKEN. Its repr names where it came from, never the value.
    token: ServiceToken | None = None
    # a change read (store/changes.py): the versions with changes_from < commit_ts <= ts; its
    # lease pins changes_from
    changes_from: int | None = None
    changes_net: bool = False

    @property
    def lease_ts(self) -> int:
        return self.changes_from or self.ts

    @property
    def region_ids(self) -> tuple[int, ...]:
        return tuple(r for rng in self.ranges for r in rng.region_ids)


class LeaseRenewal(Protocol):
    """How a partition's reader keeps the read's lease alive while batches flow
    (``scan.lease.LeaseKeeper``): ``touch`` renews it at most every third of its TTL (always
    when ``force``), taking it again at the same ts when it expired; ``replaced`` says it was
    taken again (the pinned parts may have been compacted away since planning)."""

    @property
    def replaced(self) -> bool: ...

    def touch(self, force: bool = False) -> None: ...


class ServiceRead(Protocol):
    """A partition's rows read through the service at ``url`` of the process that owns the
    store's files (``scan.through_service.read_through_service``)."""

    def __call__(self, p: ScanPartition, url: str) -> Iterator[pa.RecordBatch]: ...
