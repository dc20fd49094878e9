"""The writer job's loop: binlog source → ``Store.write`` (one atomic apply per batch) →
flush by size, deadline or a reader's request → compaction/GC when idle.

One writer per store, enforced by the latch's write latch (renewed every TTL/3; losing it
stops the loop). The binlog is the write-ahead log: the store persists its position with
every flush, a restart resumes there, and the store skips events at or below a region's
applied index — so a SIGKILL at any point loses and doubles nothing.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import threading
import time
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import numpy as np

from pyspark_theflash.binlog import Position
from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.binlog.event_batch import EventBatch, parsed_events
from pyspark_theflash.binlog.read_ahead import ReadAhead
from pyspark_theflash.binlog.source import ReadBatch
from pyspark_theflash.engine.interface import Engine
from pyspark_theflash.errors import TheFlashError, storage_failure
from pyspark_theflash.latch.errors import WriteLatchLostError
from pyspark_theflash.store.errors import StoreFencedError
from pyspark_theflash.latch.local import LocalLatch
from pyspark_theflash.latch.types import FlushRequest, WriterHolder
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.store.apply import WriteResult
from pyspark_theflash.upstream_client.client import RAFT_INIT_LOG_INDEX
from pyspark_theflash.writer.binlog_bounds import binlog_bounds, binlog_reaches_start
from pyspark_theflash.writer import last_error
from pyspark_theflash.writer.daemon import remove_pid_file, write_pid_file
from pyspark_theflash.writer.store_rounds import Finished, StoreRounds
from pyspark_theflash.writer.errors import SchemaUnavailableError, TableGoneUpstreamError, WriterConfigError
from pyspark_theflash.writer.options import WriterOptions
from pyspark_theflash.writer.progress import Progress, WriterStatus
from pyspark_theflash.writer.schema_guard import column_ids_by_table, unknown_column_ids
from pyspark_theflash.writer.schemas import HttpSchemaSource, SchemaSource, UpstreamSchemaSource, table_name

if TYPE_CHECKING:
    from pyspark_theflash.lake.publish import Publisher, Round
    from pyspark_theflash.store.compaction import CompactionResult
    from pyspark_theflash.store.flush import PendingFlush
    from pyspark_theflash.store.errors import UnknownRegionError
    from pyspark_theflash.store.store import Store, WriteResult
    from pyspark_theflash.upstream_client.client import UpstreamClient
    from pyspark_theflash.writer.metrics_http import MetricsServer

log = logging.getLogger("theflash.writer")

# While idle the writer sleeps in slices this long, so a flush request, a new interval or a
# stop signal is seen within one slice instead of one interval.
IDLE_SLICE_S = 0.02
# A single read waits at most this long for events: the loop stays responsive to flush
# requests and signals while the binlog is quiet.
READ_TIMEOUT_S = 0.0
# While a reader's flush request waits for indexes the binlog has not delivered yet, the
# writer polls at least this often (readers give up on their own; requests expire in minutes).
WAITING_READER_POLL_S = 0.05
# The store's own (synchronous) flush by rows, under the loop's pipelined ones: above what one
# read of the binlog can bring (READ_BYTES_MAX, 64 MiB, at 16+ bytes a row).
BACKSTOP_ROWS = 4_000_000
# Publishing the writer's status takes at most this share of the loop's time (_publish).
STATUS_SHARE = 0.02
# While events keep coming, compaction waits for an idle moment up to this many intervals.
COMPACT_OVERDUE_FACTOR = 4.0
# How often the writer merges each partition's delta parts into one (Store.merge_deltas: cheap,
# the stable part is left alone), whether busy or idle: between two compactions a partition
# would otherwise gather a delta part per flush, and every read opens each of them.
DELTA_MERGE_INTERVAL_S = 1.0

def _column_ids(batch: ReadBatch) -> dict[int, np.ndarray]:
    return column_ids_by_table(batch.events)


def _batch_progress(events: Sequence[binlog_pb2.Event]) -> tuple[int, int, dict[int, int]]:
    """A batch's live rows, its snapshots' versions (an initial copy's rows) and each region's
    highest index in it, for the progress line (from the arrays of an ``EventBatch``; one step
    per event otherwise)."""
    rows = copied = 0
    seen: dict[int, int] = {}
    if isinstance(events, EventBatch):
        rows = events.row_count()
        columnar = np.flatnonzero(events.columnar)
        if len(columnar):
            regions, indexes = events.region_ids[columnar], events.indexes[columnar]
            order = np.lexsort((indexes, regions))
            last = np.flatnonzero(np.append(regions[order][1:] != regions[order][:-1], True))
            seen = dict(zip(regions[order][last].tolist(), indexes[order][last].tolist()))
    for event in parsed_events(events):
        kind = event.WhichOneof("payload")
        if kind == "snapshot":
            copied += int(event.snapshot.batch.count) + len(event.snapshot.writes)
        elif not isinstance(events, EventBatch) and kind == "entries":
            rows += binlog_rows.row_count(event.entries)
        if event.index > seen.get(event.region_id, 0):
            seen[event.region_id] = event.index
    return rows, copied, seen


class ReadServer(Protocol):
    """The read-session service a writer runs beside itself (``--serve``): where it answers,
    and its close. The service box sits above the writer, so the entry point that assembles
    the writer hands it the way to start one (``Writer(serve=...)``:
    ``pyspark_theflash.service.serve_beside_writer``)."""

    @property
    def flight_location(self) -> str: ...

    @property
    def http_url(self) -> str: ...

    def close(self) -> None: ...


class Writer:
    """One run of the writer job on one store. ``run()`` returns when ``stop`` is set (after
    finishing the batch in hand, flushing and releasing the latch) or raises on a fatal error.
    Batches are applied through the store's ``Engine`` (``Engine.apply_batch``)."""

    def __init__(
        self,
        options: WriterOptions,
        stop: threading.Event | None = None,
        *,
        on_progress: Callable[[WriterStatus], None] | None = None,
        configure_store: Callable[[Store], None] | None = None,
        serve: Callable[[WriterOptions], ReadServer] | None = None,
    ) -> None:
        self.options = options
        self.serve = serve  # starts the read service of option serve_port
        if options.serve_port is not None and serve is None:
            raise WriterConfigError("option serve_port needs the read service: run `theflash writer run --serve`, or "
                                    "give Writer(serve=pyspark_theflash.service.serve_beside_writer)")
        self.stop = stop or threading.Event()
        self.on_progress = on_progress
        self.configure_store = configure_store
        self.progress = Progress(interval_s=options.interval_s)
        self._status_lock = threading.Lock()
        self._status: WriterStatus = self.progress.to_status()
        self.latch: LocalLatch | None = None
        self.holder: WriterHolder | None = None
        self.store: Store | None = None
        self.engine: Engine | None = None  # over self.store (opened in run())
        self.upstream: UpstreamClient | None = None
        self.schemas: SchemaSource | None = None
        self.metrics: MetricsServer | None = None
        self.service: ReadServer | None = None  # the TheFlash API service in this process (--serve)
        self.store_lost = False
        self._apply_began = False  # a batch began to be applied in this run
        self._binlog_reaches_start = True  # read from the binlog before the run says it is up
        self._unflushed_rows = 0
        self._unflushed_events = 0
        # a resolved ts moved since the last flush: applied rows became readable in memory only
        self._unflushed_resolved = False
        self._pending_flush: tuple[PendingFlush, float] | None = None  # (flush, started) not yet durable
        self._columns_cache: dict[int, set[int]] | None = None
        self._skipped_columns: dict[int, set[int]] = {}  # column ids of no known version (dropped long ago)
        self._last_request_seen = 0  # flush requests up to this id were looked at after a flush
        now = time.monotonic()
        self._last_flush = self._last_compact = self._last_renew = self._last_delta_merge = self._last_delta_publish = now
        self._publisher: Publisher | None = None  # made at the first round (docs/delta.md)
        self._rounds: StoreRounds[CompactionResult] | None = None  # made at the first (writer/store_rounds.py)
        self._delta_rounds: StoreRounds[Round] = StoreRounds()  # Delta publication, a thread of its own
        self._last_publish = 0.0
        self._publish_every = options.progress_interval_s  # (longer with many regions: _publish)

    @property
    def _engine(self) -> Engine:
        """The engine over the store ``run()`` opened."""
        if self.engine is None:
            raise RuntimeError("the writer's engine is not open (run() opens it)")
        return self.engine

    @property
    def _store(self) -> Store:
        """The store ``run()`` opened: every step of the loop runs after it."""
        if self.store is None:
            raise RuntimeError("the writer's store is not open (run() opens it)")
        return self.store

    @property
    def _latch(self) -> LocalLatch:
        """The latch ``run()`` opened first."""
        if self.latch is None:
            raise RuntimeError("the writer's latch is not open (run() opens it)")
        return self.latch

    @property
    def _holder(self) -> WriterHolder:
        """The write latch this run holds."""
        if self.holder is None:
            raise RuntimeError("the writer holds no write latch")
        return self.holder

    # -- lifecycle ---------------------------------------------------------------------------
    def status(self) -> WriterStatus:
        with self._status_lock:
            return copy.copy(self._status)

    def run(self) -> None:
        opts = self.options
        # A run that fails before its first apply (a wrong --upstream, an unreadable binlog) into a
        # directory it created leaves nothing behind (no latch database, no empty manifest): the
        # next run starts as this one did. Once an apply began, the store keeps what happened (a
        # full disk's error, for `writer status`).
        created = not os.path.exists(opts.store)
        self._apply_began = False
        try:
            self._run(opts)
        except BaseException:
            if created and not self._apply_began and not self.store_lost:
                shutil.rmtree(opts.store, ignore_errors=True)
            raise

    def _run(self, opts: WriterOptions) -> None:
        """``run`` proper: the latch, the store, the upstream, the service, the loop."""
        from pyspark_theflash.store.store import Store, StoreOptions

        failed: BaseException | None = None
        self.latch = LocalLatch(opts.store)
        self.holder = self.latch.acquire_write_latch(opts.name, opts.latch_ttl_s)
        write_pid_file(opts.store)  # only the latch holder may claim the pid file
        try:
            self._carry_last_error()
            if opts.metrics_port is not None:
                from pyspark_theflash.writer.metrics_http import MetricsServer

                self.metrics = MetricsServer(self.status, opts.metrics_port)
                log.info("metrics on http://127.0.0.1:%d/metrics", self.metrics.port)
            # The loop flushes after each batch that reaches --flush-rows, pipelined, so the store
            # buffers at most that and one batch; the store's own flush inside write() (synchronous,
            # on this loop) is only the memory backstop, by bytes. By rows it fired on every batch
            # of a busy many-region feed (a read brings up to 64 MiB: events of many regions carry
            # hundreds of thousands of rows), a fifth of the writer's time beside capture.
            self.store = Store.open(
                opts.store,
                options=StoreOptions(flush_rows=max(2 * opts.flush_rows, BACKSTOP_ROWS),
                                     flush_deadline_s=opts.flush_interval_s,
                                     removed_file_retention_s=opts.file_retention_s,
                                     part_compression=opts.part_compression,
                                     parts_remote=opts.parts_to, local_parts_bytes=opts.local_parts_bytes),
            )
            from pyspark_theflash.engine import open_writer_engine

            # the ClickHouse engine attaches itself to the store as its row sink
            self.engine = open_writer_engine(self.store, opts.engine)
            # Every manifest edit checks, under SQLite's write lock, that this run still holds
            # the latch: a run stalled past its TTL and taken over commits nothing on waking.
            token = self._holder.token
            self.store.set_fence(lambda: self._latch.check_holds(token))
            if self.configure_store is not None:
                self.configure_store(self.store)
            self._connect_upstream()
            # The binlog answers (its directory exists, its service its Status), and whether it
            # still holds its first segment decides how an empty store starts (_loop).
            self._binlog_reaches_start = binlog_reaches_start(opts.binlog)
            self._start_service()
            # Up: the upstream and the binlog answered, and the read service (with --serve)
            # listens. Published now, with this process's pid, so `writer start` returns only then
            # (writer/daemon.py): a port taken, an upstream refused or a binlog that is not there
            # is its error, not a line in a log.
            self._announce_up()
            self._loop()
            # The last flush inside the run's error handling: its storage failure (a pipelined
            # flush that found the disk full surfaces here) is reported and recorded as one.
            self._final_flush()
        except (WriteLatchLostError, StoreFencedError):
            # Another writer owns the store now: touching it (even a final flush) could undo
            # its work. Stop without writing; the binlog replays whatever was not flushed.
            self.holder = None
            self.store_lost = True
            raise
        except BaseException as exc:
            failed = exc
            failure = storage_failure(exc, f"the writer of store {opts.store}")
            if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                self._record_failure(failure or exc)
            if failure is not None:
                raise failure from exc
            raise
        finally:
            self._shutdown(failed)

    def _connect_upstream(self) -> None:
        opts = self.options
        if opts.upstream:
            from pyspark_theflash.upstream_client.client import connect

            self.upstream = connect(opts.upstream)
            cluster_id = self._check_upstream(opts.upstream)
            # A TiDB cluster's PD knows no table: its schemas travel in the binlog (capture
            # writes the DDL jobs) or come from a TiDB status port (--schema-url).
            if opts.schema_url:
                self.schemas = HttpSchemaSource(opts.schema_url)
            elif not opts.upstream.startswith("pd://"):
                self.schemas = UpstreamSchemaSource(self.upstream)
            # Readers default to the address the writer records (the `upstream` read option).
            self._store.set_upstream(opts.upstream, cluster_id)
        elif opts.schema_url:
            self.schemas = HttpSchemaSource(opts.schema_url)

    def _check_upstream(self, address: str) -> int | None:
        """The upstream at ``address`` answers, and is the cluster the store replicates (the one
        whose id an earlier run recorded): checked before the address is recorded, so a wrong
        ``--upstream`` is refused, never written into the store. Returns its cluster id."""
        from pyspark_theflash.upstream_client.errors import UpstreamError

        info = getattr(self.upstream, "cluster_info", None)
        if info is None and not hasattr(self.upstream, "cluster_id"):
            return None
        try:
            # pd://: the client asked PD's GetMembers for the id when it connected
            # cluster_id: a TiDBClusterClient's, which UpstreamClient does not promise
            cluster_id = int(info().cluster_id) if info is not None else int(getattr(self.upstream, "cluster_id"))
        except UpstreamError as exc:
            raise WriterConfigError(f"--upstream {address} does not answer ({exc}); nothing was recorded in store "
                                    f"{self.options.store}: check the address (`theflash upstream --serve` and "
                                    "`theflash capture` print it)") from exc
        with self._store.snapshot() as view:
            recorded_id, recorded_address = view.upstream_cluster_id(), view.upstream()
        if recorded_id is not None and recorded_id != cluster_id:
            raise WriterConfigError(f"--upstream {address} is cluster {cluster_id}, but store {self.options.store} "
                                    f"replicates cluster {recorded_id} (recorded with --upstream {recorded_address}); "
                                    "pass that cluster's address, or give this cluster a new store directory")
        return cluster_id

    def _start_service(self) -> None:
        """Serve read sessions of this store from this process (``--serve``): a read-only
        engine on the same directory, so the service never touches the writer's own state; its
        flush requests reach this loop through the latch, as any reader's do."""
        opts = self.options
        if opts.serve_port is None:
            return
        assert self.serve is not None  # (__init__ refuses serve_port without it)
        self.service = self.serve(opts)
        log.info("serving read sessions: Flight %s, HTTP %s", self.service.flight_location, self.service.http_url)
        # an engine whose files only this process reads (ClickHouse's directory) sends readers
        # elsewhere here
        if self.engine is not None:
            self.engine.advertise_service(self.service.http_url)

    def _shutdown(self, failed: BaseException | None = None) -> None:
        """Flush what was applied and let go of everything. After a failure nothing more is
        written (a restart replays the binlog from the last durable batch) and each release is
        best effort, so the error that ended the run is the one reported."""
        steps: list[tuple[str, Callable[[], object]]] = [("store rounds", self._join_rounds),
                                                         ("Delta publication round", self._join_publication)]
        # After a failed flush the store refuses writes: exit, a restart replays the binlog.
        if failed is None and self.store is not None and not self.store_lost and self.store.failure is None:
            steps.append(("final flush", self._final_flush))
        if self.metrics is not None:
            steps.append(("metrics server", self.metrics.close))
        if self.service is not None:
            if self.engine is not None:
                steps.append(("service advertisement", self.engine.withdraw_service))
            steps.append(("read session service", self.service.close))
        if self.engine is not None:
            steps.append(("store", self.engine.close))  # closes the store too
        elif self.store is not None and hasattr(self.store, "close"):
            steps.append(("store", self.store.close))
        if self.upstream is not None and hasattr(self.upstream, "close"):
            steps.append(("upstream connection", self.upstream.close))
        latch = self.latch
        if latch is not None:
            if self.holder is not None:
                token = self.holder.token
                steps.append(("pid file", lambda: remove_pid_file(self.options.store)))
                steps.append(("write latch", lambda: latch.release(token)))
            steps.append(("latch", latch.close))
        first: BaseException | None = None
        for what, step in steps:
            try:
                step()
            except Exception as exc:
                if failed is None and first is None:
                    first = exc
                else:
                    log.warning("while stopping: %s: %s", what, exc)
        if first is not None:
            raise first

    def _final_flush(self) -> None:
        self._flush(force=True)
        self.progress.state = "stopped"
        self._publish(force=True)

    def _carry_last_error(self) -> None:
        """Keep showing the last run-ending error of an earlier run of this store's writer, and
        reserve the room to record this run's."""
        self.progress.last_error = last_error.read(self.options.store)
        last_error.reserve(self.options.store)

    def _record_failure(self, exc: BaseException) -> None:
        """Record the error that ends this run where `writer status` finds it after the process
        is gone (the reserved record: written even on a full disk), and publish it. (The
        caller reports the error itself: the CLI on stderr and in the log file.)"""
        self.progress.state = "failed"
        error = self.progress.last_error = {"message": str(exc), "kind": type(exc).__name__, "at": time.time()}
        steps: tuple[tuple[str, Callable[[], object]], ...] = (
            ("record", lambda: last_error.record(self.options.store, error)),
            ("publish", lambda: self._publish(force=True)))
        for what, step in steps:
            try:
                step()
            except Exception as failed:
                log.warning("could not %s the failure: %s", what, failed)

    # -- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        from pyspark_theflash import binlog

        opts = self.options
        position = self._persisted_position()
        if position is None and (opts.bootstrap_snapshot or not self._binlog_reaches_start):
            position = self._bootstrap_from_snapshots()
        # Behind the log, the next batch is read and decoded while this one is applied.
        # The schema guard's scan of the rows' column ids needs only the events: done there too.
        source = ReadAhead(binlog.open_source(opts.binlog, position), prepare=_column_ids)
        # --until-caught-up: the log's head when the run starts (file and gRPC alike); a short
        # read alone says nothing (a gRPC stream answers what it has, a damaged record ends a
        # file read), and the head check raises on damage instead of calling it the end.
        stop_at = source.head() if opts.until_caught_up else None
        self.progress.state = "running"
        self._note_store_state()
        try:
            while not self.stop.is_set():
                self._renew_latch()
                interval = self._interval()
                read_batch = source.read_prepared(opts.batch_events, READ_TIMEOUT_S)
                batch = None if read_batch is None else read_batch[0]
                if read_batch is not None:
                    self._apply(*read_batch)
                read = len(batch) if batch else 0
                # Everything readable now is applied: a short batch, and (a push source) nothing
                # more already buffered. While behind the loop never sleeps.
                caught_up = read < opts.batch_events and not source.buffered()
                pending = self._latch.pending_flushes()
                # A new request, or new events that may reach an older request's read index.
                flush_wanted = bool(pending) and (bool(read) or pending[-1].request_id > self._last_request_seen)
                if flush_wanted or self._flush_due(caught_up):
                    # By size or deadline: pipelined, made durable while the next batch is
                    # applied. A reader's request: durable before it is answered.
                    self._flush(force=flush_wanted, wait=flush_wanted)
                else:
                    self._settle(block=False)
                waiting = self._answer_flush_requests(pending) if pending else 0
                if pending:
                    self._last_request_seen = max(self._last_request_seen, pending[-1].request_id)
                self._publish()
                if caught_up and stop_at is not None and _reached(source.position, stop_at):
                    log.info("caught up with the binlog at %s: stopping (--until-caught-up)", self.progress.read_position)
                    break
                # Compaction runs between polls; under a backlog that never lets up it still runs
                # once it is well overdue, so delta parts cannot pile up without bound.
                self._maybe_compact(COMPACT_OVERDUE_FACTOR if not caught_up else 1.0)
                self._maybe_merge_deltas()
                self._maybe_publish_delta()
                if caught_up:
                    self._settle()
                    if self._unflushed_events and self._unflushed_resolved:
                        continue  # it waited for the flush in flight: the moved resolved ts goes now
                    # A reader waits for indexes not applied yet: poll the binlog again soon.
                    nap = min(interval, WAITING_READER_POLL_S) if waiting else interval
                    # Applied rows wait for their flush deadline, not for the next poll after it.
                    due_in = self._store.flush_due_in() if self._unflushed_events else None
                    if due_in is not None:
                        nap = min(nap, max(due_in, IDLE_SLICE_S))
                    self._idle(nap, source)
        finally:
            source.close()

    def _persisted_position(self) -> Position | None:
        with self._store.snapshot() as view:
            position = view.position()
        return None if position is None else Position(int(position[0]), int(position[1]))

    def _interval(self) -> float:
        runtime = self._latch.writer_interval()
        interval = runtime if runtime is not None else self.options.interval_s
        if interval != self.progress.interval_s:
            log.info("poll interval now %.3fs", interval)
            self.progress.interval_s = interval
        return interval

    def _idle(self, interval: float, source: ReadAhead[dict[int, np.ndarray]] | None = None) -> None:
        """Sleep until the next poll, waking early for a flush request, a changed interval, a
        push source whose buffer filled up (the writer fell behind: the interval bounds the
        latency of an idle writer, it never throttles a busy one) or a stop signal (checked
        every IDLE_SLICE_S)."""
        deadline = time.monotonic() + interval
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.stop.wait(min(IDLE_SLICE_S, left))
            if self._latch.has_pending_flush(self._last_request_seen):
                return
            if source is not None and source.saturated():
                return
            runtime = self._latch.writer_interval()
            if runtime is not None and runtime != self.progress.interval_s:  # changed: apply it now
                return
            self._renew_latch()
            self._publish()

    def _renew_latch(self, force: bool = False) -> None:
        """Renew every TTL/3, and right before each flush (``force``): a writer that was stalled
        past its TTL and taken over learns it before it persists anything."""
        now = time.monotonic()
        if force or now - self._last_renew >= self.options.latch_ttl_s / 3:
            self.holder = self._latch.renew(self._holder.token, self.options.latch_ttl_s)
            self._last_renew = now

    # -- applying ----------------------------------------------------------------------------
    def _apply(self, batch: ReadBatch, seen_columns: dict[int, np.ndarray] | None = None) -> None:
        events = batch.events
        result = self._write(events, batch.next, seen_columns)
        if isinstance(result, WriteResult) and result.resolved:
            self._unflushed_resolved = True
        rows, copied, seen = _batch_progress(events)
        self._unflushed_rows += rows  # (live rows: what --flush-rows counts)
        self._unflushed_events += len(events)
        # the rows/s an operator watches counts an initial copy's rows too: a copy of millions
        # of rows showed "0 rows/s" until its first live row
        self.progress.note_batch(len(events), rows + copied, seen)
        self.progress.read_position = str(batch.next)

    def _write(self, events: Sequence[binlog_pb2.Event], position: Position,
               seen_columns: dict[int, np.ndarray] | None = None) -> WriteResult:
        """Apply one batch with the schemas it needs.

        DDL events first: each makes a table version, in force from its commit ts (a table the
        --tables filter excludes is ignored from its first DDL on). Then rows carrying column
        ids that no stored version of their table has make one re-fetch of the table's schema
        (a store that started mid-stream, or a log without DDL events); ids still unknown
        after it belong to columns dropped before anything the store holds and are skipped
        (no schema could read them). An unknown table is looked up once (replicated →
        put_schema, filtered out → ignore_table, gone upstream → ignore_table) and the batch
        retried."""
        from pyspark_theflash.store.errors import UnknownRegionError, UnknownTableError

        self._apply_began = True  # from here a failure is the store's to record, not a setup error
        self._apply_ddl(events)
        introduced: set[int] = set()
        if seen_columns is None:
            seen_columns = column_ids_by_table(events)
        resolved: set[int] = set()
        refetched: set[int] = set()
        while True:
            missing = unknown_column_ids(seen_columns, self._known_columns())
            for table_id, column_ids in missing.items():
                if table_id in refetched:
                    log.warning(
                        "rows of table %d in the batch ending at binlog position %s carry column ids %s that no schema "
                        "version of it has, even after re-fetching it: columns dropped before the store's first event "
                        "of the table; their values are skipped", table_id, position, column_ids)
                    self._skipped_columns.setdefault(table_id, set()).update(column_ids)
                    self._columns_cache = None  # known from now on: no re-fetch per batch
                    continue
                refetched.add(table_id)
                log.info("rows of table %d carry unknown column ids %s: re-fetching its schema", table_id, column_ids)
                self._learn_table(table_id)
            if missing.keys() - refetched:
                continue
            try:
                return self._engine.apply_batch(events, position)
            except UnknownRegionError as exc:
                if exc.region_id in introduced:
                    raise
                introduced.add(exc.region_id)
                self._introduce_region(exc)
            except UnknownTableError as exc:
                if exc.table_id in resolved:
                    raise SchemaUnavailableError(
                        f"table {exc.table_id} is still unknown to the store after its schema was stored; "
                        "the upstream's table info does not match the binlog's rows"
                    ) from exc
                resolved.add(exc.table_id)
                self._learn_table(exc.table_id)

    def _introduce_region(self, exc: UnknownRegionError) -> None:
        """A batch has events of a region no snapshot or split introduced to the store (a split
        that raced the bootstrap, a log that starts after the region's birth): apply the
        region's current snapshot from the upstream (the batch's events at or below its index
        are then skipped). A region merged away since is covered by the snapshots of the
        upstream's regions the store does not know yet. The store never guesses a range."""
        from pyspark_theflash.upstream_client.errors import UpstreamError

        if self.upstream is None:
            raise WriterConfigError(f"{exc}; without --upstream the writer cannot fetch a region snapshot") from exc
        log.info("region %d is new to the store: applying the snapshot of region %d", exc.region_id,
                 exc.snapshot_region)
        try:
            snapshots = [self.upstream.region_snapshot(int(exc.snapshot_region))]
        except UpstreamError:  # gone upstream (merged away): take every region the store lacks
            with self._store.snapshot() as view:
                known = {int(r.id) for r in view.regions(include_gone=True)}
            snapshots = []
            for region in self.upstream.regions():
                if int(region.id) not in known:
                    try:
                        snapshots.append(self.upstream.region_snapshot(int(region.id)))
                    except UpstreamError:
                        continue  # merged again meanwhile: the next unknown event asks again
        for snapshot in snapshots:
            self._apply_began = True
            self._engine.apply_batch([snapshot], None)

    def _apply_ddl(self, events: Sequence[binlog_pb2.Event]) -> None:
        """The batch's DDL events, in order: a table id met for the first time is replicated
        when --tables matches its name (else ignored from then on); the store records the
        version, in force from the DDL's commit ts, and the ids it creates or retires."""
        for event in parsed_events(events):
            if event.WhichOneof("payload") != "ddl":
                continue
            ddl = event.ddl
            name = table_name(json.loads(ddl.table_info or b"{}"))
            if self._store.replicates(ddl.table_id) is None and not self.options.tables.matches(ddl.db, name):
                log.info("ignoring %s.%s (table %d): not in --tables %s", ddl.db, name, ddl.table_id, self.options.tables)
                self._store.ignore_table(int(ddl.table_id), ddl.db, name)
            if self._store.apply_ddl(event):
                log.info("schema change %s of %s.%s (table %d) at ts %d: schema version %d",
                         binlog_pb2.Ddl.Type.Name(ddl.type), ddl.db, name, ddl.table_id, ddl.commit_ts,
                         ddl.schema_version)
                self._columns_cache = None

    def _known_columns(self) -> dict[int, set[int]]:
        """Column ids of every stored version of every replicated table, and those skipped as
        dropped (cached until the writer stores a schema)."""
        if self._columns_cache is None:
            self._columns_cache = self._store.known_column_ids()
            for table_id, ids in self._skipped_columns.items():
                self._columns_cache.setdefault(table_id, set()).update(ids)
        return self._columns_cache

    def _learn_table(self, table_id: int) -> None:
        if self.schemas is None:
            raise WriterConfigError(
                f"the binlog has rows of table {table_id} the store has no schema for, and the writer has no "
                "way to fetch it: pass --schema-url http://TIDB:STATUS_PORT (or the mini cluster's --upstream "
                "grpc://host:port)"
            )
        try:
            db, info = self.schemas.table_info_by_id(table_id)
        except TableGoneUpstreamError as exc:
            if self._store.replicates(table_id):
                return  # known here, gone upstream (dropped since): its stored versions decode its rows
            log.info("ignoring table %d: the upstream no longer has it (%s)", table_id, exc)
            self._store.ignore_table(table_id, "", f"table {table_id} (gone upstream)")
            return
        name = table_name(info)
        if self.options.tables.matches(db, name):
            log.info("replicating %s.%s (table %d, schema version %s)", db, name, table_id, info.get("schema_version"))
            self._store.put_schema(db, info)
            self._columns_cache = None
        else:
            log.info("ignoring %s.%s (table %d): not in --tables %s", db, name, table_id, self.options.tables)
            self._store.ignore_table(table_id, db, name)

    # -- flushing ----------------------------------------------------------------------------
    def _flush_due(self, caught_up: bool = False) -> bool:
        """By size (``flush_rows``), by age (``flush_interval_s``), and at the head of the log
        as soon as a resolved ts has moved and no flush is in flight: a resolved ts is what
        makes applied rows readable, so waiting out the deadline then only delays readers (it
        was most of the commit -> readable time at 10,000 regions). Behind the log the next
        batch follows at once, and the size and age bounds keep flushes few."""
        if self._unflushed_events == 0:
            return False
        if self._unflushed_rows >= self.options.flush_rows or self._store.flush_due():
            return True
        return caught_up and self._unflushed_resolved and (self._pending_flush is None or
                                                           self._pending_flush[0].done())

    def _flush(self, force: bool = False, wait: bool = True) -> None:
        """Flush what was applied. ``wait=False``: pipelined (``Store.flush(wait=False)``), the
        durable step runs while the loop goes on; ``_settle`` accounts for it once durable."""
        if self._unflushed_events == 0 and not force:
            return
        if self._unflushed_events:
            self._settle()  # the previous flush's edit comes first (the store orders them too)
            self._renew_latch(force=True)
            self._pending_flush = (self._store.flush(wait=False), time.monotonic())
            self._unflushed_rows = 0
            self._unflushed_events = 0
            self._unflushed_resolved = False
        self._last_flush = time.monotonic()
        if wait and self._pending_flush is not None:
            self._settle()  # (with none in flight, every flush so far was noted by _settle)

    def _settle(self, block: bool = True) -> None:
        """Once the pipelined flush in flight is durable (waiting for it when ``block``): count
        it and take the persisted region states and position from the manifest. Raises the
        flush's failure (the loop then stops; a restart replays from the persisted position)."""
        if self._pending_flush is None:
            return
        pending, started = self._pending_flush
        if not block and not pending.done():
            return
        self._pending_flush = None
        result = pending.wait()
        took = time.monotonic() - started
        self.progress.flushes += 1
        self.progress.last_flush_s = took
        self.progress.flush_seconds_total += took
        # the flush's own region rows, now durable: listing every region of the manifest after
        # each flush cost the writer a fifth of its time at 10,000 regions (flushes every 50 ms)
        self.progress.note_flushed_regions(result.region_rows, result.region_resolved)
        if result.position is not None:
            self.progress.position = f"{int(result.position[0])}:{int(result.position[1])}"

    def _note_store_state(self) -> None:
        """Every live region's persisted state and the position, read from the manifest: at the
        start and after the bootstrap's own flush; each flush since is noted by ``_settle``."""
        with self._store.snapshot() as view:
            self.progress.note_regions(view.regions())
            position = view.position()
        self.progress.position = "" if position is None else f"{int(position[0])}:{int(position[1])}"

    def _answer_flush_requests(self, pending: list[FlushRequest]) -> int:
        """Complete every pending request whose regions have reached their read index (all of
        them when no index was asked); the others stay pending until later flushes. Returns how
        many are still waiting."""
        self._settle()  # answers come from durable state only
        # Every region the store holds is at least at TiKV's RAFT_INIT_LOG_INDEX: upstream gives
        # a split-born region with no entries yet that read index (a table's fresh region of its
        # own), while the store notes no applied index before its first entry; without the
        # floor, a request naming such a region would never be answered.
        applied = {r.region_id: max(r.applied_index, RAFT_INIT_LOG_INDEX) for r in self.progress.regions.values()}
        waiting = 0
        for request in pending:
            if _satisfied(request, applied):
                answer = {r: applied.get(r, 0) for r in request.region_ids}
                self._latch.complete_flush(request.request_id, answer)
            else:
                waiting += 1
        return waiting

    # -- compaction and GC -------------------------------------------------------------------
    def _maybe_compact(self, factor: float = 1.0) -> None:
        """Compaction (with GC to the upstream's safe point) every ``compact_interval_s`` after
        the last one ended, on the rounds' thread (writer/store_rounds.py); a delta merge in
        flight goes first (the next check starts it)."""
        rounds = self._store_rounds()
        self._note_round(rounds.poll())
        if time.monotonic() - self._last_compact < self.options.compact_interval_s * factor or rounds.running:
            return
        safe_point = self._gc_safe_point()  # (on the loop: the upstream client and the leases are its)
        rounds.start("compaction", lambda: self._compact(safe_point))
        self._last_compact = time.monotonic()  # (again when it ends: the interval runs from there)
        self._note_round(rounds.poll())  # (a round run inline is done)

    def _compact(self, safe_point: int) -> CompactionResult:
        """One compaction round: GC to ``safe_point`` (never past a live lease) and compaction,
        or compaction alone; then the files no live lease can still see are deleted. Its result's
        ``safe_point`` is the store's GC safe point after it (0: no GC)."""
        if safe_point:
            # moves the safe point (never past a live lease) and compacts; the ClickHouse
            # engine then collects its own versions below it
            result = (self.engine if self.engine is not None else self._store).gc(safe_point)
            with self._store.snapshot() as view:
                result.safe_point = int(view.gc_safe_point())
        else:
            result = self._store.compact()
            result.safe_point = 0
        self._store.delete_obsolete_files()
        return result

    def _maybe_merge_deltas(self) -> None:
        """A delta merge round every DELTA_MERGE_INTERVAL_S after the last one ended, on the
        rounds' thread (writer/store_rounds.py: a round no longer holds the commits behind it)."""
        rounds = self._store_rounds()
        self._note_round(rounds.poll())
        if rounds.running or time.monotonic() - self._last_delta_merge < DELTA_MERGE_INTERVAL_S:
            return
        rounds.start("delta-merge", self._store.merge_deltas)
        self._last_delta_merge = time.monotonic()
        self._note_round(rounds.poll())

    def _store_rounds(self) -> StoreRounds[CompactionResult]:
        if self._rounds is None:
            keeps_rows = bool(getattr(self._store.row_sink, "keeps_rows", False))
            self._rounds = StoreRounds(background=not keeps_rows)
        return self._rounds

    def _note_round(self, done: Finished[CompactionResult] | None) -> None:
        if done is None:
            return
        if done.kind == "delta-merge":
            self.progress.delta_merges += done.result.partitions
            self.progress.delta_merge_seconds_total += done.seconds
            self._last_delta_merge = time.monotonic()
        else:
            self.progress.compactions += 1
            self.progress.last_compact_s = done.seconds
            self.progress.compact_seconds_total += done.seconds
            if done.result.safe_point:
                self.progress.gc_safe_point = done.result.safe_point
            self._last_compact = time.monotonic()

    def _join_rounds(self) -> None:
        """Wait for a store round in flight (before the last flush and the store's close)."""
        if self._rounds is not None:
            self._rounds.join()

    def _maybe_publish_delta(self) -> None:
        """A Delta publication round (lake.Publisher) every ``delta_publish_interval_s`` (or as
        soon as the last one ended, when it took longer), on a thread of its own
        (writer/store_rounds.py): it reads the durable manifest and the part files only, under
        its own lease, so it needs nothing of this loop, which goes on applying meanwhile (run
        here, each round of 1-2 s held every commit behind it). A round that cannot publish yet
        (a table not resolved) waits for the next; any other failure of publication is logged
        when the loop picks the round up, and never stops applying."""
        interval = self.options.delta_publish_interval_s
        if interval <= 0 or self.store is None:
            return
        rounds = self._delta_rounds
        self._note_publication(rounds)
        if rounds.running or time.monotonic() - self._last_delta_publish < interval:
            return
        from pyspark_theflash.lake.publish import Publisher

        if self._publisher is None:
            # the writer's own store: one open of it in the process (its snapshot waits for the
            # flush in flight, so a round reads what the writer has made durable)
            self._publisher = Publisher(self.store, self.options.delta_retention_s, to=self.options.delta_to)
        rounds.start("delta-publish", self._publisher.publish)
        self._last_delta_publish = time.monotonic()  # (the interval runs from a round's start, as its lag does)

    def _note_publication(self, rounds: StoreRounds[Round]) -> None:
        """What the last publication round did, once it ended (its failure logged here)."""
        from pyspark_theflash.lake.errors import LakeError, PublishTsError

        try:
            done = rounds.poll()
        except PublishTsError as exc:
            log.info("delta publication waits: %s", exc)
            return
        except (LakeError, TheFlashError) as exc:  # e.g. the GC safe point passed the round's ts meanwhile
            log.warning("delta publication failed (applying goes on; the next round retries): %s", exc)
            return
        except OSError as exc:  # --delta-to unreachable or refusing (credentials, bucket, network)
            log.warning("delta publication to %s failed (applying goes on; the next round retries): %s",
                        self.options.delta_to or self.options.store, exc)
            return
        if done is None:
            return
        self.progress.delta_rounds += 1
        self.progress.delta_published_ts = done.result.ts

    def _join_publication(self) -> None:
        """Wait for a publication round in flight (before the store's close), and note it."""
        self._delta_rounds.join()
        self._note_publication(self._delta_rounds)

    def _gc_safe_point(self) -> int:
        """The upstream's GC safe point, never past the oldest live read lease (the store
        enforces the lease bound too; clamping here keeps the intent visible)."""
        if self.upstream is None:
            return 0
        try:
            safe_point = int(self.upstream.gc_safe_point())
        except TheFlashError as exc:  # an upstream hiccup only postpones GC; applying goes on
            log.warning("GC postponed: %s", exc)
            return 0
        oldest = [lease.ts for lease in self._store.leases.live()]
        return min([safe_point, *oldest]) if safe_point else 0

    # -- snapshot bootstrap ------------------------------------------------------------------
    def _bootstrap_from_snapshots(self) -> Position:
        """Seed an empty store from region snapshots: take the binlog head first, then every
        region's snapshot, then resume from that head — events between the head and a
        snapshot's index are at or below the region's applied index and are skipped."""
        if self.upstream is None:
            raise WriterConfigError(
                f"the store at {self.options.store} is empty and the binlog {self.options.binlog} no longer reaches "
                "back to its start (or --bootstrap-snapshot was given): seeding from region snapshots needs "
                "--upstream grpc://host:port"
            )
        from pyspark_theflash.upstream_client.errors import UpstreamError

        head = binlog_bounds(self.options.binlog).head
        self.progress.state = "bootstrapping"
        taken: set[int] = set()
        # A region may split (or merge) between listing and its snapshot: the parent's snapshot
        # then already holds the split, whose admin event the binlog replay skips, so the new
        # region would be introduced by nothing. List again until every listed region is taken.
        while True:
            regions = [r for r in self.upstream.regions() if int(r.id) not in taken]
            if not regions:
                break
            log.info("bootstrapping %d regions from snapshots; the binlog resumes at %s", len(regions), head)
            for region in regions:
                taken.add(int(region.id))
                try:
                    event = self.upstream.region_snapshot(int(region.id))
                except UpstreamError:
                    continue  # merged away since listing: its keys are in a region listed next
                self._write([event], head)
        self._store.flush()
        self._note_store_state()
        return head

    # -- reporting ---------------------------------------------------------------------------
    def _publish(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_publish < self._publish_every:
            return
        self._last_publish = now
        self._refresh_upstream_lag()
        status = self._status_now()
        if self.holder is not None:
            self._latch.publish_writer_status(self.holder.token, status)
        if self.on_progress is not None:
            self.on_progress(status)
        # The status lists every region (`writer status`, the metrics): 44 ms a publish at 10,000
        # regions, on the loop that applies. It is published at most every STATUS_SHARE-th of the
        # time it takes, so it costs the loop a bounded share however many regions there are.
        self._publish_every = max(self.options.progress_interval_s, (time.monotonic() - now) / STATUS_SHARE)

    def _status_now(self) -> WriterStatus:
        status = self.progress.to_status()
        if self.metrics is not None:
            status["metrics_port"] = self.metrics.port
        if self.service is not None:
            status["serve"] = {"flight": self.service.flight_location, "http": self.service.http_url}
        with self._status_lock:
            self._status = status
        return status

    def _announce_up(self) -> None:
        """Publish the status where `writer start` waits for it (writer/daemon.py): the upstream
        answered and the read service listens. Not a progress line: the loop's first is next."""
        status = self._status_now()
        if self.holder is not None:
            self._latch.publish_writer_status(self.holder.token, status)

    def _refresh_upstream_lag(self) -> None:
        """With the mini cluster's own log, a region's lag in events is measured against its
        read index (the log's indexes are its raft indexes). Not through a change-data feed
        (``pd://``): capture numbers the binlog's events itself, so TiKV's raft index says
        nothing of them, and asking each region's leader for it took this loop up to a second
        each time under splits, while the binlog waited."""
        if self.upstream is None or getattr(self.upstream, "resolved_ts_reads", False):
            return
        for region_id in list(self.progress.regions)[:64]:
            try:
                index = int(self.upstream.read_index(region_id))
            except Exception:  # a merged/removed region has no read index: keep what we saw
                continue
            region = self.progress.region(region_id)
            region.seen_index = max(region.seen_index, index)


def _satisfied(request: FlushRequest, applied: dict[int, int]) -> bool:
    return all(applied.get(region, 0) >= index for region, index in request.read_index.items())


def _reached(position: Position | None, head: Position) -> bool:
    """Whether a source's ``position`` is at or past ``head`` (None: nothing read yet)."""
    return position is not None and position >= head
