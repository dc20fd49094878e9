"""The mini cluster's TiKV change-data feed: ``cdcpb.ChangeData/EventFeed`` as TiKV serves it.

One bidirectional stream per client and store; the client sends one ``Register`` per region
(its epoch, ``checkpoint_ts``, ``request_id``), the store answers per region, in raft order:

1. the initial (incremental) scan: every committed PUT/DELETE version of the range with
   commit_ts > checkpoint_ts as a COMMITTED row, and every open PUT/DELETE lock as a PREWRITE
   row (TiKV's ``initializer.rs``; Lock and Rollback records are not changes);
2. one INITIALIZED row;
3. the live changes: PREWRITE (no primary, no TTL: the row has no field for them), COMMIT
   (``op_type``, and a value only where the write record holds a short value: <= 255
   bytes), ROLLBACK (commit_ts 0), COMMITTED (1PC, with the value);
4. ``ChangeDataEvent.resolved_ts`` batched per request id, only for initialised regions.

A split or merge of a registered region ends its registration with an ``epoch_not_match``
(or ``region_not_found`` for a merge's source) error, as TiKV's delegate stops; the client
reloads the range from PD and registers again. A registration whose epoch is stale, or for a
region this store does not lead, is answered with the error at once.

The scan and the subscription are taken under the Percolator store's lock together, so the
live changes start exactly after the scanned state: nothing is lost or given twice.
"""
from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Iterator, Literal, Protocol

import grpc

from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.codec.txn import SHORT_VALUE_MAX_LEN
from pyspark_theflash.proto import binlog_pb2, cdcpb_pb2, cdcpb_pb2_grpc, errorpb_pb2

from pyspark_theflash.upstream.pd import Region
from pyspark_theflash.upstream.topology import Topology

if TYPE_CHECKING:
    from pyspark_theflash.upstream.percolator import PercolatorStore

log = logging.getLogger(__name__)


class ClusterOfFeed(Protocol):
    """What the feed needs of the mini cluster it serves (``cluster.MiniCluster``, which lays it out)."""

    @property
    def cluster_id(self) -> int: ...

    @property
    def store(self) -> PercolatorStore: ...

    def served_topology(self) -> Topology: ...


class StoreOfFeed(Protocol):
    """What the feed needs of the store server it serves for (tikv_stores.StoreServer)."""

    store_id: int
    topology: Topology

Ev = cdcpb_pb2.Event
_OP = {binlog_pb2.PUT: Ev.Row.PUT, binlog_pb2.DELETE: Ev.Row.DELETE}
SCAN_ROWS_PER_EVENT = 1024  # rows per Entries event of an initial scan
class _Mark(enum.Enum):
    """A stream's queue holds its events and these marks."""

    END = "end"              # the stream is closed
    TICK_SENT = "tick sent"  # queued after a tick's resolved ts: the sender has passed them


_END: Final = _Mark.END
_TICK_SENT: Final = _Mark.TICK_SENT


@dataclass
class _Registration:
    region_id: int
    request_id: int
    initialized: bool = False
    # (key, start_ts) -> (cdc op, value) of the prewrites this registration has sent, for the
    # COMMIT rows that follow them (the binlog's COMMIT rows name only the key and the ts).
    prewrites: dict[tuple[bytes, int], tuple[cdcpb_pb2.Event.Row.OpType, bytes]] = field(default_factory=dict)


class _Stream:
    """One EventFeed call: its registrations and its outgoing queue."""

    def __init__(self, store_id: int, multiplexed: bool) -> None:
        self.store_id = store_id
        # EventFeedV2 with stream multiplexing tags batched resolved ts with the request id;
        # plain EventFeed sends them with request id 0 (TiKV's broadcast_resolved_ts).
        self.multiplexed = multiplexed
        self.out: queue.Queue[cdcpb_pb2.ChangeDataEvent | _Mark] = queue.Queue()
        self.regs: dict[int, _Registration] = {}  # region id -> registration (the store's lock guards it)
        self.closed = False
        # A tick's resolved ts are queued behind the stream's rows; until the sender has passed
        # them (the _TICK_SENT mark after them), the next tick skips this stream. Without it a
        # client slower than the ticks (one message per request id per region and tick) meets
        # an ever longer backlog: resolved ts seconds old behind thousands of stale ones.
        self.tick_in_flight = False


