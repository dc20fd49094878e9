"""The write path's hot loop: a batch of region events applied atomically to memory.

Runs of entries events are joined into arrays (``binlog_rows.run_columns``), prewrites paired
with their commits inside the run (``batch_pairs``), the rest walked through the region
caches; the committed rows are decoded per table and schema version into ``TableBuffer``s for
the flush pipeline (``store/flush.py``). ``Applier`` works on the writer's memory
(``WriteState``: regions, caches, buffers) and tables (``TableCatalog``: schema histories, a
batch's DDL), and hands a batch past the flush thresholds to the ``FlushPipeline``.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, NamedTuple, Sequence, overload

import numpy as np
import pyarrow as pa

from pyspark_theflash.binlog import region_runs
from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.binlog.event_batch import EventBatch, parsed_events
from pyspark_theflash.binlog.packed import resolved_regions
from pyspark_theflash.binlog.snapshot_batch import snapshot_columns
from pyspark_theflash.codec.key_ranges import RangeMembers
from pyspark_theflash.heap import cyclic_gc_paused
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.store import keyspace
from pyspark_theflash.store.errors import (
    CommitWithoutPrewriteError,
    MalformedRecordKeyError,
    UnknownRegionError,
    UnknownTableError,
)
from pyspark_theflash.store.batch_pairs import EventPairs, RunPairs, RunStage, decided_stage, find_pairs
from pyspark_theflash.store.catalog import TableCatalog
from pyspark_theflash.store.flush import FlushPipeline, FlushResult
from pyspark_theflash.store.options import StoreOptions
from pyspark_theflash.store.txn_merge_tree import (
    HIDDEN_NAMES,
    ROWID,
    file_schema,
)

from pyspark_theflash.store.schemas import rowid_type, user_fields
from pyspark_theflash.store.write_state import (
    MutableRegion,
    SnapshotWrites,
    StagedRows,
    TableBuffer,
    WriteState,
    position_tuple,
)

if TYPE_CHECKING:
    from pyspark_theflash.schema import TableInfo

Row = binlog_pb2.Row
PUT, DELETE, LOCK = binlog_pb2.PUT, binlog_pb2.DELETE, binlog_pb2.LOCK


@dataclass
class WriteResult:
    events: int = 0
    applied: int = 0
    skipped: int = 0             # at or below the region's applied index
    prewrites: int = 0
    commits: int = 0
    rollbacks: int = 0
    rows: int = 0                # committed rows buffered (record keys of replicated tables)
    orphan_commits: int = 0      # commits already contained in a region snapshot
    resolved: int = 0            # regions whose resolved ts moved: what makes staged rows readable
    flushed: FlushResult | None = None


def count_rows(types: np.ndarray, result: WriteResult) -> None:
    """Add rows of these types to the write's commit, prewrite and rollback counts."""
    per_type = np.bincount(types, minlength=max(Row.COMMITTED, Row.COMMIT, Row.PREWRITE, Row.ROLLBACK) + 1)
    result.commits += int(per_type[Row.COMMIT] + per_type[Row.COMMITTED])
    result.prewrites += int(per_type[Row.PREWRITE])
    result.rollbacks += int(per_type[Row.ROLLBACK])


class RunEvents(NamedTuple):
    """Per entries event of a run (event j of ``RunColumns``): its region, raft index and
    epoch (0 where the event has none)."""

    region_ids: np.ndarray
    indexes: np.ndarray
    epoch_versions: np.ndarray
    conf_versions: np.ndarray


class _EventWheres(Sequence[str]):
    """"region R index I" of each event of a run, made only when an error message needs one."""

    def __init__(self, region_ids: list[int], indexes: list[int]) -> None:
        self._region_ids, self._indexes = region_ids, indexes

    def __len__(self) -> int:
        return len(self._region_ids)

    @overload
    def __getitem__(self, k: int) -> str: ...

    @overload
    def __getitem__(self, k: slice) -> list[str]: ...

    def __getitem__(self, k: int | slice) -> str | list[str]:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        return f"region {self._region_ids[k]} index {self._indexes[k]}"


@functools.lru_cache(maxsize=1)
def _empty_run() -> binlog_rows.RunColumns:
    """A run of no entries event (its arrays are never written to)."""
    return binlog_rows.run_columns([], [])


