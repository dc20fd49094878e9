"""Entries events of many regions (binlog format version 3): one event per feed message.

TiKV's change-data feed packs the events of up to 64 regions into one ``ChangeDataEvent``. At
10,000 regions each region's share of a message is a few rows, and one binlog event per region
cost capture a Python step, a message and an append per region, and the writer a frame and a
decode per region. So capture writes a message's live rows as one ``Entries`` event whose
``runs`` (protos/binlog.proto ``RegionRuns``) say which rows are whose: run *i* is the rows
``row_offsets[i]:row_offsets[i+1]`` of region ``region_ids[i]`` at raft index ``indexes[i]``.

It means exactly the single-region events of its runs, in order, and every reader takes it so:

* the writer's batch decoder (``event_batch.decode_events``) turns each run into one event of
  its arrays, without a message;
* everything that reads events as messages (``Store.write`` given a list, the dump, a
  region-filtered pull) calls :func:`expand`, which splits such an event (:func:`split`).

:func:`pack_runs` writes the form, :func:`runs_arrays` reads and checks it (a malformed one
refuses the event whole, as a malformed ``RowBatch`` does).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.binlog.errors import BinlogError
from pyspark_theflash.proto import binlog_pb2

FORMAT_VERSION = 3  # the binlog format version that introduced RegionRuns

# RowBatch fields by layout: (name, bytes a row) and (offsets, data) pairs (protos/binlog.proto)
_FIXED = (("types", 1), ("ops", 1), ("start_ts", 8), ("commit_ts", 8), ("ttl", 8), ("txn_size", 8),
          ("min_commit_ts", 8), ("async_commit", 1))
_BINARY = (("key_offsets", "key_data"), ("value_offsets", "value_data"), ("primary_offsets", "primary_data"),
           ("secondaries_offsets", "secondaries_data"))


class MalformedRegionRunsError(BinlogError):
    """``RegionRuns`` that do not describe their batch's rows: the event is corrupt."""

    def __init__(self, where: str, reason: str) -> None:
        self.where, self.reason = where, reason
        at = f" ({where})" if where else ""
        super().__init__(f"malformed RegionRuns{at}: {reason}; the event is refused whole — the binlog is corrupt "
                         "or was written by a broken producer")


@dataclass(frozen=True)
class RunsArrays:
    """A ``RegionRuns`` read: one item per run (int64), ``row_offsets`` one more."""

    region_ids: np.ndarray
    indexes: np.ndarray
    epoch_versions: np.ndarray
    conf_versions: np.ndarray
    row_offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.region_ids)


def has_runs(event: binlog_pb2.Event) -> bool:
    """Whether ``event`` is an Entries event of many regions."""
    return event.WhichOneof("payload") == "entries" and bool(event.entries.HasField("runs"))


def pack_runs(region_ids: np.ndarray, indexes: np.ndarray, epoch_versions: np.ndarray, conf_versions: np.ndarray,
              row_offsets: np.ndarray, out: binlog_pb2.RegionRuns) -> None:
    """The runs' arrays into ``out`` (an empty ``RegionRuns`` inside its event, filled in place)."""
    out.count = len(region_ids)
    out.region_ids = np.ascontiguousarray(region_ids, dtype="<u8").tobytes()
    out.indexes = np.ascontiguousarray(indexes, dtype="<u8").tobytes()
    out.epoch_versions = np.ascontiguousarray(epoch_versions, dtype="<u8").tobytes()
    out.conf_versions = np.ascontiguousarray(conf_versions, dtype="<u8").tobytes()
    out.row_offsets = np.ascontiguousarray(row_offsets, dtype="<i4").tobytes()


def runs_arrays(runs: binlog_pb2.RegionRuns, row_count: int, where: str = "") -> RunsArrays:
    """``runs`` as arrays, checked against a batch of ``row_count`` rows (protos/binlog.proto)."""
    n = int(runs.count)

    def fixed(name: str) -> np.ndarray:
        data = getattr(runs, name)
        if len(data) != 8 * n:
            raise MalformedRegionRunsError(where, f"{name} has {len(data)} bytes for {n} runs")
        arr = np.frombuffer(data, dtype="<u8")
        if n and int(arr.max()) >= 1 << 63:
            raise MalformedRegionRunsError(where, f"{name} holds a value beyond 2^63")
        return arr.astype(np.int64)

    region_ids, indexes = fixed("region_ids"), fixed("indexes")
    epochs, confs = fixed("epoch_versions"), fixed("conf_versions")
    if len(runs.row_offsets) != 4 * (n + 1):
        raise MalformedRegionRunsError(where, f"row_offsets has {len(runs.row_offsets)} bytes for {n} runs")
    offsets = np.frombuffer(runs.row_offsets, dtype="<i4").astype(np.int64)
    if offsets[0] != 0 or offsets[-1] != row_count or (np.diff(offsets) < 0).any():
        raise MalformedRegionRunsError(where, f"row_offsets do not run from 0 up to the batch's {row_count} rows")
    if n and (int(region_ids.min()) <= 0 or int(indexes.min()) <= 0):
        raise MalformedRegionRunsError(where, "a run of region 0 or at index 0")
    return RunsArrays(region_ids, indexes, epochs, confs, offsets)


def slice_batch(batch: binlog_pb2.RowBatch, lo: int, hi: int, out: binlog_pb2.RowBatch) -> None:
    """Rows lo..hi of a valid ``batch`` (every field, the optional ones kept empty where empty)
    into ``out``."""
    out.count = hi - lo
    for name, width in _FIXED:
        data = getattr(batch, name)
        if data:
            setattr(out, name, data[width * lo:width * hi])
    for off_name, data_name in _BINARY:
        raw = getattr(batch, off_name)
        if not raw:
            continue
        offsets = np.frombuffer(raw, dtype="<i4")
        a, b = int(offsets[lo]), int(offsets[hi])
        setattr(out, off_name, (offsets[lo:hi + 1] - a).astype("<i4").tobytes())
        setattr(out, data_name, getattr(batch, data_name)[a:b])


def split(event: binlog_pb2.Event, where: str = "") -> list[binlog_pb2.Event]:
    """An event of many regions as the single-region Entries events it means, in run order."""
    if event.region_id or event.index:
        raise MalformedRegionRunsError(where, f"the event has region {event.region_id} index {event.index} of its own")
    batch = event.entries.batch
    runs = runs_arrays(event.entries.runs, int(batch.count), where)
    binlog_rows.batch_columns(batch, where)  # the rows' arrays hold: a malformed batch is refused whole here
    out: list[binlog_pb2.Event] = []
    for rid, index, epoch, conf, lo, hi in zip(runs.region_ids.tolist(), runs.indexes.tolist(),
                                               runs.epoch_versions.tolist(), runs.conf_versions.tolist(),
                                               runs.row_offsets[:-1].tolist(), runs.row_offsets[1:].tolist()):
        one = binlog_pb2.Event(region_id=rid, index=index)
        if epoch or conf:
            one.epoch.version, one.epoch.conf_version = epoch, conf
        slice_batch(batch, lo, hi, one.entries.batch)
        out.append(one)
    return out


def expand(events: Sequence[binlog_pb2.Event]) -> Sequence[binlog_pb2.Event]:
    """``events`` with each event of many regions split (:func:`split`); ``events`` itself
    when none is."""
    if not any(has_runs(ev) for ev in events):
        return events
    out: list[binlog_pb2.Event] = []
    for ev in events:
        if has_runs(ev):
            out.extend(split(ev))
        else:
            out.append(ev)
    return out