class ChangeFeed:
    """The feed of one mini cluster; every store server's ChangeData service registers here.
    Listens to the Percolator store's events (under its lock, in log order)."""

    def __init__(self, cluster: ClusterOfFeed) -> None:
        self.cluster = cluster
        self.store = cluster.store
        self._streams: list[_Stream] = []
        self.store.listeners.append(self._on_events)
        # Answer the first registration of each region with epoch_not_match, as a TiKV does
        # when the region split between the client's PD lookup and its registration (the
        # client must look the range up again). Off by default; tests turn it on.
        self.stale_first_registration = False
        # Whether the stores serve EventFeedV2 (TiKV 7.5+ does; a test turns it off to play an
        # older store, whose answer to the method is UNIMPLEMENTED).
        self.event_feed_v2 = True
        # How long a stream's sender gathers queued events before it sends them as one message
        # (0: what is queued at that moment). TiKV packs the ready events of many regions into one
        # ChangeDataEvent; the mini cluster's queue holds several regions' only when the client
        # lags, so a test that must see messages of many regions sets a window.
        self.batch_window_s = 0.0
        self._registered_once: set[int] = set()
        # Every tick each stream hears the resolved ts of every initialised region it has, moved
        # or not, as TiKV's endpoint broadcasts them (a region held back by a lock included).
        self._stop = threading.Event()
        interval = getattr(cluster, "resolved_ts_interval", 0.1) or 0.1
        self._ticker = threading.Thread(target=self._tick, args=(interval,), name="cdc-resolved-ts", daemon=True)
        self._ticker.start()

    # ------------------------------------------------------------------ registration

    def open_stream(self, store_id: int, multiplexed: bool) -> _Stream:
        stream = _Stream(store_id, multiplexed)
        with self.store.mu:
            self._streams.append(stream)
        return stream

    def close_stream(self, stream: _Stream) -> None:
        with self.store.mu:
            stream.closed = True
            if stream in self._streams:
                self._streams.remove(stream)
        stream.out.put(_END)

    def register(self, stream: _Stream, req: cdcpb_pb2.ChangeDataRequest, server: StoreOfFeed) -> None:
        """Answer one Register: an error at once, or the scan, INITIALIZED, then live changes."""
        rid, request_id = int(req.region_id), int(req.request_id)
        with self.store.mu:
            error = self._check(req, server)
            if error is not None:
                stream.out.put(cdcpb_pb2.ChangeDataEvent(events=[Ev(region_id=rid, request_id=request_id, error=error)]))
                return
            region = self.store.regions.get(rid)
            reg = _Registration(rid, request_id)
            scan = self._scan(region, int(req.checkpoint_ts), reg)
            stream.regs[rid] = reg  # live events from here on
        for i in range(0, len(scan), SCAN_ROWS_PER_EVENT):
            stream.out.put(cdcpb_pb2.ChangeDataEvent(events=[Ev(
                region_id=rid, request_id=request_id, entries=Ev.Entries(entries=scan[i:i + SCAN_ROWS_PER_EVENT]))]))
        with self.store.mu:
            # INITIALIZED goes through the queue under the lock, so live events queued while
            # the scan was sent keep their place after it.
            reg.initialized = True
            stream.out.put(cdcpb_pb2.ChangeDataEvent(events=[Ev(
                region_id=rid, request_id=request_id, entries=Ev.Entries(entries=[Ev.Row(type=Ev.INITIALIZED)]))]))

    def deregister(self, stream: _Stream, req: cdcpb_pb2.ChangeDataRequest) -> None:
        with self.store.mu:
            reg = stream.regs.get(int(req.region_id))
            if reg is not None and (not req.request_id or reg.request_id == req.request_id):
                del stream.regs[int(req.region_id)]

    def _check(self, req: cdcpb_pb2.ChangeDataRequest, server: StoreOfFeed) -> cdcpb_pb2.Error | None:
        cluster_id = self.cluster.cluster_id
        if req.header.cluster_id and req.header.cluster_id != cluster_id:
            return cdcpb_pb2.Error(cluster_id_mismatch=cdcpb_pb2.ClusterIDMismatch(
                current=cluster_id, request=req.header.cluster_id))
        if req.kv_api != cdcpb_pb2.ChangeDataRequest.TiDB:
            return cdcpb_pb2.Error(compatibility=cdcpb_pb2.Compatibility(required_version="kv_api TiDB"))
        regions = self.store.regions
        try:
            region = regions.get(int(req.region_id))
        except Exception:
            return cdcpb_pb2.Error(region_not_found=errorpb_pb2.RegionNotFound(region_id=req.region_id))
        leader = server.topology.leader_store(region.id)
        if leader != server.store_id:
            return cdcpb_pb2.Error(not_leader=errorpb_pb2.NotLeader(
                region_id=region.id, leader=server.topology.peer(region.id, leader)))
        if self.stale_first_registration and region.id not in self._registered_once:
            self._registered_once.add(region.id)
            return cdcpb_pb2.Error(epoch_not_match=errorpb_pb2.EpochNotMatch(
                current_regions=[server.topology.meta_region(region)]))
        if req.region_epoch.version != region.version:  # TiKV compares the version only
            return cdcpb_pb2.Error(epoch_not_match=errorpb_pb2.EpochNotMatch(
                current_regions=[server.topology.meta_region(region)]))
        return None

    def _scan(self, region: Region, checkpoint_ts: int, reg: _Registration) -> list[cdcpb_pb2.Event.Row]:
        """The region's versions above ``checkpoint_ts`` and its open locks, in key order (the
        caller holds the store lock)."""
        store = self.store
        rows: list[cdcpb_pb2.Event.Row] = []
        for key in store.keys_in(region.start, region.end):
            lock = store.lock_of(key)  # per key: the lock first, then the versions newest first (TiKV's scanner)
            if lock is not None and lock.op in _OP:
                op = _OP[lock.op]
                reg.prewrites[(key, lock.start_ts)] = (op, lock.value)
                rows.append(Ev.Row(type=Ev.PREWRITE, op_type=op, start_ts=lock.start_ts, key=key,
                                   value=lock.value if lock.op == binlog_pb2.PUT else b""))
            for v in store.versions_of(key):
                if v.commit_ts <= checkpoint_ts:
                    break
                if v.write_type not in ("P", "D"):
                    continue  # Lock and Rollback records are not changes
                op = Ev.Row.PUT if v.write_type == "P" else Ev.Row.DELETE
                value = store.value_of(key, v) if op == Ev.Row.PUT else b""
                rows.append(Ev.Row(type=Ev.COMMITTED, op_type=op, start_ts=v.start_ts, commit_ts=v.commit_ts,
                                   key=key, value=value))
        return rows

    # ------------------------------------------------------------------ live events

    def _on_events(self, events: list[binlog_pb2.Event]) -> None:
        """The store's new events (its lock held): each registered region's share, converted."""
        if not self._streams:
            return
        for ev in events:
            kind = ev.WhichOneof("payload")
            if kind == "entries":
                for stream in self._streams:
                    reg = stream.regs.get(int(ev.region_id))
                    if reg is not None:
                        rows = self._rows(reg, ev.entries)
                        if rows:
                            stream.out.put(cdcpb_pb2.ChangeDataEvent(events=[Ev(  # TiKV leaves index 0 for TiDB rows
                                region_id=reg.region_id, request_id=reg.request_id,
                                entries=Ev.Entries(entries=rows))]))
            elif kind == "admin":
                self._admin(ev)

    def _rows(self, reg: _Registration, entries: binlog_pb2.Entries) -> list[cdcpb_pb2.Event.Row]:
        out = []
        for row in binlog_rows.iter_rows(entries):
            key, start_ts = bytes(row.key), int(row.start_ts)
            if row.type == binlog_pb2.Row.PREWRITE:
                if row.op not in _OP:
                    continue  # a LOCK (SELECT FOR UPDATE) changes nothing
                op, value = _OP[row.op], bytes(row.value) if row.op == binlog_pb2.PUT else b""
                reg.prewrites[(key, start_ts)] = (op, value)
                out.append(Ev.Row(type=Ev.PREWRITE, op_type=op, start_ts=start_ts, key=key, value=value))
            elif row.type == binlog_pb2.Row.COMMIT:
                pw = reg.prewrites.pop((key, start_ts), None)
                if pw is None:
                    continue  # the commit of a LOCK
                op, value = pw
                short = value if op == Ev.Row.PUT and len(value) <= SHORT_VALUE_MAX_LEN else b""
                out.append(Ev.Row(type=Ev.COMMIT, op_type=op, start_ts=start_ts, commit_ts=int(row.commit_ts),
                                  key=key, value=short))
            elif row.type == binlog_pb2.Row.ROLLBACK:
                if reg.prewrites.pop((key, start_ts), None) is not None:
                    out.append(Ev.Row(type=Ev.ROLLBACK, start_ts=start_ts, commit_ts=0, key=key))
            elif row.op in _OP:  # COMMITTED
                out.append(Ev.Row(type=Ev.COMMITTED, op_type=_OP[row.op], start_ts=start_ts,
                                  commit_ts=int(row.commit_ts), key=key,
                                  value=bytes(row.value) if row.op == binlog_pb2.PUT else b""))
        return out

    def _tick(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.broadcast_resolved_ts()

    def broadcast_resolved_ts(self) -> None:
        """Each stream gets its initialised regions' resolved ts, one message per (ts, request
        id) — under the store lock, so after every row at or below it that the stream has. A
        stream still sending the last tick's is passed over: its next tick carries newer ts."""
        with self.store.mu:
            for stream in self._streams:
                if stream.tick_in_flight:
                    continue
                groups: dict[tuple[int, int], list[int]] = {}
                for rid, reg in stream.regs.items():
                    if not reg.initialized:
                        continue
                    try:
                        ts = self.store.regions.get(rid).resolved_ts
                    except Exception:
                        continue  # merged away: its error is on the way
                    if ts:
                        groups.setdefault((ts, reg.request_id if stream.multiplexed else 0), []).append(rid)
                for (ts, request_id), rids in sorted(groups.items()):
                    stream.out.put(cdcpb_pb2.ChangeDataEvent(
                        resolved_ts=cdcpb_pb2.ResolvedTs(regions=rids, ts=ts, request_id=request_id)))
                if groups:
                    stream.tick_in_flight = True
                    stream.out.put(_TICK_SENT)

    def close(self) -> None:
        self._stop.set()

    def _admin(self, ev: binlog_pb2.Event) -> None:
        """A split or merge ends the registrations of the regions it changed."""
        cmd = ev.admin.WhichOneof("cmd")
        ended: dict[int, cdcpb_pb2.Error] = {}
        topology = self.cluster.served_topology()
        if cmd == "split":
            current = [topology.meta_region(self.store.regions.get(int(r.id))) for r in ev.admin.split.regions]
            ended[int(ev.region_id)] = cdcpb_pb2.Error(epoch_not_match=errorpb_pb2.EpochNotMatch(current_regions=current))
        elif cmd == "merge":
            source, target = int(ev.admin.merge.source.id), int(ev.admin.merge.target.id)
            ended[source] = cdcpb_pb2.Error(region_not_found=errorpb_pb2.RegionNotFound(region_id=source))
            ended[target] = cdcpb_pb2.Error(epoch_not_match=errorpb_pb2.EpochNotMatch(
                current_regions=[topology.meta_region(self.store.regions.get(target))]))
        elif cmd == "removed":
            ended[int(ev.region_id)] = cdcpb_pb2.Error(
                region_not_found=errorpb_pb2.RegionNotFound(region_id=ev.region_id))
        for stream in self._streams:
            for rid, error in ended.items():
                reg = stream.regs.pop(rid, None)
                if reg is not None:
                    stream.out.put(cdcpb_pb2.ChangeDataEvent(events=[Ev(
                        region_id=rid, request_id=reg.request_id, error=error)]))

    def end_all(self, store_id: int, reason: str) -> None:
        """The store leaves: every stream it serves ends (the clients reconnect)."""
        with self.store.mu:
            streams = [s for s in self._streams if s.store_id == store_id]
        for s in streams:
            self.close_stream(s)


class ChangeDataServicer(cdcpb_pb2_grpc.ChangeDataServicer):
    """``cdcpb.ChangeData`` of one store server."""

    def __init__(self, feed: ChangeFeed, server: StoreOfFeed) -> None:
        self.feed = feed
        self.server = server

    def EventFeed(self, request_iterator: Iterator[cdcpb_pb2.ChangeDataRequest],
                  context: grpc.ServicerContext) -> Iterator[cdcpb_pb2.ChangeDataEvent]:
        return self._feed(request_iterator, context, multiplexed=False)

    def EventFeedV2(self, request_iterator: Iterator[cdcpb_pb2.ChangeDataRequest],
                    context: grpc.ServicerContext) -> Iterator[cdcpb_pb2.ChangeDataEvent]:
        if not self.feed.event_feed_v2:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found: cdcpb.ChangeData/EventFeedV2")
        features = {f.strip() for f in dict(context.invocation_metadata()).get("features", "").split(",") if f.strip()}
        unknown = sorted(features - {"stream-multiplexing"})
        if unknown:  # as TiKV's service.rs refuses a feature it does not know
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"the cluster does not support these features: {unknown}")
        return self._feed(request_iterator, context, multiplexed="stream-multiplexing" in features)

    def _feed(self, request_iterator: Iterator[cdcpb_pb2.ChangeDataRequest], context: grpc.ServicerContext,
              multiplexed: bool) -> Iterator[cdcpb_pb2.ChangeDataEvent]:
        stream = self.feed.open_stream(self.server.store_id, multiplexed)

        def requests() -> None:
            try:
                for req in request_iterator:
                    which = req.WhichOneof("request")
                    if which == "deregister":
                        self.feed.deregister(stream, req)
                    elif which in ("register", None):
                        self.feed.register(stream, req, self.server)
            except grpc.RpcError:
                pass  # the client went away
            except Exception:  # a bug here must not hang the stream: end it, the client retries
                log.exception("change feed: request handling failed")
            finally:
                self.feed.close_stream(stream)

        threading.Thread(target=requests, name="cdc-requests", daemon=True).start()
        context.add_callback(lambda: self.feed.close_stream(stream))
        while True:
            item = self._take(stream, block=True)
            if item is _END:
                return
            # Coalesce what is queued into one message where it carries events only.
            if item.events:
                if self.feed.batch_window_s:
                    time.sleep(self.feed.batch_window_s)  # (let more regions' events queue up)
                events = list(item.events)
                while len(events) < 256:
                    try:
                        nxt = self._take(stream, block=False)
                    except queue.Empty:
                        break
                    if nxt is _END or not nxt.events:
                        yield cdcpb_pb2.ChangeDataEvent(events=events)
                        if nxt is _END:
                            return
                        item = nxt
                        events = []
                        break
                    events.extend(nxt.events)
                if events:
                    yield cdcpb_pb2.ChangeDataEvent(events=events)
                    continue
            yield item

    @staticmethod
    def _take(stream: _Stream, block: bool) -> cdcpb_pb2.ChangeDataEvent | Literal[_Mark.END]:
        """The stream's next queued item (``queue.Empty`` when ``block`` is False and none is);
        a tick's end mark on the way frees the stream for the next tick."""
        while True:
            item = stream.out.get(block)
            if item is not _TICK_SENT:
                return item
            stream.tick_in_flight = False
