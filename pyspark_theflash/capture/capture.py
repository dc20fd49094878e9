"""``theflash capture``: replicate a TiDB cluster's changes into the binlog.

Threads, each handing the main loop typed tasks (capture/tasks.py):
- one ``StoreStream`` per TiKV store (capture/store_stream.py): a ``cdcpb.ChangeData``
  stream carrying the registrations of the regions that store leads, its messages decoded
  into columns;
- the DDL poller (capture/ddl_poller.py): a PD timestamp T, then TiDB's ``/ddl/history``;
  every DDL that finished at or below T is then known (a read at a snapshot after T sees every
  commit at or below T), so T becomes the *DDL frontier*;
- the main loop (``run``), which alone owns the registrations (capture/region_table.py: the
  region table, one row a registration, and its ``RegionFeed``), the tables followed
  (capture/captured_tables.py), the claims, coverages and resume points, and the binlog writer.

The binlog gets, in order: the DDL jobs of the captured tables; per region a ``RegionSnapshot``
when its registration is initialised (every version TiKV still holds, and the open locks),
then its rows in feed order; batched resolved ts. Events wait in a FIFO until every commit ts
they hold is at or below the DDL frontier, so a row is never written before the schema change
it was written under; a resolved ts written never passes the frontier.

A region error (``not_leader``, ``epoch_not_match``, ``region_not_found``, a broken stream,
``server_is_busy``/``congested`` after a back-off) drops the registration; the range is
looked up in PD again and each region there is registered anew: from the ts up to which
capture knows the replica holds the range (capture/coverage.py; an incremental snapshot adds
the versions it lacks), or from checkpoint 0 where it does not know (a snapshot that
replaces the range).

``capture-state.json`` beside the segments keeps each region's last binlog index and resolved
ts, the last DDL written, the captured table ids and what the binlog is proved to hold per key
range (capture/resume.py), with the log position they hold at; a restart reads the log's events
after that position too (without the file, the whole log), then registers every region from
what its range is proved to hold (from 0 where nothing is, or GC has passed it).
"""
from __future__ import annotations

import hashlib
import heapq
import json
import logging
import os
import queue
import random
import threading
import time
import contextlib
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from pyspark_theflash.binlog import Position, SegmentReader, SegmentWriter
from pyspark_theflash.binlog import region_runs
from pyspark_theflash.binlog.packed import resolved_event, resolved_regions
from pyspark_theflash.binlog.segment import HEADER_BYTES
from pyspark_theflash.heap import long_lived_heap
from pyspark_theflash.binlog.snapshot_batch import SnapshotColumns, snapshot_columns
from pyspark_theflash.capture.captured_tables import CapturedTables
from pyspark_theflash.capture.ddl_poller import DdlPoller
from pyspark_theflash.capture.ended_registrations import EndedRegistrations
from pyspark_theflash.capture.live_events import LiveEvents
from pyspark_theflash.capture.store_stream import StoreStream
from pyspark_theflash.capture.registration_pacer import DEFAULT_SCAN_LIMIT, RegistrationPacer
from pyspark_theflash.capture.coverage import Coverage, EndedCoverages, inherit, known_at_snapshot
from pyspark_theflash.capture.held_ranges import describe as describe_range, gaps as range_gaps
from pyspark_theflash.codec.key_ranges import KeyRange, RangeMembers, RegionRanges
from pyspark_theflash.capture.errors import CaptureError, GCPassedError
from pyspark_theflash.capture.lock_resolution import StuckRegionResolver
from pyspark_theflash.capture.range_claims import Claim, RangeClaims
from pyspark_theflash.capture.resume import ResumePoints
from pyspark_theflash.upstream_client.errors import UpstreamError
from pyspark_theflash.upstream_client.pd_client import PDClient, RegionInfo
from pyspark_theflash.capture.progress import ProgressLine
from pyspark_theflash.capture.region_feed import FeedProtocolError, RegionFeed, snapshot_event
from pyspark_theflash.capture.region_table import RegionTable, WrittenResolved
from pyspark_theflash.capture.state_json import BackgroundWriter, Items, write_json
from pyspark_theflash.capture.status import prometheus_text, write_status
from pyspark_theflash.capture.tasks import (DdlPoll, Held, HeldAdmin, HeldResolved, HeldRows, HeldRuns, HeldSnapshot,
                                            StreamDown, StreamMessage, Task)
from pyspark_theflash.capture import feed_columns
from pyspark_theflash.capture.tidb_status import TiDBStatus
from pyspark_theflash.codec.keys import encode_region_key
from pyspark_theflash.codec.tso import physical_ms
from pyspark_theflash.proto import binlog_pb2, cdcpb_pb2, metapb_pb2
from pyspark_theflash.schema.ddl_jobs import ddl_of_job, finished_ts
from pyspark_theflash.status_http import StatusServer

log = logging.getLogger(__name__)

STATE_FILE = "capture-state.json"
STATE_SAVE_EVERY_S = 1.0  # the state file is rewritten at most this often (and on stop)
STATE_SAVE_SHARE = 0.05  # and saving it takes at most this share of the main loop's time
# Messages received and not yet handled, at most: a store's stream waits when capture is
# behind, so gRPC's flow control holds TiKV back (TiKV buffers, then reports Congested)
# instead of capture's memory growing without bound.
INBOUND_MESSAGES = 64
# The main loop writes what it has matched at least this often while messages keep coming: a
# saturated feed must not hold every event in memory until the inbound queue first runs dry.
RELEASE_EVERY_S = 0.05
RELEASE_BYTES = 32 << 20  # held events are written in appends of about this many bytes (_release)
# and of at most this many events: 100,000 regions' first snapshots are small events, each a
# protobuf message of its own until written (about 1 KiB each in memory, a few dozen bytes written)
RELEASE_EVENTS = 4096
# the followed-keys invariant is a walk over every registration: after registrations change it is
# checked at most this often (a store restart changes them on every loop for a while)
FOLLOWED_CHECK_EVERY_S = 1.0
STATUS_EVERY_S = 1.0  # the status snapshot (metrics endpoint, capture.status.json) at most this often
FRONTIER_STUCK_S = 30.0  # events held this long for a DDL frontier that does not move: a warning, unhealthy
PROGRESS_EVERY_S = 5.0  # a progress line (capture/progress.py) at most this often
TICDC_VERSION = "8.5.0"  # what capture says it is in the feed's header (TiKV gates features by it)
_RECORD_SPAN = (bytes(encode_region_key(b"t")), bytes(encode_region_key(b"u")))  # every table's keys


@dataclass
class CaptureOptions:
    pd: str
    tidb: str
    binlog: str
    tables: list[str] | None = None  # "db.table" names; None = every user table
    until_ts: int | None = None
    serve_binlog: int | None = None
    # /ddl/history is read every ddl_poll_s while nothing waits for the DDL frontier, and as
    # soon as rows wait for it, but never within ddl_poll_min_s of the read before
    ddl_poll_s: float = 0.2
    ddl_poll_min_s: float = 0.05
    gc_ttl_s: int = 3600
    gc_update_s: float = 10.0
    segment_bytes: int = 64 << 20
    retry_backoff_s: float = 0.5
    # a range is looked up again after retry_backoff_s times 1 + up to this fraction, drawn at
    # random: regions a store restart ended together do not come back to PD and TiKV together
    retry_jitter: float = 0.5
    jitter_seed: int | None = None  # the draws' seed (tests replay an interleaving); None: any
    # TiCDC's resolution of stuck regions (capture/lock_resolution.py): a region whose resolved
    # ts lags PD's clock this long has its locks looked at, at most once per interval; 0 = off
    resolve_locks_after_s: float = 4.0
    resolve_locks_interval_s: float = 10.0
    # register a region again from what the replica holds of its range (capture/coverage.py);
    # False: every registration from checkpoint 0, its snapshot replacing the range (the
    # baseline bench/capture_rescan.py measures against)
    incremental: bool = True
    # how long the start looks for a PD member before it gives up (None: PDClient's 30 s); the
    # command line gives a few seconds, so a wrong --pd is reported at once
    pd_first_connect_timeout_s: float | None = None
    # serve /metrics, /status and /healthz on 127.0.0.1:PORT (0: any free port; None: off)
    metrics_port: int | None = None
    # registrations in flight (sent, not yet initialised) per TiKV store; the others wait
    # (capture/registration_pacer.py: TiKV queues at most 10,000 initial scans)
    scan_limit: int = DEFAULT_SCAN_LIMIT


