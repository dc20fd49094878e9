"""What capture's main loop is handed, and what it holds until the DDL frontier passes: typed.

TiKV's CDC endpoint runs one loop over a typed ``Task`` enum (``components/cdc/src/endpoint.rs``);
capture does the same. Its threads hand the main loop a :data:`Task` — a store stream's message,
decoded into columns (:class:`StreamMessage`); a broken stream (:class:`StreamDown`); a poll of
PD's ts and TiDB's DDL history (:class:`DdlPoll`) or its failure (:class:`PollFailed`) — and the
main loop alone owns the registrations, the region table and the binlog writer.

What a message yields is held in one FIFO until the DDL frontier passes its newest commit (a row
must follow the schema change it was written under) as a :data:`Held` item, built into binlog
events only when released, in order (each is built against the claims and retirements of the
ones released before it): a registration's snapshot, its live rows, the live rows of many
regions of one message, a resolved ts of many regions, or a split or merge.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

from pyspark_theflash.binlog.snapshot_batch import SnapshotColumns
from pyspark_theflash.capture.feed_columns import FeedMessage, LiveBatch, LiveRuns
from pyspark_theflash.capture.region_feed import RegionFeed
from pyspark_theflash.proto import binlog_pb2


# ---------------------------------------------------------------------------------- tasks


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """A ``ChangeDataEvent`` of store ``store_id``'s stream (generation ``gen``), decoded."""

    store_id: int
    gen: int
    message: FeedMessage


@dataclass(frozen=True, slots=True)
class StreamDown:
    """Store ``store_id``'s stream (generation ``gen``) ended: its registrations are dropped."""

    store_id: int
    gen: int
    reason: str


@dataclass(frozen=True, slots=True)
class DdlPoll:
    """A fresh PD ts (the DDL frontier, once the jobs up to it are applied) and TiDB's DDL
    history (None: the status port gave none)."""

    frontier: int
    jobs: list[dict[str, object]] | None  # TiDB's JSON, as it came


@dataclass(frozen=True, slots=True)
class PollFailed:
    """The DDL poll failed (it is retried): logged as a warning."""

    reason: str


Task = Union[StreamMessage, StreamDown, DdlPoll, PollFailed]


# ---------------------------------------------------------------------------------- held


@dataclass(frozen=True, slots=True)
class HeldSnapshot:
    """A registration's initial scan, written as its ``RegionSnapshot`` (or found stale)."""

    feed: RegionFeed
    snapshot: SnapshotColumns | binlog_pb2.RegionSnapshot


@dataclass(frozen=True, slots=True)
class HeldRows:
    """One registration's live rows of one message, matched in C."""

    feed: RegionFeed
    rows: LiveBatch


@dataclass(frozen=True, slots=True)
class HeldRuns:
    """The live rows of many registrations of one message, matched in one C call: one event."""

    feeds: list[RegionFeed]
    runs: LiveRuns


@dataclass(frozen=True, slots=True)
class HeldResolved:
    """A resolved ts of many regions, for the registrations (ids, generations) it found."""

    ids: np.ndarray
    gens: np.ndarray
    ts: int


@dataclass(frozen=True, slots=True)
class HeldAdmin:
    """A split or merge as PD shows it, written as region ``region_id``'s ``Admin`` event."""

    region_id: int
    epoch: binlog_pb2.RegionEpoch
    admin: binlog_pb2.Admin


Held = Union[HeldSnapshot, HeldRows, HeldRuns, HeldResolved, HeldAdmin]