def _above_running_max(group: np.ndarray, values: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per item, whether its value is above its group's ``base`` and every earlier value of its
    group; and per group, the greatest of its base and values. As arrays (a running maximum per
    group: values ranked, each group's ranks lifted above the groups before it)."""
    g = len(base)
    if not len(values):
        return np.zeros(0, dtype=bool), base.copy()
    # each group's base first, then its values in order
    groups = np.concatenate((np.arange(g), group))
    vals = np.concatenate((base, values))
    order = np.lexsort((np.concatenate((np.full(g, -1), np.arange(len(values)))), groups))
    _, rank = np.unique(vals, return_inverse=True)
    lifted = groups[order] * (len(vals) + 1) + rank[order]
    running = np.maximum.accumulate(lifted)
    before = np.empty_like(running)
    before[1:] = running[:-1]
    before[0] = -1
    is_value = order >= g
    take = np.zeros(len(values), dtype=bool)
    take[order[is_value] - g] = lifted[is_value] > before[is_value]
    last = np.append(groups[order][1:] != groups[order][:-1], True)
    top_rank = running[last] - groups[order][last] * (len(vals) + 1)
    by_rank = np.empty(int(rank.max()) + 1, dtype=vals.dtype)
    by_rank[rank] = vals
    top = np.empty(g, dtype=vals.dtype)
    top[groups[order][last]] = by_rank[top_rank]
    return take, top


class Applier:
    """``Store.write`` and what it needs: events → region caches → staged rows → decoded buffers."""

    def __init__(self, options: StoreOptions, state: WriteState, catalog: TableCatalog,
                 pipeline: FlushPipeline) -> None:
        self.options = options
        self.state = state
        # the live ("normal") regions by range, for _retire_overlapping: built from the regions
        # when first asked (None: to be built), kept as each region's range or state changes
        self._live: RangeMembers[int] | None = None
        self._live_of: dict[int, MutableRegion] | None = None
        self.catalog = catalog
        self.pipeline = pipeline  # a write past the flush thresholds flushes through it
        self._file_schemas: dict[tuple[int, int], tuple[pa.Schema, list[pa.Field]]] = {}
        # Decodes the committed rows of a batch instead of codec.batch.decode_rows_to_arrow:
        # (values, handles, table info, columns) -> RecordBatch, e.g. on Spark executors for
        # large batches (writer/spark_decode.py).
        self.decode_rows: Callable[..., pa.RecordBatch] | None = None

    # --- the write path ----------------------------------------------------------------------
    def write(self, events: Sequence[binlog_pb2.Event],
              position: binlog_pb2.Position | tuple[int, int] | None = None) -> WriteResult:
        """Apply a batch of events atomically to memory; ``position`` is where the binlog
        continues after them. On UnknownTableError (or any error) nothing is applied (the
        batch's DDL stays learned and staged: replaying it changes nothing)."""
        state = self.state
        caches = state.caches
        assert caches is not None
        if not isinstance(events, EventBatch):  # (a batch read from the binlog has its runs as events already)
            events = region_runs.expand(events)
        with state.lock, cyclic_gc_paused():
            for ev in parsed_events(events):  # the schema versions a batch's rows may need, known before decoding
                if ev.WhichOneof("payload") == "ddl":
                    self.catalog.apply_ddl(ev)
            result = WriteResult(events=len(events))
            staged = StagedRows()
            saved_regions: dict[int, MutableRegion | None] = {}
            caches.begin()
            state.board.begin()
            try:
                at = 0
                while at < len(events):
                    end, run, in_run, pairs, meta = self._pair_run(events, at)
                    # The run's decided events (every row COMMITTED or paired inside the run)
                    # are staged as arrays, runs of them at once; the others walk the cache.
                    stage, decided = decided_stage(run, pairs)
                    if len(run):
                        count_rows(run.rows.types if decided.all() else
                                   run.rows.types[np.repeat(decided, np.diff(run.starts))], result)
                    # ranges of consecutive decided events (bulk), and single other events
                    js = np.asarray(in_run, dtype=np.int64)
                    bulk = (js >= 0) & decided[np.maximum(js, 0)] if len(run) else np.zeros(len(js), dtype=bool)
                    edges = np.flatnonzero(np.diff(np.concatenate(([False], bulk, [False])).astype(np.int8)))
                    ranges = dict(zip(edges[0::2].tolist(), edges[1::2].tolist()))  # first -> past the last
                    i = at
                    while i < end:
                        k = ranges.get(i - at)
                        if k is not None:
                            k += at
                            j = in_run[i - at]
                            # entries events i..k are run events j..j + (k - i), consecutively
                            if not self._apply_decided(j, j + k - i, meta, stage, staged, saved_regions, result):
                                for m in range(i, k):
                                    self._apply_event(events[m], staged, saved_regions, result, run, in_run[m - at],
                                                      pairs, stage)
                            i = k
                            continue
                        j = in_run[i - at]
                        if j < 0:
                            self._apply_event(events[i], staged, saved_regions, result)
                        else:  # rows that need the region cache: this event walks it
                            self._apply_event(events[i], staged, saved_regions, result, run, j, pairs)
                        i += 1
                    if end == at:  # a snapshot or admin event: a barrier no pair spans
                        self._apply_event(events[at], staged, saved_regions, result)
                        end += 1
                    at = end
                decoded = self._decode(staged)
            except BaseException:
                caches.rollback()
                state.board.rollback()
                for rid, old in saved_regions.items():
                    if old is None:
                        state.regions.pop(rid, None)
                        state.board.release(rid)
                    else:
                        state.regions[rid] = old
                self._live = None  # the regions are the batch's undo now: built again when asked
                raise
            caches.commit()
            state.board.commit()
            # From here on nothing can fail half-way: the batch is decoded.
            state.dirty_regions.update(saved_regions)
            self._delete_ranges_in_buffers([(lo, hi) for _seq, lo, hi, _why in staged.tombstones])
            state.tombstones.extend((lo, hi, why) for _seq, lo, hi, why in staged.tombstones)
            for tid, version, table in decoded:
                buf = state.buffers.setdefault(tid, TableBuffer())
                buf.chunks.append((version, table))
                buf.rows += table.num_rows
                buf.bytes += table.nbytes
                result.rows += table.num_rows
            for rid, writes in staged.snapshot_writes.items():
                if writes is None:
                    state.snapshot_writes.pop(rid, None)
                else:
                    state.snapshot_writes[rid] = writes
            pos = position_tuple(position)
            if pos is not None:
                state.position = pos
            if (result.applied or pos is not None) and state.dirty_since is None:
                state.dirty_since = time.monotonic()
            if state.buffered_rows >= self.options.flush_rows or state.buffered_bytes >= self.options.flush_bytes:
                result.flushed = self.pipeline.flush()
            return result

    def _region_for_update(self, rid: int, saved: dict[int, MutableRegion | None]) -> MutableRegion:
        """The region's state, saved for the batch's undo; a new one (no range yet) for a region
        a snapshot or split is introducing."""
        reg = self.state.regions.get(rid)
        if rid not in saved:
            saved[rid] = None if reg is None else reg.undo_copy()
            if reg is not None:
                self.state.board.save_one(self.state.board.slot_of[rid])
        if reg is None:
            reg = MutableRegion(rid).on_board(self.state.board)
            self.state.regions[rid] = reg
            # (not in the live index until its range is set: a snapshot, split or merge making it
            # sets it before any other region is retired, and keeps it from being retired itself)
        return reg

    def _note_region(self, reg: MutableRegion) -> None:
        """Keep the index of live regions in step with ``reg``'s range and state."""
        if self._live is None:
            return
        if reg.state == "normal":
            self._live.add(reg.id, reg.start_key, reg.end_key)
        else:
            self._live.discard(reg.id)

    def _live_regions(self) -> RangeMembers[int]:
        if self._live is None or self._live_of is not self.state.regions:
            live: RangeMembers[int] = RangeMembers()
            for r in self.state.regions.values():
                if r.state == "normal":
                    live.add(r.id, r.start_key, r.end_key)
            self._live, self._live_of = live, self.state.regions
        return self._live

    def _pair_run(self, events: Sequence[binlog_pb2.Event], start: int
                  ) -> tuple[int, binlog_rows.RunColumns, list[int], RunPairs, RunEvents]:
        """The run of events from ``start`` that is applied as one: entries events (and
        resolved ts, and events to be skipped) up to the first snapshot or admin event to be
        applied — those clear or move cache entries, so a prewrite before one and its commit
        after it must meet in the cache, as they do without pairing. Returns the run's end,
        its entries events' rows joined (``binlog_rows.run_columns``), for each event of the
        run its index among them (-1: not an entries event to apply) and the pairs found
        (``batch_pairs``). Events at or below their region's applied index are recognised the
        way ``_apply_event`` will skip them. The run also ends before an event whose rows do
        not parse: applied in its turn, it raises there."""
        caches = self.state.caches
        assert caches is not None
        applied: dict[int, int] = {}
        region_ids: list[int] = []
        indexes: list[int] = []
        epochs: list[tuple[int, int]] = []
        in_run: list[int] = []
        numbers: list[int] = []  # the run's entries events: their places in ``events``
        # An EventBatch has the region, index and epoch of its columnar entries events as
        # arrays (no message is made of them); other events are read as messages.
        batch = events if isinstance(events, EventBatch) else None
        if batch is not None:
            columnar = batch.columnar[start:].tolist()
        end = start
        while end < len(events):
            if batch is not None and columnar[end - start]:
                # consecutive columnar entries events (at 10,000 regions, a message's runs of
                # many regions each, between resolved ts events): decided as arrays
                end = self._columnar_prefix(batch, end, applied, in_run, numbers, region_ids, indexes, epochs)
                continue
            ev = events[end]
            kind = ev.WhichOneof("payload")
            rid, index = int(ev.region_id), int(ev.index)
            j = -1
            if kind not in ("resolved_ts", "resolved", "ddl"):
                if rid not in applied:
                    reg = self.state.regions.get(rid)
                    applied[rid] = 0 if reg is None else reg.applied_index
                if index > applied[rid]:
                    if kind in ("admin", "snapshot"):
                        break
                    applied[rid] = index
                    if kind == "entries":
                        j = len(numbers)
                        numbers.append(end)
                        region_ids.append(rid)
                        indexes.append(index)
                        epochs.append((int(ev.epoch.version), int(ev.epoch.conf_version)))
            in_run.append(j)
            end += 1
        wheres = _EventWheres(region_ids, indexes)
        run = batch.run(numbers) if batch is not None else None
        if not numbers:  # (a snapshot or admin event first: each of thousands of regions' snapshots)
            run = _empty_run()
        elif run is None:  # not all columnar entries events of a batch: joined from the messages
            entries = [events[i].entries for i in numbers]
            run = binlog_rows.run_columns(entries, wheres)
        if len(run) < len(numbers):  # that event does not parse, or starts the next run
            end = start + in_run.index(len(run))
            del in_run[end - start:]
            del region_ids[len(run):], indexes[len(run):], epochs[len(run):]
        pairs = find_pairs(region_ids, run)
        if pairs.count() and caches.count():
            assert pairs.pair_regions is not None and pairs.pair_start_ts is not None
            pair_keys = pairs.pair_keys()
            for rid in np.unique(pairs.pair_regions).tolist():
                sel = np.flatnonzero(pairs.pair_regions == rid)
                caches.drop_each(rid, pair_keys.take(pa.array(sel)), pairs.pair_start_ts[sel])
        epoch_arr = np.array(epochs, dtype=np.int64).reshape(len(epochs), 2)
        meta = RunEvents(np.array(region_ids, dtype=np.int64), np.array(indexes, dtype=np.int64),
                         epoch_arr[:, 0], epoch_arr[:, 1])
        return end, run, in_run, pairs, meta

    def _columnar_prefix(self, batch: EventBatch, start: int, applied: dict[int, int], in_run: list[int],
                         numbers: list[int], region_ids: list[int], indexes: list[int],
                         epochs: list[tuple[int, int]]) -> int:
        """``_pair_run``'s walk over the columnar entries events from ``start`` up to the
        batch's first other event, as arrays: an event is taken when its index is above its
        region's applied index and every earlier index of its region in the batch. Returns
        where the walk goes on."""
        columnar = batch.columnar[start:]
        k = len(columnar) if columnar.all() else int(np.argmin(columnar))
        if not k:
            return start
        rids, idx = batch.region_ids[start:start + k], batch.indexes[start:start + k]
        regions, group = np.unique(rids, return_inverse=True)
        base = np.empty(len(regions), dtype=np.int64)  # each region's applied index so far
        state_regions = self.state.regions
        for g, rid in enumerate(regions.tolist()):  # (one lookup per region of the range, not per event)
            if rid not in applied:
                reg = state_regions.get(rid)
                applied[rid] = 0 if reg is None else reg.applied_index
            base[g] = applied[rid]
        take, top = _above_running_max(group, idx, base)
        applied.update(zip(regions.tolist(), top.tolist()))
        taken = np.flatnonzero(take)
        js = np.full(k, -1, dtype=np.int64)
        js[taken] = len(numbers) + np.arange(len(taken))
        in_run.extend(js.tolist())
        at = start + taken
        numbers.extend(at.tolist())
        region_ids.extend(batch.region_ids[at].tolist())
        indexes.extend(batch.indexes[at].tolist())
        epochs.extend(zip(batch.epoch_versions[at].tolist(), batch.conf_versions[at].tolist()))
        return start + k

    def _apply_decided(self, j0: int, j1: int, meta: "RunEvents", stage: RunStage, staged: StagedRows,
                       saved: dict[int, MutableRegion | None], result: WriteResult) -> bool:
        """Entries events j0..j1 of a run, consecutive in the batch, every row of which the run
        decided (``decided_stage``): what ``_apply_event`` does for each, as arrays — their
        staged rows as one span, each region's applied index and epoch moved to its last
        event's. False (nothing done) when one of them is of a region the store does not know:
        the event-by-event path then raises as it would."""
        # A range is a few events between the upstream's resolved ts events (thousands of calls a
        # batch): Python over the events' lists costs less than NumPy's per-call overhead.
        rids = meta.region_ids[j0:j1].tolist()
        regions = self.state.regions
        if not regions or any(rid not in regions for rid in set(rids)):
            return False
        tops: dict[int, list[int]] = {}  # region -> [max epoch version, max conf version, last index]
        for rid, epoch, conf, index in zip(rids, meta.epoch_versions[j0:j1].tolist(),
                                           meta.conf_versions[j0:j1].tolist(), meta.indexes[j0:j1].tolist()):
            top = tops.get(rid)
            if top is None:
                tops[rid] = [epoch, conf, index]
            else:
                top[0], top[1] = max(top[0], epoch), max(top[1], conf)
                top[2] = index  # _pair_run took only events above the region's applied index, in increasing order
        for rid, (epoch, conf, index) in tops.items():
            reg = self._region_for_update(rid, saved)
            reg.epoch_version = max(reg.epoch_version, epoch)
            reg.conf_ver = max(reg.conf_ver, conf)
            reg.applied_index = index
        result.applied += j1 - j0
        staged.add_stage_events(stage, j0, j1, rids)
        return True

    def _apply_event(self, ev: binlog_pb2.Event, staged: StagedRows, saved: dict[int, MutableRegion | None],
                     result: WriteResult, run: binlog_rows.RunColumns | None = None, j: int = -1,
                     pairs: RunPairs | None = None, stage: RunStage | None = None) -> None:
        """One event. ``run``, ``j``: an entries event ``_pair_run`` found to apply is event
        ``j`` of that run, whose ``pairs`` it found too, and ``stage``, what the run stages if
        every row of it is decided inside it."""
        assert self.state.caches is not None
        kind = ev.WhichOneof("payload")
        if kind == "ddl":  # applied before the batch (apply_ddl); no region's event
            return
        if kind == "resolved":
            self._apply_resolved(ev.resolved, staged, saved, result)
            return
        rid = int(ev.region_id)
        if rid not in self.state.regions and kind != "snapshot" and self.state.regions:
            # Only a snapshot or the split creating it introduces a region (its range): never
            # invent one. (A store that has met no region at all takes the first as a fresh
            # cluster's bootstrap region, which covers the whole key space.) A resolved ts of
            # an unknown region says nothing the store could use yet.
            if kind == "resolved_ts":
                result.skipped += 1
                return
            raise UnknownRegionError(rid, int(ev.index), f"an {kind} event")
        if kind == "admin" and ev.admin.HasField("merge") and int(ev.admin.merge.source.id) not in self.state.regions:
            # The source's keys join a region the store knows, but the store never had them.
            raise UnknownRegionError(int(ev.admin.merge.source.id), int(ev.index),
                                     f"a merge into region {rid}", snapshot_region=rid)
        reg = self._region_for_update(rid, saved)
        if kind == "resolved_ts":
            result.resolved += self._resolve(reg, int(ev.resolved_ts), staged)
            return
        if ev.index <= reg.applied_index:
            assert run is None, "_pair_run took a skipped event for an applied one"
            result.skipped += 1
            return
        if ev.HasField("epoch") and kind == "entries":
            reg.epoch_version = max(reg.epoch_version, int(ev.epoch.version))
            reg.conf_ver = max(reg.conf_ver, int(ev.epoch.conf_version))
        if kind == "entries":
            if run is None:
                run = binlog_rows.join_columns([binlog_rows.columns(ev.entries, f"region {rid} index {ev.index}")])
                j, pairs = 0, None
            self._apply_entries(reg, int(ev.index), run, j, staged, result, pairs, stage)
        elif kind == "admin":
            self._apply_admin(reg, ev.admin, staged, saved)
        elif kind == "snapshot":
            self._apply_snapshot(reg, int(ev.index), ev.snapshot, staged, saved)
        reg.applied_index = int(ev.index)
        result.applied += 1

    def _apply_resolved(self, resolved: binlog_pb2.ResolvedTs, staged: StagedRows,
                        saved: dict[int, MutableRegion | None], result: WriteResult) -> None:
        """Many regions' resolved ts in one event (TiKV CDC's form). Regions the store does
        not know are passed over, as their single-region events are; a store that has met
        no region at all takes a lone one as a fresh cluster's bootstrap region."""
        ts = int(resolved.ts)
        regions = self.state.regions
        if not regions and len(resolved.regions) == 1:
            result.resolved += self._resolve(self._region_for_update(int(resolved.regions[0]), saved), ts, staged)
            result.applied += 1
            return
        # One event lists every region of a TiKV connection (thousands): raised as arrays on the
        # board (no step per region), which a flush then finds moved the same way
        ids = resolved_regions(resolved)
        moved, closed = self.state.board.raise_to(ids, ts)
        for rid in closed.tolist():  # (the few regions a snapshot left an orphan window to)
            staged.snapshot_writes[rid] = None
        result.resolved += moved
        result.applied += 1

    @staticmethod
    def _resolve(reg: MutableRegion, ts: int, staged: StagedRows) -> bool:
        """Raise the region's resolved ts to ``ts``; whether it moved."""
        moved = ts > reg.resolved_ts
        if moved:
            reg.resolved_ts = ts
        if reg.orphan_until_ts and reg.resolved_ts >= reg.orphan_until_ts:
            # Nothing commits at or below the resolved ts any more: no orphan can come.
            reg.orphan_until_ts = 0
            staged.snapshot_writes[reg.id] = None
        return moved

    def _apply_entries(self, reg: MutableRegion, index: int, run: binlog_rows.RunColumns, j: int, staged: StagedRows,
                       result: WriteResult, run_pairs: RunPairs | None = None, stage: RunStage | None = None) -> None:
        """The rows of one Entries event, event ``j`` of ``run``. Committed rows (1PC writes)
        and rows paired inside the run (``run_pairs``: a COMMIT or ROLLBACK of a PREWRITE of
        the same run, found by ``batch_pairs``) are handled as arrays, without a Python step
        per row — the whole run at once (``stage``, counted by the caller) when no row of it
        needs the cache; the other PREWRITE/COMMIT/ROLLBACK rows walk in order through the
        region cache."""
        rid = reg.id
        if stage is not None:
            # A DELETE's value is empty; LOCK rows are dropped at decode.
            staged.add_stage_rows(rid, stage, int(stage.starts[j]), int(stage.starts[j + 1]))
            return
        rows = run.event(j)
        if run.all_committed[j]:
            staged.add_columns(rid, rows.keys, rows.values, rows.commit_ts, rows.ops)
            result.commits += len(rows)
            return
        pairs = None if run_pairs is None else run_pairs.event(j)
        types = rows.types
        count_rows(types, result)
        if pairs is None:
            self._walk_rows(reg, index, rows, None, staged, result)
            return
        assert run_pairs is not None
        paired = pairs.paired
        paired_commits = np.flatnonzero(paired & (types == Row.COMMIT))
        rest = np.flatnonzero(~paired)
        rest_types = types[rest]
        if not ((rest_types == Row.COMMIT) | (rest_types == Row.COMMITTED)).any():
            # Only the paired commits stage rows: one chunk, in row order. The other rows
            # (open prewrites, rollbacks) change the cache only.
            if len(paired_commits):
                staged.add_columns(rid, *run_pairs.staged_columns(rows, pairs, paired_commits))
            if len(rest):
                self._walk_rows(reg, index, rows, rest, staged, result)
            return
        # Paired and unpaired rows both stage rows: walk every row so they stage in row order.
        self._walk_rows(reg, index, rows, np.arange(len(rows)), staged, result, run_pairs, pairs)

    def _walk_rows(self, reg: MutableRegion, index: int, rows: binlog_rows.RowColumns, which: np.ndarray | None,
                   staged: StagedRows, result: WriteResult, run: RunPairs | None = None,
                   pairs: EventPairs | None = None) -> None:
        """Rows ``which`` (all: None) of an event, in order, one Python step each: PREWRITE
        into the region cache, COMMIT out of it (staging its row), ROLLBACK drops, COMMITTED
        staged. A row ``pairs`` marks paired is decided already: a paired PREWRITE or ROLLBACK
        is passed over, a paired COMMIT stages its prewrite's row from ``run``."""
        caches = self.state.caches
        assert caches is not None
        rid = reg.id
        committed_t, prewrite_t, commit_t = Row.COMMITTED, Row.PREWRITE, Row.COMMIT
        if which is not None and len(which) == len(rows):
            which = None
        sub = rows if which is None else rows.take(which)
        types = sub.types.tolist()
        keys = sub.keys.to_pylist()
        start_ts = sub.start_ts.tolist()
        ops = sub.ops.tolist()
        commit_ts = sub.commit_ts.tolist()
        has_prewrites = prewrite_t in types
        values = sub.values.to_pylist() if has_prewrites or committed_t in types else None
        primaries = sub.primaries.to_pylist() if has_prewrites else None
        ttls = sub.ttl.tolist() if has_prewrites else None
        paired: list[bool] | None = None
        paired_rows: dict[int, tuple[int, bytes]] = {}
        if pairs is not None:
            assert run is not None and run.values is not None and run.ops is not None and which is None
            paired = pairs.paired.tolist()
            commits_paired = np.flatnonzero(pairs.paired & (rows.types == commit_t))
            src = pairs.prewrite_of[commits_paired]
            paired_rows = dict(zip(commits_paired.tolist(),
                                   zip(run.ops[src].tolist(), run.values.take(pa.array(src)).to_pylist())))
        for i, t in enumerate(types):
            if paired is not None and paired[i]:
                if t == commit_t:
                    op, value = paired_rows[i]
                    if op == PUT:
                        staged.add(rid, keys[i], commit_ts[i], PUT, value)
                    elif op == DELETE:
                        staged.add(rid, keys[i], commit_ts[i], DELETE)
                continue
            if t == committed_t:
                assert values is not None
                staged.add(rid, keys[i], commit_ts[i], ops[i], values[i])
            elif t == prewrite_t:
                assert values is not None and primaries is not None and ttls is not None
                caches.prewrite(rid, keys[i], start_ts[i], ops[i], values[i], primaries[i], ttls[i])
            elif t == commit_t:
                key = keys[i]
                pw = caches.take(rid, key, start_ts[i])
                if pw is None:
                    if self._is_orphan_commit(reg, key, start_ts[i], commit_ts[i], staged):
                        result.orphan_commits += 1
                        continue
                    raise CommitWithoutPrewriteError(rid, key, keyspace.describe_key(key), start_ts[i],
                                                     commit_ts[i], index)
                if pw.op == PUT:
                    staged.add(rid, key, commit_ts[i], PUT, pw.value or b"")
                elif pw.op == DELETE:
                    staged.add(rid, key, commit_ts[i], DELETE)
            else:  # ROLLBACK
                caches.drop(rid, keys[i], start_ts[i])

    def _is_orphan_commit(self, reg: MutableRegion, key: bytes, start_ts: int, commit_ts: int, staged: StagedRows) -> bool:
        """A COMMIT without a prewrite is expected after a region snapshot: its prewrite
        predates the snapshot, and the snapshot holds either its lock (then the cache has
        it) or its committed write (then the data is already there: skip it). Such a commit
        is never newer than the snapshot's newest write, and none comes once the region's
        resolved ts has passed that."""
        if reg.orphan_until_ts == 0 or commit_ts > reg.orphan_until_ts:
            return False
        writes = staged.snapshot_writes.get(reg.id, self.state.snapshot_writes.get(reg.id))
        if writes is None:
            # The snapshot was applied before this process started: its write set is gone,
            # but the snapshot was whole, so a commit it lacks the lock of is in its data.
            return True
        return (key, start_ts) in writes

    def _apply_admin(self, reg: MutableRegion, admin: binlog_pb2.Admin, staged: StagedRows,
                     saved: dict[int, MutableRegion | None]) -> None:
        caches = self.state.caches
        assert caches is not None
        cmd = admin.WhichOneof("cmd")
        if cmd == "split":
            for r in admin.split.regions:
                target = self._region_for_update(int(r.id), saved)
                is_new = target is not reg and target.applied_index == 0 and target.state == "normal"
                target.start_key, target.end_key = bytes(r.start_key), bytes(r.end_key)
                target.epoch_version, target.conf_ver = int(r.epoch.version), int(r.epoch.conf_version)
                target.state = "normal"
                self._note_region(target)
                if target is not reg:
                    if is_new:
                        # Every commit at or below the parent's resolved ts was applied to
                        # its range, this part of it included: the promise holds for the part.
                        target.resolved_ts = max(target.resolved_ts, reg.resolved_ts)
                    if is_new or target.snapshot_index < reg.snapshot_index:
                        target.snapshot_index = max(target.snapshot_index, reg.snapshot_index)
                        target.orphan_until_ts = max(target.orphan_until_ts, reg.orphan_until_ts)
                        writes = staged.snapshot_writes.get(reg.id, self.state.snapshot_writes.get(reg.id))
                        if writes is not None:
                            staged.snapshot_writes[target.id] = writes
                    raw_s = keyspace.decode_region_boundary(target.start_key)
                    raw_e = keyspace.decode_region_boundary(target.end_key)

                    def in_target(k: bytes, s: bytes = raw_s, e: bytes = raw_e) -> bool:
                        return keyspace.key_in_raw_range(k, s, e)

                    caches.move(reg.id, target.id, in_target)
            born = {int(r.id) for r in admin.split.regions}
            for r in admin.split.regions:
                self._retire_overlapping(born, bytes(r.start_key), bytes(r.end_key), saved)
        elif cmd == "merge":
            src_msg, dst_msg = admin.merge.source, admin.merge.target
            src = self._region_for_update(int(src_msg.id), saved)
            dst = self._region_for_update(int(dst_msg.id), saved)
            dst.start_key, dst.end_key = bytes(dst_msg.start_key), bytes(dst_msg.end_key)
            dst.epoch_version, dst.conf_ver = int(dst_msg.epoch.version), int(dst_msg.epoch.conf_version)
            dst.state = "normal"
            self._note_region(dst)
            if src is not dst:
                caches.move(src.id, dst.id, lambda k: True)
                # the source's locks are the target's now: its resolved ts may promise no more
                # than the source's did (the upstream's merge takes the least of the two too)
                dst.resolved_ts = min(dst.resolved_ts, src.resolved_ts)
                if src.snapshot_index:
                    dst.snapshot_index = max(dst.snapshot_index, src.snapshot_index)
                    dst.orphan_until_ts = max(dst.orphan_until_ts, src.orphan_until_ts)
                    a = staged.snapshot_writes.get(src.id, self.state.snapshot_writes.get(src.id))
                    b = staged.snapshot_writes.get(dst.id, self.state.snapshot_writes.get(dst.id))
                    if a is not None and (b is not None or dst.snapshot_index == src.snapshot_index):
                        staged.snapshot_writes[dst.id] = a.union(b)
                src.state = "merged"
                self._note_region(src)
                src.epoch_version = max(src.epoch_version, int(src_msg.epoch.version))
            self._retire_overlapping({src.id, dst.id}, dst.start_key, dst.end_key, saved)
        elif cmd == "removed":
            staged.tombstones.append((staged.rows, reg.start_key, reg.end_key, f"region {reg.id} removed"))
            caches.clear(reg.id)
            reg.state = "removed"
            self._note_region(reg)

    def _retire_overlapping(self, keep: set[int], start: bytes, end: bytes,
                            saved: dict[int, MutableRegion | None]) -> None:
        """Retire every live region but ``keep`` over [start, end): a region the log now says
        holds that range replaces any other the store still lists there, whose shape is stale
        (it missed a split or merge while behind). Two live regions over one key would each
        serve its rows to a read."""
        assert self.state.caches is not None
        for rid in sorted(self._live_regions().overlapping(start, end)):
            other = self.state.regions.get(rid)
            if other is None or other.id in keep or other.state != "normal":
                continue
            if keyspace.ranges_overlap(other.start_key, other.end_key, start, end):
                stale = self._region_for_update(other.id, saved)
                stale.state = "removed"
                self._note_region(stale)
                self.state.caches.clear(stale.id)

    def _apply_snapshot(self, reg: MutableRegion, index: int, snap: binlog_pb2.RegionSnapshot, staged: StagedRows,
                        saved: dict[int, MutableRegion | None]) -> None:
        """A region snapshot, as columns (binlog/snapshot_batch.py; either form): its locks into
        the region cache, its versions staged as one chunk, their (key, start ts) kept for the
        COMMITs that may follow without a prewrite."""
        caches = self.state.caches
        assert caches is not None
        cols = snapshot_columns(snap, f"region {reg.id} snapshot at index {index}")
        r = snap.region
        if r.id and int(r.id) == reg.id or not r.id:
            if (bytes(r.start_key), bytes(r.end_key)) != (reg.start_key, reg.end_key):
                # A region whose range changed (a merge or split the store did not see as an
                # admin event): its resolved ts spoke of the old range only.
                reg.resolved_ts = 0
            reg.start_key, reg.end_key = bytes(r.start_key), bytes(r.end_key)
            if r.HasField("epoch"):
                reg.epoch_version, reg.conf_ver = int(r.epoch.version), int(r.epoch.conf_version)
        reg.state = "normal"
        self._note_region(reg)
        if not snap.since_ts:
            # a whole snapshot replaces the range's versions; an incremental one (since_ts)
            # adds the versions above since_ts the replica lacks, and deletes nothing
            staged.tombstones.append((staged.rows, reg.start_key, reg.end_key,
                                      f"region {reg.id} snapshot at index {index}"))
        caches.clear(reg.id)
        # The snapshot is the truth for its range. Another region this replica still lists
        # over it missed a split or merge while behind: its shape is stale, so it is retired
        # (its rows outside the range stay until the snapshots of the regions now holding
        # them replace them), and no open lock of another region survives inside the range.
        raw_s = keyspace.decode_region_boundary(reg.start_key)
        raw_e = keyspace.decode_region_boundary(reg.end_key)
        self._retire_overlapping({reg.id}, reg.start_key, reg.end_key, saved)
        for rid in caches.regions():
            if rid != reg.id:
                caches.drop_where(rid, lambda k: keyspace.key_in_raw_range(k, raw_s, raw_e))
        locks = cols.locks
        if len(locks):  # open transactions: few, and the cache holds them one by one
            for key, start_ts, op, value, primary, ttl in zip(
                    locks.keys.to_pylist(), locks.start_ts.tolist(), locks.ops.tolist(), locks.values.to_pylist(),
                    locks.primaries.to_pylist(), locks.ttl.tolist()):
                caches.prewrite(reg.id, key, start_ts, op, value if op == PUT else b"", primary, ttl)
        versions = cols.versions
        # a DELETE's value is empty, a LOCK row (a lock or rollback record) is dropped at decode
        staged.add_columns(reg.id, versions.keys, versions.values, versions.commit_ts, versions.ops)
        staged.snapshot_writes[reg.id] = SnapshotWrites.of(versions.keys, versions.start_ts)
        newest = int(versions.commit_ts.max()) if len(versions) else 0
        reg.snapshot_index = index
        reg.orphan_until_ts = newest if newest > reg.resolved_ts else 0

    def _decode(self, staged: StagedRows) -> list[tuple[int, int, pa.Table]]:
        """Committed rows → Arrow tables per table, vectorised; raises before anything is
        mutated (UnknownTableError for a table without schema)."""
        if not staged.rows:
            return []
        all_keys, all_values, all_commit_ts, all_ops = staged.columns()
        rk = keyspace.split_record_keys(all_keys, self.catalog.common_handle_tables())
        seq = rk.index
        if len(seq) == 0:
            return []
        ops = all_ops[seq]
        if (ops == LOCK).any():  # committed LOCK rows change no data
            data = ops != LOCK
            rk = keyspace.RecordKeys(rk.index[data], rk.table_ids[data], rk.int_handles[data],
                                     rk.keys.filter(pa.array(data)),
                                     None if rk.lengths is None else rk.lengths[data])
            seq, ops = rk.index, ops[data]
            if len(seq) == 0:
                return []
        commit_ts = all_commit_ts[seq]
        deletes = ops == DELETE
        out: list[tuple[int, int, pa.Table]] = []
        tids = rk.table_ids
        one_table = bool(tids[0] == tids.min() == tids.max())
        # the batch's range tombstones, their raw bounds decoded once (a table's handle range
        # of each is found below): a row staged before one and inside it is deleted by it
        tombstones = [(tseq, keyspace.decode_region_boundary(start), keyspace.decode_region_boundary(end))
                      for tseq, start, end, _why in staged.tombstones]
        for tid in tids[:1] if one_table else np.unique(tids):
            tid = int(tid)
            if tid in self.catalog.ignored:
                continue
            sel = None if one_table else tids == tid  # None: every row
            rows = np.arange(len(tids)) if sel is None else np.flatnonzero(sel)
            history = self.catalog.histories.get(tid)
            if history is None:
                raise UnknownTableError(tid, staged.region_of(int(seq[rows[0]])))
            info = history.latest
            common = bool(info.is_common_handle)
            if not common and not rk.int_keys_ok(sel):
                raise MalformedRecordKeyError(tid, staged.region_of(int(seq[rows[0]])))
            handles = rk.handles(sel, common)
            if tombstones:
                # Rows staged before a delete-range in the same batch are deleted by it.
                ranges, tseqs = self._handle_ranges(tombstones, tid, common)
                keep = keyspace.latest_cover(handles, ranges, tseqs) <= seq[rows]
                if not keep.all():
                    rows, handles = rows[keep], handles.filter(pa.array(keep))
            if len(rows) == 0:
                continue
            if len(history) == 1:
                out.append(self._decode_version(info, rows, handles, deletes, seq, commit_ts, all_values, common))
                continue
            # Each row decodes with the version in force at its commit ts (a column can change
            # type under the same id: the id alone never tells how to read a value).
            which = history.index_at(commit_ts[rows])
            infos = history.infos
            for v in np.unique(which).tolist():
                pick = np.flatnonzero(which == v)
                sub = rows if len(pick) == len(rows) else rows[pick]
                sub_handles = handles if len(pick) == len(rows) else handles.take(pa.array(pick))
                out.append(self._decode_version(infos[v], sub, sub_handles, deletes, seq, commit_ts, all_values,
                                                common))
        return out

    def _decode_version(self, info: "TableInfo", rows: np.ndarray, handles: pa.Array, deletes: np.ndarray,
                        seq: np.ndarray, commit_ts: np.ndarray, all_values: pa.Array, common: bool
                        ) -> tuple[int, int, pa.Table]:
        """Rows ``rows`` (positions among the batch's record rows) of one table, all decoding
        with schema version ``info``: their part-file table (deletes as delete marks)."""
        from pyspark_theflash.codec.batch import decode_rows_to_arrow
        from pyspark_theflash.schema.row_columns import row_columns

        schema, user = self._file_schema(info)
        is_delete = deletes[rows]
        value_at, ts_of = seq[rows], commit_ts[rows]  # per row of the table: its value, its commit ts
        int_handles = None if common else handles.to_numpy()
        pieces = []
        for want_delete in (False, True):
            pick = np.flatnonzero(is_delete == want_delete)
            if len(pick) == 0:
                continue
            n = len(pick)
            h = handles.take(pa.array(pick)) if int_handles is None else pa.array(int_handles[pick])
            if want_delete:
                cols = [pa.nulls(n, f.type) for f in user]
            else:
                # A common handle lives in the row value too: the int handles are unused.
                picked_handles = np.zeros(n, dtype=np.int64) if int_handles is None else int_handles[pick]
                if self.decode_rows is not None:
                    batch = self.decode_rows(all_values.take(pa.array(value_at[pick])), picked_handles, info, None)
                else:  # the selected values are read in place
                    batch = decode_rows_to_arrow(all_values, picked_handles, row_columns(info), rows=value_at[pick])
                cols = [batch.column(batch.schema.get_field_index(f.name)) for f in user]
            pieces.append(pa.Table.from_arrays(
                cols + [h, pa.array(ts_of[pick]), pa.array(np.full(n, want_delete))], schema=schema))
        t = pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]
        return (int(info.id), int(info.schema_version), t)

    def _file_schema(self, info: "TableInfo") -> tuple[pa.Schema, list[pa.Field]]:
        """The part-file schema of a table's schema version and its user fields (cached)."""
        key = (int(info.id), int(info.schema_version))
        cached = self._file_schemas.get(key)
        if cached is None:
            schema = file_schema(user_fields(info), rowid_type(info))
            cached = self._file_schemas[key] = (schema, [f for f in schema if f.name not in HIDDEN_NAMES])
        return cached

    @staticmethod
    def _handle_ranges(tombstones: list[tuple[int, bytes, bytes]], tid: int, common: bool
                       ) -> tuple[list[keyspace.HandleRange], list[int]]:
        """Table ``tid``'s handle range of each (seq, raw start, raw end) tombstone that holds
        any of its keys, with the tombstones' seqs."""
        ranges: list[keyspace.HandleRange] = []
        seqs: list[int] = []
        for tseq, start, end in tombstones:
            rng = keyspace.handle_range_in(start, end, tid, common)
            if rng is not None:
                ranges.append(rng)
                seqs.append(tseq)
        return ranges, seqs

    def _delete_ranges_in_buffers(self, bounds: list[tuple[bytes, bytes]]) -> None:
        """The buffered rows (of batches before this one) inside any of the PD-encoded ranges
        dropped: one pass over each buffered chunk for all of them."""
        if not bounds or not self.state.buffers:
            return
        tombstones = [(0, keyspace.decode_region_boundary(start), keyspace.decode_region_boundary(end))
                      for start, end in bounds]
        for tid, buf in self.state.buffers.items():
            ranges, seqs = self._handle_ranges(tombstones, tid, bool(self.catalog.latest[tid].is_common_handle))
            if not ranges:
                continue
            chunks = []
            rows = nbytes = 0
            for version, t in buf.chunks:
                inside = keyspace.latest_cover(t.column(ROWID), ranges, seqs) >= 0
                if inside.any():
                    t = t.filter(pa.array(~inside))
                if t.num_rows:
                    chunks.append((version, t))
                    rows += t.num_rows
                    nbytes += t.nbytes
            buf.chunks, buf.rows, buf.bytes = chunks, rows, nbytes