COMMITTED_TYPE = bytes([binlog_pb2.Row.COMMITTED])  # a RowBatch's type byte of a version


EVENT_ROWS_AT_ONCE = 4096  # a message's events made Python lists this many at a time (_event_rows)


def _event_rows(events: np.ndarray) -> Iterator[tuple[int, list[int]]]:
    """(position, its row as ints) of each event of a message (FeedMessage.events), made a
    chunk at a time: a message with every region's INITIALIZED lists 100,000 events."""
    for base in range(0, len(events), EVENT_ROWS_AT_ONCE):
        yield from enumerate(events[base:base + EVENT_ROWS_AT_ONCE].tolist(), base)


def _feed_start(feed: RegionFeed) -> bytes:
    return feed.start


def _span_start(span: tuple[bytes, bytes]) -> bytes:
    return span[0]


def _span_slot(span: tuple[int, int, int]) -> int:
    return span[2]


def _tiles(regions: list[RegionInfo], start: bytes, end: bytes) -> bool:
    """Whether ``regions`` (in key order) cover [start, end) exactly, without gap or overlap
    (PD-encoded keys; b"" is -inf as a start and +inf as an end)."""
    if not regions or regions[0].start != start or regions[-1].end != end:
        return False
    return all(a.end == b.start for a, b in zip(regions, regions[1:]))


def _covers_range(region: RegionInfo, start: bytes, end: bytes) -> bool:
    return region.start <= start and (not region.end or (bool(end) and end <= region.end))


class Capture:
    def __init__(self, opts: CaptureOptions, progress: Callable[[str], None] | None = None) -> None:
        self.opts = opts
        self.progress = progress or (lambda msg: log.info("%s", msg))
        self.pd = PDClient(opts.pd, first_connect_timeout_s=opts.pd_first_connect_timeout_s)
        self.status = TiDBStatus(opts.tidb)
        self.dir = Path(opts.binlog)
        self.state_saver = BackgroundWriter(self.dir / STATE_FILE, "capture-state-save")  # the loop's saves
        self.writer = SegmentWriter(self.dir, opts.segment_bytes)
        self.service_id = "theflash-capture-" + hashlib.sha1(str(self.dir.resolve()).encode()).hexdigest()[:12]
        self.inbound: queue.Queue[Task] = queue.Queue(maxsize=INBOUND_MESSAGES)
        self.resolved = WrittenResolved()  # each region's greatest resolved ts written
        self.table = RegionTable()  # the registrations as arrays (a resolved ts is checked against them)
        # region id -> its current registration: the region table's own map (its ``add``/``remove``)
        self.feeds: Mapping[int, RegionFeed] = self.table.by_id
        self.streams: dict[int, StoreStream] = {}
        self.pacer = RegistrationPacer(opts.scan_limit)  # registrations wait for room on their store
        self.store_addresses: dict[int, str] = {}
        # (due, start, end, the dropped registration or None): ranges to look up in PD again
        self.pending_reload: list[tuple[float, bytes, bytes, RegionFeed | None]] = []
        # Registrations began or ended since the invariant was last checked (_check_followed):
        # every key of the captured span is a current registration's or a pending reload's.
        self._registrations_changed = False
        # Ranges the check found followed by nothing (each a bug of capture's, reported and
        # looked up again); tests assert there are none.
        self.unfollowed: list[tuple[bytes, bytes]] = []
        self._followed_checked_at = float("-inf")  # when _check_followed last walked the registrations
        self._jitter = random.Random(opts.jitter_seed)
        self.fifo: deque[tuple[int, Held]] = deque()  # (newest commit, what is held), in feed order
        self.held_count = self.released_count = 0  # items ever put in the FIFO and taken out of it
        # ended registrations whose rows may still wait in the FIFO: a retirement of their
        # region discards them as it does a current one (capture/ended_registrations.py)
        self.ended_waiting = EndedRegistrations()
        self.frontier = 0
        self.frontier_moved_at = time.monotonic()
        self.last_ddl_ts = 0
        self.tables = CapturedTables(opts.tables)  # --tables, followed through DDL
        # The regions the binlog has introduced to a replica (by a snapshot or a split) and not
        # merged away or retired, with their range there: only these can be named in a split or
        # merge the writer applies.
        self.introduced: RegionRanges[Claim | KeyRange] = RegionRanges()  # (a region's claim holds its range)
        self.claims = RangeClaims()  # which region's registration speaks for a key range
        # the current registrations whose snapshot is written (each has a coverage), by range:
        # a current registration is in it exactly when its ``written`` is true (its snapshot is
        # written while it is current, and it is taken out as it ends), and it keeps its range,
        # so the index does not keep a copy of each (RangeMembers.insert/remove)
        self._written: RangeMembers[int] = RangeMembers()
        # the coverages of ended registrations whose snapshot was written (capture/coverage.py):
        # a range registered again starts from what they say the replica holds
        self.ended_coverage = EndedCoverages()
        self.rows_skipped = 0  # versions a registration's scan gave that the replica held already
        self.rows_scanned = 0  # rows of registrations' initial scans received (the progress line)
        # what the binlog is proved to hold per key range (capture/resume.py): a restart
        # registers each region from there
        self.resume = ResumePoints(self.tables.selection())
        self._gen = 0
        self._stop = threading.Event()
        # the DDL frontier's thread (capture/ddl_poller.py): a PD ts and TiDB's DDL jobs by it
        self.ddl = DdlPoller(self.pd, self.status, self.inbound, opts.ddl_poll_s, opts.ddl_poll_min_s)
        self.events_written = 0
        self.rows_written = 0
        self.errors: Counter[str] = Counter()  # region and stream errors by kind (the metrics)
        # the latest status snapshot (capture/status.py), made by the main loop; read by the
        # metrics endpoint's thread and written beside the binlog for `capture status`
        self.last_status: dict[str, Any] = {"state": "starting", "binlog": str(self.dir), "pid": os.getpid(),
                                            "healthy": False, "unhealthy_reason": "capture is starting"}
        self._status_at = (time.monotonic(), 0)  # (when, rows written) of the last snapshot
        self.metrics: StatusServer | None = None
        self.gc_held = 0  # the service safe point capture holds at PD
        self.lock_resolver: StuckRegionResolver | None = None
        self.fresh = self._load_state()
        # live rows made binlog events as they are released (capture/live_events.py); made
        # after the state is loaded, which replaces the claims
        self.live_events = LiveEvents(self.table, self.tables, self.claims)

    # ------------------------------------------------------------------ state

    def _load_state(self) -> bool:
        """Restore what capture knows of the binlog; whether the binlog is fresh (its tables'
        creations may still be missing: no region's event is written yet).

        The state file holds it as of a log position, and the events after that position are
        read again. A binlog with events but no state file (a capture killed before its first
        save, or a state file lost) is read from its first event: numbering its regions' events
        from 1 again would put them below what a writer has applied, which skips them."""
        path = self.dir / STATE_FILE
        start: Position | None = None
        if path.exists():
            state = json.loads(path.read_text())
            if state.get("cluster_id") and int(state["cluster_id"]) != self.pd.cluster_id:
                raise CaptureError(f"binlog {self.dir} holds cluster {state['cluster_id']}'s changes, but PD "
                                   f"{self.pd.leader} serves cluster {self.pd.cluster_id}: give an empty --binlog directory")
            for rid, index in state["indexes"].items():
                self.table.raise_index(int(rid), int(index))
            self.resolved = WrittenResolved({int(k): int(v) for k, v in state["resolved"].items()})
            self.last_ddl_ts = int(state["last_ddl_ts"])
            self.tables.load(state["table_ids"], state.get("partitions"))
            self.claims = RangeClaims(state.get("claims"))
            # (a state file of an older release lists ids only: their ranges are learned again)
            for r in (x if isinstance(x, list) else [x] for x in state.get("introduced", ())):
                rid, rng = int(r[0]), KeyRange(bytes.fromhex(r[1]), bytes.fromhex(r[2])) if len(r) == 3 else None
                # the region's claim where it holds the same range (one object a region, as before the restart)
                claim = self.claims.of(rid, rng) if rng is not None else None
                self.introduced.set(rid, claim or rng)
            self.resume = ResumePoints.from_state(state.get("resume"))
            start = Position(*state["position"])
        elif self.writer.head == self.writer.tail == Position(1, HEADER_BYTES):
            return True  # nothing written yet
        elif self.writer.tail.segment != 1:
            raise CaptureError(f"binlog {self.dir} has no {STATE_FILE} and its segments before "
                               f"{self.writer.tail.segment} are pruned, so capture cannot learn which events it "
                               f"wrote: restore {STATE_FILE}, or give an empty --binlog directory (and an empty store)")
        else:
            log.warning("binlog %s has events but no %s: reading it from its first event to learn what "
                        "capture wrote", self.dir, STATE_FILE)
            self.resume = ResumePoints.from_state(None)  # which tables it was written for is not known
        with SegmentReader(self.dir, start) as reader:
            for positioned in reader:  # written after the state was saved (or ever, without one)
                self._absorb(positioned.event)
                self.resume.absorb(positioned.event)
        if not self.resume.speaks_for(self.tables.selection()):
            self.resume = ResumePoints(self.tables.selection())
        return start is None and not self.table.any_index()

    def _absorb(self, ev: binlog_pb2.Event) -> None:
        kind = ev.WhichOneof("payload")
        if kind == "ddl":
            self.last_ddl_ts = max(self.last_ddl_ts, int(ev.ddl.commit_ts))
            self.tables.follow(ev.ddl)
        elif kind == "resolved":
            self.resolved.add(resolved_regions(ev.resolved), int(ev.resolved.ts))
        elif kind == "entries" and ev.entries.HasField("runs"):  # many regions' rows
            runs = region_runs.runs_arrays(ev.entries.runs, int(ev.entries.batch.count))
            for rid, index in zip(runs.region_ids.tolist(), runs.indexes.tolist()):
                self.table.raise_index(rid, index)
        elif ev.region_id:
            self.table.raise_index(int(ev.region_id), int(ev.index))
            claimed: list[binlog_pb2.Region] = []
            keep: set[int] = set()
            if kind == "snapshot":
                claimed, keep = [ev.snapshot.region], {int(ev.region_id)}
            elif kind == "admin" and ev.admin.HasField("split"):
                claimed = list(ev.admin.split.regions)
                keep = {int(r.id) for r in claimed}
            elif kind == "admin" and ev.admin.HasField("merge"):
                self.introduced.pop(int(ev.admin.merge.source.id))
                claimed = [ev.admin.merge.target]
                keep = {int(ev.admin.merge.source.id), int(ev.admin.merge.target.id)}
            ranges = [self._same_range(int(r.id), bytes(r.start_key), bytes(r.end_key)) for r in claimed]
            made = []
            for r, (rid, start, end) in zip(claimed, ranges):
                made.append(self.claims.claim(rid, start, end, int(r.epoch.version)))
                self._retire_overlapping(keep, start, end)
            for claim in made:
                self.introduced.set(claim.region_id, claim)

    def _same_range(self, region_id: int, start: bytes, end: bytes) -> tuple[int, bytes, bytes]:
        """The region's id and keys as its registration holds them, where they are the same: one
        object each that every index of it keeps (claims, ranges in the replica, resume floors),
        not a copy each, read from an event (two keys are ~120 bytes a region)."""
        feed = self.feeds.get(region_id)
        if feed is None:
            return region_id, start, end
        return feed.id, feed.start if feed.start == start else start, feed.end if feed.end == end else end

    def _retire_overlapping(self, keep: set[int], start: bytes, end: bytes) -> None:
        """The writer's rule (store/apply.py ``_retire_overlapping``): a snapshot, split or merge
        over [start, end) retires every other region the replica lists over any part of it,
        caches and all. A registration of such a region whose snapshot was written would go on
        writing rows of its keys outside [start, end) (they are no newer region's claim) to a
        region the replica has retired: a COMMIT whose PREWRITE the retirement dropped. So it
        ends here too, and its range is looked up again; its next snapshot brings it back."""
        for rid in self.introduced.overlapping(start, end):
            if rid in keep:
                continue
            self.introduced.pop(rid)
            self.ended_waiting.discard(rid)  # (an ended registration's rows still held: not written)
            feed = self.feeds.get(rid)
            if feed is not None and feed.written and not feed.discarded:
                feed.discarded = True
                self._drop(feed, "a snapshot, split or merge over part of its range retired it in the replica",
                           self.opts.retry_backoff_s)

    def _save_state(self) -> None:
        """The state file written now, on this thread (at stop; the loop saves in the background:
        ``_state_now`` and ``state_saver``)."""
        self.state_saver.wait()
        write_json(self.dir / STATE_FILE, self._state_now())

    def _state_now(self) -> dict[str, object]:
        """The state as of now, for the state file: every list in it copied now (arrays, and
        references to values that are replaced, never changed in place) and made JSON as it is
        written (state_json), on another thread while this one goes on."""
        return {"cluster_id": self.pd.cluster_id, "position": list(self.writer.head),
                "indexes": Items(self.table.indexes(), pairs=True),
                "resolved": Items(self.resolved.items(), pairs=True), "last_ddl_ts": self.last_ddl_ts,
                **self.tables.state(),
                "introduced": Items([rid, rng.start.hex(), rng.end.hex()] if rng is not None else [rid]
                                    for rid, rng in self.introduced.sorted_items()),
                "claims": Items(self.claims.state_items()),
                "resume": self.resume.state(lazy=True)}

    # ------------------------------------------------------------------ DDL

    def _apply_ddl(self, frontier: int, jobs: list[dict[str, object]] | None) -> None:
        # Every poll lists the whole history, nearly all of it applied already: a job is
        # converted (its table info copied and encoded) only when its ts is new and within
        # the frontier, or has no readable ts (ddl_of_job then says what is wrong with it).
        fresh = [j for j in jobs or () if (ts := finished_ts(j)) is None or self.last_ddl_ts < ts <= frontier]
        ddls = sorted((d for d in (ddl_of_job(j) for j in fresh) if d is not None and d.commit_ts > self.last_ddl_ts
                       and d.commit_ts <= frontier), key=lambda d: (d.commit_ts, d.schema_version))
        events = []
        for ddl in ddls:
            self.last_ddl_ts = int(ddl.commit_ts)
            if self.tables.follow(ddl):
                events.append(binlog_pb2.Event(ddl=ddl))
        if events:
            self._append(events)  # before every held row: they wait for this frontier
            self.progress(f"{len(events)} DDL job(s) up to ts {self.last_ddl_ts}")
        if frontier > self.frontier:
            self.frontier = frontier
            self.frontier_moved_at = time.monotonic()
        if self.lock_resolver is not None:  # the frontier is a fresh PD ts: the regions lagging it
            # by the resolver's threshold are handed over, the others leave its queue
            self.lock_resolver.lagging(frontier, self.table.lagging(frontier, self.lock_resolver.lag_ms))

    # ------------------------------------------------------------------ regions

    def _stream(self, store_id: int) -> StoreStream:
        stream = self.streams.get(store_id)
        if stream is None:
            address = self.store_addresses.get(store_id) or self.pd.store_address(store_id)
            self.store_addresses[store_id] = address
            self._gen += 1
            stream = StoreStream(store_id, address, self._gen, self.inbound)
            self.streams[store_id] = stream
        return stream

    def _register(self, info: RegionInfo) -> None:
        old = self.feeds.get(info.id)
        if old is not None and old.version == info.version and old.store_id == info.leader_store:
            return  # registered already
        if old is not None:
            self._end_coverage(old)
            # PD's answer for another range (a stale reload's) can be this region at a newer
            # epoch, narrower than the registration it replaces: it split since. The keys the old
            # registration followed and this one does not are a sibling's now, which nothing else
            # will register (the old registration's own epoch error, the only thing that would
            # have looked its range up, is an ended registration's from here on): look them up.
            for lo, hi in range_gaps([(info.start, info.end)], old.start, old.end):
                self._reload_later(lo, hi, None, self.opts.retry_backoff_s)
        if old is not None and old.store_id in self.streams and self.table.sent[old.slot]:
            # moved or changed: end the old registration (one still waiting was never sent)
            self.streams[old.store_id].send(cdcpb_pb2.ChangeDataRequest(
                header=cdcpb_pb2.Header(cluster_id=self.pd.cluster_id, ticdc_version=TICDC_VERSION),
                region_id=old.id, request_id=old.gen, deregister=cdcpb_pb2.ChangeDataRequest.Deregister()))
        self._registrations_changed = True
        self._gen += 1
        # A region's resolved ts speaks of its range: one whose range changed (or that this
        # process has not registered yet) starts from 0, as the store resets it (store/apply.py).
        same_range = self.table.last_range(info.id) == (info.start, info.end)
        # Where capture knows what the replica holds of the range, the feed starts there
        # (TiKV's incremental scan) instead of rescanning every version TiKV holds.
        pieces = self._coverage_over(info.start, info.end)
        known = inherit(pieces, info.start, info.end) if self.opts.incremental else None
        since = known.least_floor() if known is not None else 0
        feed = RegionFeed(info.id, info.start, info.end, info.version, info.conf_ver, info.leader_store, self._gen,
                          resolved_ts=max(since, self.resolved.get(info.id) if same_range else 0),
                          since_ts=since, inherited=pieces if since else [])
        if old is not None and old.written:  # (the registration this one replaces was written)
            self._written.remove(old.id, old.start, old.end)
        if old is not None:
            self.table.remove(old)
            self._ended(old)
        self.table.add(feed)
        self.pacer.add(feed)  # sent when its store has room (capture/registration_pacer.py)

    def _send_registrations(self) -> None:
        """Send the waiting registrations their stores have room for."""
        for feed in self.pacer.due(self.table, self._is_current):
            self._stream(feed.store_id).send(cdcpb_pb2.ChangeDataRequest(
                header=cdcpb_pb2.Header(cluster_id=self.pd.cluster_id, ticdc_version=TICDC_VERSION),
                region_id=feed.id, region_epoch=metapb_pb2.RegionEpoch(conf_ver=feed.conf_ver, version=feed.version),
                checkpoint_ts=feed.since_ts, start_key=feed.start, end_key=feed.end, request_id=feed.gen,
                register=cdcpb_pb2.ChangeDataRequest.Register()))
            self.table.mark_sent(feed)

    def _is_current(self, feed: RegionFeed) -> bool:
        return self.feeds.get(feed.id) is feed

    def _coverage_over(self, start: bytes, end: bytes, but: RegionFeed | None = None) -> list[Coverage]:
        """Every coverage capture knows over any part of [start, end): ended registrations' and
        written live ones' (each a true statement of what the replica holds)."""
        pieces = self.ended_coverage.overlapping(start, end)
        written = (self.feeds.get(rid) for rid in self._written.overlapping(start, end))
        current = (f.current_coverage() for f in written if f is not None and f is not but)
        pieces += sorted((c for c in current if c is not None), key=lambda c: c.start)
        return pieces

    def _ended(self, feed: RegionFeed) -> None:
        """``feed`` is no longer current: the rows it took that still wait in the FIFO are
        written after this, unless its region is retired first (``ended_waiting``)."""
        self.ended_waiting.ended(feed, self.held_count, self.released_count)

    def _end_coverage(self, feed: RegionFeed) -> None:
        """An ended registration's coverage stays known until registrations written since
        cover its range (the versions it wrote stay in the replica)."""
        coverage = feed.current_coverage()
        if coverage is not None:
            self.ended_coverage.add(coverage)

    def _forget_covered(self, start: bytes, end: bytes) -> None:
        """Drop the ended coverages whose table keys written registrations cover now, once a
        snapshot over [start, end) is written (only those over it can be covered now): each of
        those inherited what it said."""
        if not len(self.ended_coverage):
            return

        def covered(c: Coverage) -> bool:
            lo = max(c.start, _RECORD_SPAN[0])
            hi = _RECORD_SPAN[1] if not c.end else min(c.end, _RECORD_SPAN[1])
            return lo < hi and not range_gaps(self._written.spans(lo, hi), lo, hi)

        for c in self.ended_coverage.overlapping(start, end):
            if covered(c):
                self.ended_coverage.remove(c)

    def _load_range(self, start: bytes, end: bytes, dropped: RegionFeed | None = None) -> None:
        """Register every region PD has over [start, end) that holds table keys; where the range
        is a dropped registration's, first write the split or merge PD shows it went through."""
        lo, hi = max(start, _RECORD_SPAN[0]), _RECORD_SPAN[1] if not end else min(end, _RECORD_SPAN[1])
        if dropped is not None:
            infos = self.pd.scan_regions(start, end)
            self._topology_event(dropped, infos)
        elif hi and lo >= hi:
            return
        else:
            infos = self.pd.scan_regions(lo, hi)
        for info in infos:
            if (not info.end or info.end > lo) and (not hi or info.start < hi):
                self._register(info)
        self._send_registrations()

    def _topology_event(self, old: RegionFeed, now: list[RegionInfo]) -> None:
        """The binlog's ``Admin`` event for what became of a dropped registration's region, as PD
        shows it, so the replica's regions take the cluster's shape at once (TiKV's feed sends
        no admin events: tikv ``delegate.rs``; the epoch and PD are what tell a split from a
        merge, as TiCDC's region worker learns them). Each region is then registered anew,
        and its snapshot replaces its range. Nothing is written where PD's answer is neither
        a clean split nor a clean merge, or names a region no replica knows: the snapshots
        alone then set the shape.
        - split: the old region, now younger, and its new siblings tile the old range exactly;
        - merge: the old region is gone and one region the binlog introduced covers its range."""
        if old.id not in self.introduced or old.id in self.feeds:
            # A newer registration of the region is current (another range's reload found it):
            # its own events still come and speak for it; its own error, if any, follows.
            return
        ids = {i.id for i in now}
        mine = next((i for i in now if i.id == old.id), None)
        if mine is not None:
            if mine.version <= old.version or len(now) < 2 or not _tiles(now, old.start, old.end):
                return
            if any(i.id != old.id and (i.id in self.feeds or i.id in self.introduced) for i in now):
                return  # a sibling registered through another range already: its snapshot sets it
            regions = [binlog_pb2.Region(id=i.id, start_key=i.start, end_key=i.end,
                                         epoch=binlog_pb2.RegionEpoch(version=i.version, conf_version=i.conf_ver))
                       for i in now]
            self._hold(0, HeldAdmin(old.id, regions[[i.id for i in now].index(old.id)].epoch,
                                    binlog_pb2.Admin(split=binlog_pb2.Split(regions=regions))))
            log.info("region %d split into regions %s", old.id, sorted(ids))
            return
        if len(now) != 1 or not _covers_range(now[0], old.start, old.end):
            return
        target = now[0]
        current = self.feeds.get(target.id)
        if target.id not in self.introduced or (current is not None and current.version == target.version
                                                and current.initialized):
            return  # the target's snapshot of the merged range is written already
        source = old.region_proto()
        merged = binlog_pb2.Region(id=target.id, start_key=target.start, end_key=target.end,
                                   epoch=binlog_pb2.RegionEpoch(version=target.version, conf_version=target.conf_ver))
        self._hold(0, HeldAdmin(target.id, merged.epoch, binlog_pb2.Admin(merge=binlog_pb2.Merge(source=source,
                                                                                          target=merged))))
        log.info("region %d merged into region %d", old.id, target.id)

    def _drop(self, feed: RegionFeed, why: str, backoff_s: float) -> None:
        if self.feeds.get(feed.id) is not feed:
            return  # dropped already (its range waits for a reload), or registered anew since
        self.table.remove(feed)
        if feed.written:
            self._written.remove(feed.id, feed.start, feed.end)
        self._ended(feed)
        self._end_coverage(feed)
        self._reload_later(feed.start, feed.end, feed, backoff_s)
        log.info("region %d: %s; registering its range again", feed.id, why)

    def _reload_later(self, start: bytes, end: bytes, dropped: RegionFeed | None, backoff_s: float) -> None:
        """Look [start, end) up in PD again after ``backoff_s`` and a random part of it more
        (``retry_jitter``), and register the regions there."""
        due = time.monotonic() + backoff_s * (1.0 + self._jitter.random() * self.opts.retry_jitter)
        self.pending_reload.append((due, start, end, dropped))
        self._registrations_changed = True

    def _followed_gaps(self, with_reloads: bool) -> list[tuple[bytes, bytes]]:
        """The keys of the captured span that no current registration (and, ``with_reloads``,
        no pending reload) follows (capture/held_ranges.py)."""
        # (the registrations in key order as references, each span made as it is met: a list of
        # 100,000 span tuples was capture's peak memory once every region was registered)
        feeds = sorted(self.feeds.values(), key=_feed_start)
        spans: Iterable[tuple[bytes, bytes]] = ((f.start, f.end) for f in feeds)
        if with_reloads and self.pending_reload:
            spans = heapq.merge(spans, sorted((p[1], p[2]) for p in self.pending_reload), key=_span_start)
        return range_gaps(spans, *_RECORD_SPAN, ordered=True)

    def _check_followed(self) -> None:
        """The invariant, checked after registrations began or ended: every key of the captured
        span is a current registration's or a pending reload's. A range in neither would lose
        its rows while capture says it is caught up; it is reported by name, as the bug it is,
        and looked up in PD again (the regions there register from what the replica holds)."""
        now = time.monotonic()
        if not self._registrations_changed or now - self._followed_checked_at < FOLLOWED_CHECK_EVERY_S:
            return
        self._registrations_changed, self._followed_checked_at = False, now
        for lo, hi in self._followed_gaps(with_reloads=True):
            self.unfollowed.append((lo, hi))
            log.error("capture followed no region over keys %s (a bug: no registration and no pending "
                      "lookup held them); looking the range up in PD again", describe_range(lo, hi))
            self._reload_later(lo, hi, None, 0.0)

    def _region_error(self, feed: RegionFeed, error: cdcpb_pb2.Error) -> None:
        fields = [f.name for f, _ in error.ListFields()]
        self.errors.update(fields or ["empty"])
        busy = "server_is_busy" in fields or "congested" in fields
        if "cluster_id_mismatch" in fields or "compatibility" in fields:
            raise CaptureError(f"TiKV store {feed.store_id} refused region {feed.id}'s registration: {error}")
        if "not_leader" in fields and error.not_leader.leader.store_id:
            self.store_addresses.pop(error.not_leader.leader.store_id, None)
        self._drop(feed, ", ".join(fields) or "an empty error", self.opts.retry_backoff_s * (4 if busy else 1))

    # ------------------------------------------------------------------ events

    def _hold(self, max_cts: int, held: Held) -> None:
        """Hold ``held`` until the DDL frontier reaches ``max_cts`` (its newest commit; 0: none)."""
        self.fifo.append((max_cts, held))
        self.held_count += 1

    def _build(self, held: Held) -> list[binlog_pb2.Event]:
        """The binlog events of a held item, as it is released (``_release``)."""
        if isinstance(held, HeldRuns):
            return self.live_events.runs_event(held.feeds, held.runs)
        if isinstance(held, HeldRows):
            return self.live_events.columns_event(held.feed, held.rows)
        if isinstance(held, HeldResolved):
            return self._resolved_event(held.ids, held.gens, held.ts)
        if isinstance(held, HeldSnapshot):
            return self._snapshot_events(held.feed, held.snapshot)
        return [binlog_pb2.Event(region_id=held.region_id, index=self._next_index(held.region_id), epoch=held.epoch,
                                 admin=held.admin)]

    def _on_events(self, store_id: int, msg: feed_columns.FeedMessage) -> None:
        """One ChangeDataEvent, decoded into columns by its stream (capture/feed_columns.py).
        A message of live rows only (initialised registrations' entries: what a busy cluster
        sends) is matched in one call and written as one event of many regions
        (``_on_live_message``); any other is taken event by event (``_on_each_event``). Then its
        resolved ts."""
        if not self._on_live_message(store_id, msg):
            self._on_each_event(store_id, msg)
        self._on_resolved(store_id, msg)

    def _on_live_message(self, store_id: int, msg: feed_columns.FeedMessage) -> bool:
        """A message whose every event is live rows of a current, initialised registration (or of
        an ended one: passed over), matched for all its regions in one C call
        (``feed_columns.match_live_many``) and held as one binlog event (``LiveEvents.runs_event``). False,
        with nothing done, for a message with any other event: the initial scan's rows, an
        error, an admin event."""
        feeds = self.feeds
        slot_of: dict[int, int] = {}
        slots: list[RegionFeed] = []
        spans: list[tuple[int, int, int]] = []
        grouped = True  # each region's spans already together (its events one after another)
        for rid, _, request_id, kind, lo, hi, _, _ in msg.events.tolist():
            feed = feeds.get(rid)
            if feed is None or feed.gen != request_id or feed.store_id != store_id:
                continue  # an ended registration's
            if kind != feed_columns.KIND_ENTRIES or not feed.initialized:
                return False
            slot = slot_of.get(rid)
            if slot is None:
                slot = slot_of[rid] = len(slots)
                slots.append(feed)
            elif slot != len(slots) - 1:
                grouped = False
            spans.append((lo, hi, slot))
        if not spans:
            return True
        if not grouped:  # a region's spans together, in feed order (a stable sort; in Python: a
            # NumPy sort lets the GIL go, and taking it back from the stream threads cost more)
            spans.sort(key=_span_slot)
        table = np.array(spans, dtype=np.int64)
        runs = feed_columns.match_live_many(msg.row_buffers(), table,
                                            tuple(f.open_set() for f in slots),
                                            self.table.resolved[[f.slot for f in slots]])
        for slot, exc in runs.errors.items():
            self._drop(slots[slot], f"region {slots[slot].id}: {exc}", self.opts.retry_backoff_s)
        if runs.rows.count:
            self._hold(int(runs.rows.max_commit_ts), HeldRuns(slots, runs))
        return True

    def _on_each_event(self, store_id: int, msg: feed_columns.FeedMessage) -> None:
        """A message event by event: an initialised registration's rows are matched as columns,
        its events of one message coalesced into one binlog event; a registration's rows before
        INITIALIZED (the initial scan) build its snapshot as columns
        (``RegionFeed.take_initial_columns``); errors are parsed as messages."""
        buffers = msg.row_buffers()
        live: dict[int, list[tuple[int, int]]] = {}  # region -> row ranges of its live rows, in order
        scan: feed_columns.ScanEvents | None = None
        for i, (rid, _, request_id, kind, lo, hi, _, _) in _event_rows(msg.events):
            feed = self.feeds.get(rid)
            if feed is None or feed.gen != request_id or feed.store_id != store_id:
                continue  # an ended registration's
            if kind == feed_columns.KIND_ENTRIES and feed.initialized:
                live.setdefault(rid, []).append((lo, hi))
                continue
            if rid in live:
                self._on_live_rows(feed, buffers, live.pop(rid))
            if kind not in (feed_columns.KIND_ENTRIES, feed_columns.KIND_ERROR) or self.feeds.get(rid) is not feed:
                continue
            if kind == feed_columns.KIND_ERROR:
                self._region_error(feed, cdcpb_pb2.Event.FromString(msg.event_bytes(i)).error)
                continue
            # the initial scan's rows, as columns (RegionFeed.take_initial_columns)
            self.rows_scanned += hi - lo
            if scan is None:  # the message's events read as a scan's, all at once
                scan = feed_columns.scan_events(msg)
            after = feed.take_initial_event(msg.rows, scan, i, lo, hi)
            if after is not None:
                cts = feed.max_commit_ts()
                snap = feed.snapshot_columns()
                self._hold(cts, HeldSnapshot(feed, snap))
                if lo + after < hi:  # live rows after INITIALIZED in the same event
                    self._on_live_rows(feed, buffers, [(lo + after, hi)])
        for rid, spans in live.items():
            feed = self.feeds.get(rid)
            if feed is not None:
                self._on_live_rows(feed, buffers, spans)

    def _on_resolved(self, store_id: int, msg: feed_columns.FeedMessage) -> None:
        """The message's resolved ts, for the current initialised registrations it lists: the
        ids found in the region table (capture/region_table.py) as arrays, held with the
        generation each had (a registration that ends before it is written is not moved)."""
        resolved = msg.resolved_bytes()
        if resolved is None:
            return
        r = cdcpb_pb2.ResolvedTs.FromString(resolved)
        rids = np.array(r.regions, dtype=np.uint64)
        if not len(rids):
            return
        rids = rids.astype(np.int64)  # (region ids are below 2^63: PD allocates them from 1 up)
        table = self.table
        if not len(table):
            return  # no registration now
        pos, found = table.find(rids)
        ok = found & table.ready[pos] & (table.stores[pos] == store_id)
        if r.request_id:
            ok &= table.gens[pos] == int(r.request_id)
        if ok.any():
            ids, gens = rids[ok], table.gens[pos[ok]]
            self._hold(0, HeldResolved(ids, gens, int(r.ts)))

    def _on_live_rows(self, feed: RegionFeed, buffers: feed_columns.RowBuffers, spans: list[tuple[int, int]]) -> None:
        """An initialised registration's rows of one message (its events' ``spans`` of the
        message's ``row_buffers``), matched in C, as one binlog event. Record keys only (index
        entries are not rows); the selection is applied when the event is built, after the DDL
        frontier passed its commits (a table created since)."""
        try:
            cols = feed.take_columns(buffers, spans)
        except FeedProtocolError as exc:
            self._drop(feed, str(exc), self.opts.retry_backoff_s)
            return
        if cols is not None:
            self._hold(cols.max_commit_ts, HeldRows(feed, cols))

    def _snapshot_events(self, feed: RegionFeed, snap: SnapshotColumns | binlog_pb2.RegionSnapshot
                         ) -> list[binlog_pb2.Event]:
        """The registration's snapshot (``RegionFeed.snapshot_columns``; a ``RegionSnapshot`` is
        taken as columns), unless a region of a newer epoch has spoken for some of its keys
        already (capture/range_claims.py): then it is stale, and the range is looked up again.
        It is written in the binlog's columnar form."""
        if isinstance(snap, binlog_pb2.RegionSnapshot):
            snap = snapshot_columns(snap)
        if feed.discarded:
            return []
        newer = self.claims.newer(feed.id, feed.start, feed.end, feed.version)
        if newer:
            feed.discarded = True
            self._drop(feed, f"its snapshot (epoch version {feed.version}) is older than region {newer[0].region_id}'s "
                             f"(version {newer[0].version}) over the same keys", self.opts.retry_backoff_s)
            return []
        feed.written = True
        snap = self.tables.filter_snapshot(snap)
        if feed.since_ts:
            # An incremental scan: the versions above since_ts, of which the replica may hold
            # some already (written by the registrations before, above their resolved ts).
            # What is known of them is what was known at registration and what was learned
            # since (a registration that ended before its own snapshot was written has its
            # coverage only now).
            pieces = [*feed.inherited, *(c for c in self._coverage_over(feed.start, feed.end, but=feed)
                                         if all(c is not p for p in feed.inherited))]
            known = known_at_snapshot(pieces, feed.start, feed.end, feed.since_ts)
            keys, cts = snap.versions.keys.to_pylist(), snap.versions.commit_ts.tolist()
            fresh = np.array([not known.holds(k, c) for k, c in zip(keys, cts)], bool)
            self.rows_skipped += len(fresh) - int(fresh.sum())
            snap = snap.where(fresh)
            for k, c, f in zip(keys, cts, fresh.tolist()):
                if f:
                    known.add(k, c)
            feed.coverage, feed.inherited = known, ()
        else:
            # the snapshot replaces the range whole (the replica may hold versions TiKV has
            # collected since): what ended registrations said of it no longer counts
            for c in self.ended_coverage.overlapping(feed.start, feed.end):
                self.ended_coverage.remove(c)
            if len(snap.versions):
                feed.coverage = Coverage([(feed.start, feed.end, 0)])
                feed.coverage.add_columns(snap.versions.keys, snap.versions.commit_ts)
            else:  # (an idle region's: made when first asked for)
                feed.cover_whole()
        if self.feeds.get(feed.id) is not feed:
            self._end_coverage(feed)  # ended while its snapshot waited to be written
            self._ended(feed)  # (its rows held after the snapshot are written next)
        else:
            self._written.insert(feed.id, feed.start, feed.end)
        self._forget_covered(feed.start, feed.end)
        return [snapshot_event(feed, self._next_index(feed.id), snap, since_ts=feed.since_ts)]

    def _next_index(self, region_id: int) -> int:
        """The region's next binlog index: one counter per region across its registrations."""
        return self.table.next_index(region_id)

    def _resolved_event(self, ids: np.ndarray, gens: np.ndarray, ts: int) -> list[binlog_pb2.Event]:
        """Regions' resolved ts (``_on_resolved``) as one event, built when released: of the
        registrations still current (one that ended — its region errored — says nothing of
        what its successor has not yet written) whose resolved ts it moves. As arrays; each
        moved registration's ``resolved_ts`` and ``covered_ts`` set (its coverage's floors are
        raised to it when next consulted: ``RegionFeed.current_coverage``)."""
        ts = min(ts, self.frontier)  # a resolved ts promises the schema changes up to it too
        table = self.table
        if not len(table):
            return []  # every registration ended since
        pos, found = table.find(ids)
        moved = found & (table.gens[pos] == gens) & (table.resolved[pos] < np.uint64(ts))
        if not moved.any():
            return []
        at = pos[moved]
        table.resolved[at] = ts  # (each RegionFeed's resolved_ts and covered_ts are its row's)
        table.covered[at] = ts
        moved_ids = ids[moved]
        self.resolved.add(moved_ids, ts)
        return [resolved_event(ts, moved_ids)]

    def _release(self) -> None:
        """Write the held events whose commits are all at or below the DDL frontier, in order,
        appended in pieces of about RELEASE_BYTES: an initial copy releases every region's
        snapshot at once, and holding them all built before the first write doubled capture's
        peak memory."""
        out: list[binlog_pb2.Event] = []
        payloads: list[bytes] = []  # each event serialized once: its size here, its bytes appended
        size = 0
        while self.fifo and self.fifo[0][0] <= self.frontier:
            _, held = self.fifo.popleft()  # its columns are freed once its events are written
            self.released_count += 1
            # each event is taken in as it is built: a later one of this release is built
            # against the claims and retirements of the ones before it
            for ev in self._build(held):
                if ev.WhichOneof("payload") not in ("entries", "resolved"):  # (recorded as they were built)
                    self._absorb(ev)
                out.append(ev)
                payloads.append(ev.SerializeToString())
                size += len(payloads[-1])
            if size >= RELEASE_BYTES or len(out) >= RELEASE_EVENTS:
                self._append(out, absorbed=True, payloads=payloads)
                out, payloads, size = [], [], 0
        if out:
            self._append(out, absorbed=True, payloads=payloads)
        self.ended_waiting.released(self.released_count)

    def _append(self, events: list[binlog_pb2.Event], absorbed: bool = False,
                payloads: list[bytes] | None = None) -> None:
        """Append ``events`` (``payloads``: their bytes, serialized already) to the binlog, then
        take in what they say."""
        self.writer.append(events if payloads is None else payloads)
        for ev in events:
            self.resume.absorb(ev, self._same_range)  # what is written only: an event built but not written proves nothing
            if not absorbed:
                self._absorb(ev)
            if ev.WhichOneof("payload") == "entries":
                self.rows_written += len(ev.entries.rows) + ev.entries.batch.count
            elif ev.WhichOneof("payload") == "snapshot":  # versions, not locks (either form)
                self.rows_written += len(ev.snapshot.writes) + ev.snapshot.batch.types.count(COMMITTED_TYPE)
        self.events_written += len(events)

    # ------------------------------------------------------------------ GC

    def _hold_gc(self, at_start: bool) -> None:
        """Keep PD's service safe point at the oldest ts the binlog still needs."""
        if at_start or not self.feeds:
            needed = self.pd.gc_safe_point()
        else:
            needed = self.table.least_resolved()
            if needed == 0:
                return  # a region still initialising: keep the start's hold
            # a range waiting to be registered again is scanned from its ended coverage's floor
            needed = min([needed, *(c.least_floor() for c in self.ended_coverage if c.least_floor())])
        least = self.pd.update_service_safe_point(self.service_id, self.opts.gc_ttl_s, needed)
        self.gc_held = needed
        if least > needed and at_start:
            raise GCPassedError(f"PD's GC safe point {least} is past {needed}, the ts capture needs")

    def _resume_from_binlog(self) -> None:
        """A restarted capture registers each region from what its binlog is proved to hold of
        the region's range (capture/resume.py), at or above the GC safe point it holds: TiKV's
        incremental scan from there gives the versions committed since and the open locks."""
        if not self.opts.incremental:
            return
        self.ended_coverage = EndedCoverages(self.resume.coverages(self.gc_held))
        if len(self.ended_coverage):
            least = min(c.least_floor() for c in self.ended_coverage)
            self.progress(f"resuming {sum(len(c.floors) for c in self.ended_coverage)} key range(s) from the "
                          f"resolved ts the binlog holds (the least {least}); any other range is scanned whole")

    # ------------------------------------------------------------------ main loop

    def caught_up(self, ts: int) -> bool:
        """Whether every key of the captured span is followed by an initialised registration
        whose resolved ts is at or above ``ts``. A range no registration follows is never
        caught up, whatever the regions around it say."""
        if self.pending_reload or not self.feeds:
            return False
        table = self.table  # (asked every loop with --until-ts: arrays, not a pass over the registrations)
        used = table.used()
        return bool(table.ready[used].all() and (table.resolved[used] >= np.uint64(ts)).all()) and \
            not self._followed_gaps(with_reloads=False)

    def stop(self) -> None:
        self._stop.set()
        self.ddl.stop()
        self.pd.interrupt()  # a PD call retrying while PD is away must not hold the stop up

    def run(self, on_up: Callable[[], None] | None = None) -> int:
        """Capture until stopped (0) or, with ``until_ts``, until every region has a resolved
        ts at or above it durable in the binlog (0). ``on_up`` is called once capture is up: its
        ports listening, the tables checked, every region's feed about to be registered (the CLI
        writes the pid file then, so `capture start` returns only for a capture that got there)."""
        with long_lived_heap():  # a region's objects live as long as it does (pyspark_theflash/heap.py)
            return self._run(on_up)

    def _run(self, on_up: Callable[[], None] | None) -> int:
        server = None
        if self.opts.serve_binlog is not None:
            from pyspark_theflash.binlog import serve_binlog

            server = serve_binlog(self.dir, "127.0.0.1", self.opts.serve_binlog)
            self.progress(f"serving the binlog at {server.url}")
        if self.opts.metrics_port is not None:
            try:
                self.metrics = StatusServer(lambda: self.last_status, prometheus_text, self.opts.metrics_port,
                                            thread_name="capture-metrics")
            except BaseException:
                if server is not None:
                    server.stop()
                raise
            self.progress(f"metrics at http://127.0.0.1:{self.metrics.port}/metrics (/status, /healthz)")
        try:
            tables = self.status.user_tables()
            self.tables.check(tables, self.status.url)  # every table --tables names exists
            self._hold_gc(at_start=True)
            self._gc_start = self.gc_held
            self._resume_from_binlog()
            self._apply_ddl(self.pd.get_ts(), self.ddl.history())
            if self.fresh:
                missing = self.tables.creations_missing(tables)
                if missing:
                    self._append(missing)
            self._load_range(*_RECORD_SPAN)
            if self.opts.resolve_locks_after_s > 0:
                self.lock_resolver = StuckRegionResolver(self.opts.pd, self.opts.resolve_locks_after_s,
                                                         self.opts.resolve_locks_interval_s)
            self.progress(f"capturing {len(self.feeds)} region(s) of cluster {self.pd.cluster_id} into {self.dir}")
            self.ddl.start()
            if on_up is not None:
                on_up()
            last_gc = last_report = time.monotonic()
            report = ProgressLine(last_report)
            # events_written when the log was last synced and the state last saved. The first
            # save is at once: a restart without a state file must read the whole log again.
            synced = saved = 0
            last_save = float("-inf")
            save_every = STATE_SAVE_EVERY_S
            while not self._stop.is_set():
                task: Task | None
                try:
                    task = self.inbound.get(timeout=0.05)
                except queue.Empty:
                    task = None
                drain_until = time.monotonic() + RELEASE_EVERY_S
                while task is not None:
                    self._handle(task)
                    if time.monotonic() >= drain_until:
                        break
                    try:
                        task = self.inbound.get_nowait()
                    except queue.Empty:
                        task = None
                self._release()
                self._send_registrations()  # initial scans finished: room for those waiting
                if self.fifo:  # events wait for the DDL frontier: have it read now
                    self.ddl.want()
                now = time.monotonic()
                for reload in [p for p in self.pending_reload if p[0] <= now]:
                    self.pending_reload.remove(reload)
                    try:
                        self._load_range(*reload[1:])
                    except (CaptureError, UpstreamError) as exc:
                        log.warning("reloading regions failed, retrying: %s", exc)
                        self.pending_reload.append((now + 1.0, *reload[1:]))
                self._check_followed()
                if self.events_written != synced:
                    self.writer.sync()
                    synced = self.events_written
                self.state_saver.check()  # (a save that failed: capture stops with its error)
                if saved != synced and now - last_save >= save_every and not self.state_saver.busy():
                    # a restart reads the log from the saved position on (_load_state), so a
                    # state a second old costs a second of replay; saved on every loop, its
                    # JSON (every region, claim and index) took most of this thread's time. With
                    # many regions the JSON grows with them: the state is then saved at most
                    # every STATE_SAVE_SHARE-th of the time (10,000 regions: ~0.1 s a save), and
                    # written by another thread from lists copied here (a few ms at 10,000)
                    save_every = max(STATE_SAVE_EVERY_S, self.state_saver.took_s / STATE_SAVE_SHARE)
                    self.state_saver.start(self._state_now())
                    saved, last_save = synced, now
                first_resolved = self.gc_held == self._gc_start and self.table.all_resolved()
                if now - last_gc >= self.opts.gc_update_s or first_resolved:
                    try:
                        self._hold_gc(at_start=False)  # at once when every region first resolved
                    except UpstreamError as exc:  # PD away: the hold's TTL covers the outage; retried
                        log.warning("renewing the PD service safe point failed, retrying: %s", exc)
                    last_gc = now
                if now - self._status_at[0] >= STATUS_EVERY_S:
                    self._take_status(now)
                if now - last_report >= PROGRESS_EVERY_S:
                    write_status(self.dir, self.last_status)  # for `theflash capture status`
                    self.progress(report.line(
                        now, regions=len(self.feeds), initialised=self.table.count_ready(),
                        rows_scanned=self.rows_scanned, rows_written=self.rows_written,
                        events_written=self.events_written,
                        min_resolved_ts=self.table.least_resolved(),
                        frontier_ts=self.frontier, held_events=len(self.fifo)))
                    if self.fifo and now - self.frontier_moved_at > FRONTIER_STUCK_S:
                        log.warning("the DDL frontier has not moved for 30 s (are PD and TiDB's status port %s answering?): "
                                    "%d events wait in memory until it moves", self.status.url, len(self.fifo))
                    last_report = now
                if self.opts.until_ts is not None and self.caught_up(self.opts.until_ts):
                    self.progress(f"every region resolved at or above {self.opts.until_ts}: done")
                    return 0
            return 0
        finally:
            self._stop.set()
            self.ddl.stop()
            for stream in self.streams.values():
                stream.close()
            if self.lock_resolver is not None:
                self.lock_resolver.close()
            self.writer.sync()
            self._save_state()
            self.writer.close()
            with contextlib.suppress(OSError):  # (a status file is a report: never a reason to fail)
                write_status(self.dir, self._take_status(time.monotonic(), state="stopped"))
            if self.metrics is not None:
                self.metrics.close()
            if server is not None:
                server.stop()
            self.pd.close()

    def _take_status(self, now: float, state: str = "running") -> dict[str, Any]:
        """The status snapshot (capture/status.py) as of now: registrations, the least resolved
        ts written and its lag behind PD's clock, what was written, errors by kind."""
        least = self.table.least_resolved()
        lag_s = max(0.0, (physical_ms(self.frontier) - physical_ms(least)) / 1000) if least and self.frontier else None
        at, rows = self._status_at
        rows_per_s = max(0, self.rows_written - rows) / max(now - at, 1e-6)
        self._status_at = (now, self.rows_written)
        stuck_s = now - self.frontier_moved_at if self.fifo else 0.0
        healthy, reason = state == "running", "" if state == "running" else f"capture is {state}"
        if healthy and stuck_s > FRONTIER_STUCK_S:
            healthy, reason = False, (f"the DDL frontier has not moved for {stuck_s:.0f} s: {len(self.fifo)} events "
                                      f"wait for it (are PD and TiDB's status port {self.status.url} answering?)")
        snap = {"state": state, "pid": os.getpid(), "binlog": str(self.dir), "at": time.time(),
                "metrics_port": self.metrics.port if self.metrics is not None else None,
                "healthy": healthy, "unhealthy_reason": reason, "regions": len(self.feeds),
                "initialised": self.table.count_ready(), "registrations_waiting": len(self.pacer),
                "pending_lookups": len(self.pending_reload),
                "streams": len(self.streams), "least_resolved_ts": least, "frontier_ts": self.frontier,
                "lag_s": round(lag_s, 3) if lag_s is not None else None, "rows_written": self.rows_written,
                "rows_scanned": self.rows_scanned, "events_written": self.events_written,
                "rows_per_s": round(rows_per_s), "held_events": len(self.fifo), "errors": dict(self.errors)}
        self.last_status = snap
        return snap

    def _handle(self, task: Task) -> None:
        """One task from capture's threads (capture/tasks.py); a stream's task of an older
        stream of the store (one that broke, and was opened again since) is passed over."""
        if isinstance(task, StreamMessage):
            stream = self.streams.get(task.store_id)
            if stream is not None and stream.gen == task.gen:
                self._on_events(task.store_id, task.message)
        elif isinstance(task, StreamDown):
            stream = self.streams.get(task.store_id)
            if stream is None or stream.gen != task.gen:
                return
            del self.streams[task.store_id]
            self.errors["stream_down"] += 1
            stream.close()
            self.store_addresses.pop(task.store_id, None)
            self.pacer.forget_store(task.store_id)  # (its waiting registrations end below)
            for feed in [f for f in self.feeds.values() if f.store_id == task.store_id]:
                self._drop(feed, f"store {task.store_id}'s stream broke ({task.reason})", self.opts.retry_backoff_s)
        elif isinstance(task, DdlPoll):
            self._apply_ddl(task.frontier, task.jobs)
        else:  # PollFailed: the DDL poll is retried
            log.warning("%s", task.reason)
