"""`theflash capture` against a wire-level TiKV + PD that costs almost nothing: the ceiling.

    .venv/bin/python bench/capture_ceiling.py                     # 200k txns of 10 rows, 20k of 100, 2M rows copied
    .venv/bin/python bench/capture_ceiling.py --txns 20000 --copy-rows 200000 --latency-seconds 5
    .venv/bin/python bench/capture_ceiling.py --skip live,big,latency --together-txns 2000000 --copy-rows 10000000
    .venv/bin/python bench/capture_ceiling.py --sweep 8,1000,10000,100000 --resolved-txns 5000   # rate and memory by regions

The rig (this process) serves, from the project's protos: PD (``pdpb.PD``: members, TSO,
stores, region scans, GC safe points), one or more TiKV stores (``cdcpb.ChangeData/EventFeed``
only; ``EventFeedV2`` is UNIMPLEMENTED, so capture takes the plain feed) and TiDB's status port
(one table, ``bench.kv``, ``/ddl/history`` empty). The feed's rows are encoded with NumPy before
any clock starts; only each event's header (region id, index, the registration's request id)
is written when a registration arrives, so the rig serves at gRPC's line rate and capture,
in its own process as an operator runs it, is the bottleneck. Measured in one run:

* **capture, live** (10-row and 100-row 2PC transactions over ``--regions`` regions): a PREWRITE
  event and a COMMIT event (short values: TiKV puts them in the COMMIT row too) per transaction
  per region, blocks of ``--block`` transactions per message with a batched resolved ts after each;
  committed rows/s from the first message sent to capture's exit with ``--until-ts`` (every
  region's resolved ts past the last commit, synced in the binlog);
* **the writer alone** on the 10-row binlog (``writer run --until-caught-up``; from its log's
  first line to its last, as bench/writer.py reads it);
* **capture + writer at once**: a fresh capture of the same feed and a writer following its
  binlog, until the store's regions all hold a resolved ts past the last commit (readable);
* **initial copy**: ``--copy-rows`` rows as TiKV's initial scan sends them (COMMITTED rows, then
  INITIALIZED) through capture, then applied by the writer; each one's peak RSS (VmHWM), and
  the store's table read back at the copy's ts against the feed (every handle once, the sum of
  a column);
* **commit -> readable** at ``--latency-rate`` commits/s for ``--latency-seconds``: the feed is
  written as it goes (a resolved ts every ``--resolved-every`` s, as TiKV's ``min-ts-interval``),
  capture and writer follow it, and each probe is the time from the COMMIT's send to the store's
  regions all resolved past it;
* beside them, the store's own apply rate in the same run (bench/ingest.py ``--skip-delta``, with
  ``--two-phase`` for the live figures), the baseline each ratio is taken against.

Prints the figures and ends with one JSON line.
"""
from __future__ import annotations

import argparse
import bisect
import json
import sqlite3
import queue
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import pyspark_theflash  # noqa: E402,F401  (before grpc: it turns gRPC's fork support off, pyspark_theflash/grpc_fork.py)
import grpc  # noqa: E402

from ingest import DB, TABLE, TABLE_ID, ROW_VALUE_BYTES, Batch, record_keys, row_values_v2, table_info  # noqa: E402
from live_rig import print_log_tails  # noqa: E402
from pyspark_theflash.codec import encode_region_key  # noqa: E402
from pyspark_theflash.store.manifest import MANIFEST_FILE  # noqa: E402
from pyspark_theflash.proto import cdcpb_pb2, metapb_pb2, pdpb_pb2, pdpb_pb2_grpc  # noqa: E402

CLUSTER_ID = 7_000_001
SPAN = 1 << 40  # handles per region
LOGICAL_BITS = 18
# TiKV's CDC batching (components/cdc): an Event's entries at most CDC_EVENT_MAX_BYTES, and the
# EventBatcher packs at most CDC_EVENT_MAX_COUNT events into one ChangeDataEvent of at most
# CDC_RESP_MAX_BYTES. The copy feed keeps to them (one block of every region in one message
# was 384 MB at 10,000 regions, past gRPC's 256 MiB limit).
CDC_EVENT_MAX_BYTES = 32 * 1024
CDC_EVENT_MAX_COUNT = 64
# INITIALIZED events a message of the fake carries at most (registrations answered as they come;
# TiKV packs 64: more a message keeps the figures of runs before capture paced its registrations)
INITIALIZED_AT_ONCE = 4096
CDC_RESP_MAX_BYTES = 6 * 1024 * 1024
PREWRITE, COMMIT, ROLLBACK, COMMITTED, INITIALIZED = 1, 2, 3, 4, 5
PUT = 1


def varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _varint_matrix(values: np.ndarray) -> np.ndarray:
    """(n, 9) uint8: the varints of uint64 values that all take 9 bytes (2^56 <= v < 2^63)."""
    v = values.astype(np.uint64)
    assert ((v >= np.uint64(1 << 56)) & (v < np.uint64(1 << 63))).all(), "ts outside the 9-byte varint range"
    out = np.empty((len(v), 9), np.uint8)
    for i in range(9):
        b = (v >> np.uint64(7 * i)) & np.uint64(0x7F)
        out[:, i] = b | (np.uint64(0x80) if i < 8 else np.uint64(0))
    return out


def encode_rows(kind: int, start: np.ndarray, commit: np.ndarray | None, keys: np.ndarray,
                values: np.ndarray | None) -> np.ndarray:
    """(n, W) uint8: each row an Entries field (0x0a len Row), cdcpb.Event.Row of one layout."""
    n = len(start)
    parts: list[np.ndarray] = [np.full((n, 1), 0x08, np.uint8), _varint_matrix(start)]
    if commit is not None:
        parts += [np.full((n, 1), 0x10, np.uint8), _varint_matrix(commit)]
    parts += [np.tile(np.array([0x18, kind, 0x20, PUT, 0x2A, keys.shape[1]], np.uint8), (n, 1)), keys]
    if values is not None:
        parts += [np.tile(np.array([0x32, values.shape[1]], np.uint8), (n, 1)), values]
    row = np.concatenate(parts, axis=1)
    assert row.shape[1] < 128
    return np.concatenate([np.tile(np.array([0x0A, row.shape[1]], np.uint8), (n, 1)), row], axis=1)


INITIALIZED_ROW = bytes([0x0A, 2, 0x18, INITIALIZED])


def event_bytes(region_id: int, index: int, request_id: int, entries: bytes) -> bytes:
    ev = b"\x08" + varint(region_id) + b"\x10" + varint(index) + b"\x1a" + varint(len(entries)) + entries + \
        b"\x38" + varint(request_id)
    return b"\x0a" + varint(len(ev)) + ev


def resolved_bytes(regions: list[int], ts: int) -> bytes:
    packed = b"".join(varint(r) for r in regions)
    body = b"\x0a" + varint(len(packed)) + packed + b"\x10" + varint(ts)
    return b"\x12" + varint(len(body)) + body


def region_bound(i: int, regions: int) -> bytes:
    if i <= 0 or i >= regions:
        return b""
    return bytes(encode_region_key(bytes(record_keys(np.array([i * SPAN], np.int64))[0])))


def _values(n: int, seed: int) -> np.ndarray:
    return _values_and_v(n, seed)[0]


def _values_and_v(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` encoded row values (TiDB's row format v2) and their ``v`` column (a checksum's)."""
    rng = np.random.default_rng(seed)
    b = Batch(ids=np.zeros(n, np.int64), deleted=np.zeros(n, bool), v=rng.integers(2**31, 2**62, n, dtype=np.int64),
              x=np.round(rng.normal(size=n) * 1000, 3), s=rng.integers(97, 123, size=(n, 16), dtype=np.uint8))
    return row_values_v2(b), b.v


class Feed:
    """What the stores send: per region a list of (Entries bytes) blocks, in feed order, and the
    resolved ts to send after each block. Each region's blocks are sent interleaved with the
    others', a block at a time (``plan``: (region, block) in send order)."""

    def __init__(self, regions: int) -> None:
        self.regions = regions
        self.blocks: list[list[bytes]] = [[] for _ in range(regions)]  # entries payloads (one event each)
        self.plan: list[list[tuple[int, int]]] = []  # messages: each a list of (region index, block number)
        self.resolved_after: list[int] = []  # the resolved ts after message m (0: none)
        self.initial = False
        self.rows = 0
        self.committed = 0
        self.last_ts = 0
        # an initial copy's table, to check the store against: per region its handle count,
        # and the sum of column v (mod 2**64) over every row
        self.region_rows: list[int] = []
        self.v_sum = 0


def live_feed(txns: int, txn_rows: int, regions: int, block: int, base_ts: int, resolved_txns: int = 0) -> Feed:
    """``txns`` 2PC transactions of ``txn_rows`` rows, transaction t in region t % regions; per
    message ``block`` transactions: their PREWRITE events, then their COMMIT events. A resolved
    ts listing every region follows each ``resolved_txns`` transactions (0: every message) and
    the last message, as TiKV sends one ``ResolvedTs`` for all of a connection's regions every
    ``min-ts-interval``."""
    feed = Feed(regions)
    resolved_at = resolved_txns
    values = _values(txn_rows * min(txns, 4096), 11)
    ts = base_ts
    for lo in range(0, txns, block):
        hi = min(txns, lo + block)
        t = np.arange(lo, hi)
        n = len(t) * txn_rows
        region = np.repeat(t % regions, txn_rows)
        handles = region.astype(np.int64) * SPAN + np.repeat(t // regions, txn_rows) * txn_rows + np.tile(
            np.arange(txn_rows), len(t))
        starts = np.repeat(ts + 1 + 2 * (t - lo), txn_rows).astype(np.uint64)
        commits = starts + np.uint64(1)
        keys = record_keys(handles)
        vals = values[np.arange(n) % len(values)]
        pre = encode_rows(PREWRITE, starts, None, keys, vals)
        com = encode_rows(COMMIT, starts, commits, keys, vals)
        msg: list[tuple[int, int]] = []
        for mat in (pre, com):
            for j in range(len(t)):
                r = int(t[j] % regions)
                feed.blocks[r].append(mat[j * txn_rows:(j + 1) * txn_rows].tobytes())
                msg.append((r, len(feed.blocks[r]) - 1))
        feed.plan.append(msg)
        ts += 2 * len(t)
        if not resolved_txns or hi >= resolved_at or hi == txns:
            feed.resolved_after.append(ts)
            resolved_at = hi + resolved_txns
        else:
            feed.resolved_after.append(0)
        feed.rows += 2 * n
        feed.committed += n
    feed.last_ts = ts
    return feed


def copy_feed(rows: int, regions: int, batch: int, base_ts: int) -> Feed:
    """An initial scan: ``rows`` COMMITTED rows spread over the regions, events of at most
    ``batch`` rows and CDC_EVENT_MAX_BYTES per region, then INITIALIZED; then one resolved ts
    past every commit. Messages carry the regions' events in turn, as a store's scans
    interleave, packed as TiKV's EventBatcher packs them (CDC_EVENT_MAX_COUNT, CDC_RESP_MAX_BYTES)."""
    feed = Feed(regions)
    feed.initial = True
    per = -(-rows // regions)
    values, v = _values_and_v(min(rows, 65536), 13)
    one = encode_rows(COMMITTED, np.full(1, base_ts + 1, np.uint64), np.full(1, base_ts + 2, np.uint64),
                      record_keys(np.zeros(1, np.int64)), values[:1])  # (every row of the feed is this long)
    batch = max(1, min(batch, CDC_EVENT_MAX_BYTES // one.shape[1]))
    ts = base_ts
    for r in range(regions):
        n = max(0, min(per, rows - r * per))  # fewer rows than regions: the last regions are empty
        feed.region_rows.append(n)
        full, tail = divmod(n, len(v))  # row i of a region has value i % len(values)
        feed.v_sum = (feed.v_sum + full * int(v.sum()) + int(v[:tail].sum())) % (1 << 64)
        for lo in range(0, n, batch):
            k = min(batch, n - lo)
            handles = r * SPAN + np.arange(lo, lo + k, dtype=np.int64)
            starts = np.full(k, ts + 1, np.uint64) + np.arange(k, dtype=np.uint64) % np.uint64(1000) * np.uint64(2)
            mat = encode_rows(COMMITTED, starts, starts + np.uint64(1), record_keys(handles),
                              values[np.arange(lo, lo + k) % len(values)])
            feed.blocks[r].append(mat.tobytes())
        feed.blocks[r].append(INITIALIZED_ROW)
        feed.rows += n
        feed.committed += n
    most = max(len(b) for b in feed.blocks)
    msg: list[tuple[int, int]] = []
    size = 0
    for j in range(most):
        for r in range(regions):
            if j >= len(feed.blocks[r]):
                continue
            block = len(feed.blocks[r][j]) + 16  # (the event's region id, index and request id)
            if msg and (len(msg) == CDC_EVENT_MAX_COUNT or size + block > CDC_RESP_MAX_BYTES):
                feed.plan.append(msg)
                feed.resolved_after.append(0)
                msg, size = [], 0
            msg.append((r, j))
            size += block
    feed.plan.append(msg)
    feed.resolved_after.append(0)
    feed.last_ts = ts + 2000
    feed.resolved_after[-1] = feed.last_ts
    return feed


class Rig:
    """PD + TiKV stores + TiDB status port on loopback, serving one Feed at a time."""

    def __init__(self, regions: int) -> None:
        self.regions = regions
        self.region_ids = list(range(1, regions + 1))
        self.feed: Feed | None = None
        self.live: queue.Queue[bytes | None] | None = None  # a feed written as it goes (latency)
        self.first_send = self.last_send = 0.0
        self.safe_points: dict[bytes, int] = {}
        self._mu = threading.Lock()
        self._ts = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                                  options=[("grpc.max_send_message_length", 256 << 20)])
        pdpb_pb2_grpc.add_PDServicer_to_server(_PD(self), self.server)
        handler = grpc.stream_stream_rpc_method_handler(self._event_feed, request_deserializer=
                                                        cdcpb_pb2.ChangeDataRequest.FromString, response_serializer=None)
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("cdcpb.ChangeData",
                                                                                   {"EventFeed": handler})])
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"
        self.server.start()
        info = table_info()
        rig = self

        class Status(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0].rstrip("/")
                body: Any = {"/schema": [{"id": 1, "db_name": {"O": DB, "L": DB}, "state": 5}],
                             f"/schema/{DB}": [info], f"/schema/{DB}/{TABLE}": info, "/ddl/history": []}.get(path)
                data = json.dumps(body).encode()
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Status)
        self.http.daemon_threads = True
        self.status = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        del rig

    def get_ts(self, count: int = 1) -> int:
        with self._mu:
            self._ts = max(self._ts + count, int(time.time() * 1000) << LOGICAL_BITS)
            return self._ts

    def bounds(self) -> list[bytes]:
        """The boundaries between the regions, in key order (region i is [bounds[i-1], bounds[i]))."""
        if getattr(self, "_bounds", None) is None:
            self._bounds = [region_bound(i, self.regions) for i in range(1, self.regions)]
        return self._bounds

    def meta_region(self, i: int) -> metapb_pb2.Region:
        return metapb_pb2.Region(id=i + 1, start_key=region_bound(i, self.regions), end_key=region_bound(i + 1, self.regions),
                                 region_epoch=metapb_pb2.RegionEpoch(conf_ver=1, version=1),
                                 peers=[metapb_pb2.Peer(id=1000 + i, store_id=1)])

    def _event_feed(self, requests: Iterator[cdcpb_pb2.ChangeDataRequest], context: Any) -> Iterator[bytes]:
        registered: dict[int, int] = {}  # region index -> request id
        unanswered: list[int] = []  # registered, INITIALIZED not sent yet
        arrived = threading.Condition()

        def read() -> None:
            try:
                for req in requests:
                    if req.WhichOneof("request") in (None, "register"):
                        with arrived:
                            registered[int(req.region_id) - 1] = int(req.request_id)
                            unanswered.append(int(req.region_id) - 1)
                            arrived.notify_all()
            except grpc.RpcError:
                return  # the client ended the stream

        threading.Thread(target=read, daemon=True).start()
        feed = self.feed
        if self.live is not None or (feed is not None and not feed.initial):
            # an empty table: each registration is answered with INITIALIZED as it comes, as TiKV
            # answers one whose scan found nothing, so a client pacing its registrations by the
            # scans in flight (capture's --scan-limit) goes on; the rows follow once all are in
            answered = 0
            while answered < self.regions:
                with arrived:
                    if not arrived.wait_for(lambda: unanswered, timeout=60):
                        return
                    # (a batch gathers what comes within 50 ms: registrations arrive one by one,
                    # and a message each would make the registration's cost the messages')
                    want = min(INITIALIZED_AT_ONCE, self.regions - answered)
                    arrived.wait_for(lambda: len(unanswered) >= want, timeout=0.05)
                    batch, unanswered[:] = unanswered[:INITIALIZED_AT_ONCE], unanswered[INITIALIZED_AT_ONCE:]
                yield b"".join(event_bytes(r + 1, 0, registered[r], INITIALIZED_ROW) for r in batch)
                answered += len(batch)
        else:  # the copy's plan interleaves every region's scan: capture registers them all at
            # once (run with --scan-limit at least the regions: _capture_cmd)
            with arrived:
                arrived.wait_for(lambda: len(registered) == self.regions, timeout=60)
        if self.live is not None:
            yield from self._follow(self.live, registered, context)
            return
        assert feed is not None
        index = [0] * self.regions
        self.first_send = time.monotonic()
        for m, msg in enumerate(feed.plan):
            parts = []
            for r, j in msg:
                index[r] += 1
                parts.append(event_bytes(r + 1, index[r], registered[r], feed.blocks[r][j]))
            if feed.resolved_after[m]:
                parts.append(resolved_bytes(self.region_ids, feed.resolved_after[m]))
            yield b"".join(parts)
        self.last_send = time.monotonic()
        while context.is_active():
            time.sleep(0.1)

    def _follow(self, live: queue.Queue[Any], registered: dict[int, int], context: Any) -> Iterator[bytes]:
        """The latency feed: messages built as the workload commits, request ids patched in.
        Ends at the feed's end (None, put back for any other stream following it) or when the
        client has gone (a stream capture replaced, or a capture stopped): a stream left waiting
        on the queue kept its server thread, and the process waited for it at exit forever
        (issue 54: test_bench_smoke's delta_publish.py timed out after its JSON line)."""
        index = [0] * self.regions
        while True:
            try:
                item = live.get(timeout=0.2)
            except queue.Empty:
                if not context.is_active():
                    return
                continue
            if item is None:
                live.put(None)
                return
            parts = []
            for r, payload in item:  # type: ignore[misc]
                if r < 0:
                    parts.append(payload)
                    continue
                index[r] += 1
                parts.append(event_bytes(r + 1, index[r], registered[r], payload))
            yield b"".join(parts)

    def close(self) -> None:
        self.server.stop(0)
        self.http.shutdown()


class _PD(pdpb_pb2_grpc.PDServicer):
    def __init__(self, rig: Rig) -> None:
        self.rig = rig

    def _h(self) -> pdpb_pb2.ResponseHeader:
        return pdpb_pb2.ResponseHeader(cluster_id=CLUSTER_ID)

    def GetMembers(self, request: Any, context: Any) -> Any:  # noqa: N802
        m = pdpb_pb2.Member(name="pd-0", member_id=1, client_urls=[f"http://{self.rig.address}"])
        return pdpb_pb2.GetMembersResponse(header=self._h(), members=[m], leader=m, etcd_leader=m)

    def Tso(self, request_iterator: Any, context: Any) -> Any:  # noqa: N802
        for req in request_iterator:
            ts = self.rig.get_ts(max(1, req.count))
            yield pdpb_pb2.TsoResponse(header=self._h(), count=max(1, req.count), timestamp=pdpb_pb2.Timestamp(
                physical=ts >> LOGICAL_BITS, logical=ts & ((1 << LOGICAL_BITS) - 1)))

    def GetStore(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pdpb_pb2.GetStoreResponse(header=self._h(), store=metapb_pb2.Store(
            id=1, address=self.rig.address, state=metapb_pb2.Up, version="8.5.0", node_state=metapb_pb2.Serving))

    def ScanRegions(self, request: Any, context: Any) -> Any:  # noqa: N802
        # as PD answers: from the region holding start_key, up to limit (0: all) and end_key. (It
        # answered every region to every call: at 100,000 regions a call took longer than a PD
        # call's deadline on a loaded machine, and capture gave up.)
        bounds = self.rig.bounds()
        first = bisect.bisect_right(bounds, bytes(request.start_key))
        last = self.rig.regions if not request.limit else min(self.rig.regions, first + request.limit)
        if request.end_key:
            last = min(last, bisect.bisect_left(bounds, bytes(request.end_key)) + 1)
        regions = [pdpb_pb2.Region(region=self.rig.meta_region(i), leader=self.rig.meta_region(i).peers[0])
                   for i in range(first, last)]
        return pdpb_pb2.ScanRegionsResponse(header=self._h(), regions=regions)

    def GetGCSafePoint(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pdpb_pb2.GetGCSafePointResponse(header=self._h(), safe_point=0)

    def UpdateServiceGCSafePoint(self, request: Any, context: Any) -> Any:  # noqa: N802
        return pdpb_pb2.UpdateServiceGCSafePointResponse(header=self._h(), service_id=request.service_id,
                                                         min_safe_point=0, TTL=request.TTL)


THEFLASH = [sys.executable, "-m", "pyspark_theflash"]


def run_measured(cmd: list[str], out: Any) -> tuple[int, float, float]:
    """Run ``cmd`` to its end: (exit code, its peak RSS in MiB, its CPU seconds, user + system).
    The peak is the kernel's high-water mark of the program's own memory (VmHWM in
    /proc/PID/status, polled until it exits), not rusage's ru_maxrss, which also counts the pages
    the child shared with this process between fork and exec (this process holds the
    pre-encoded feeds: gigabytes). Its CPU is the child's own rusage (``os.wait4``): less
    disturbed than a rate by whatever else the machine runs."""
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    peak_kib = 0
    status_file = Path(f"/proc/{proc.pid}/status")
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            for line in status_file.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kib = max(peak_kib, int(line.split()[1]))
        except (OSError, ValueError):
            pass  # it exited between the poll and the read: its peak is the last one read
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)  # (reaped here: Popen must not wait again)
    return proc.returncode, peak_kib / 1024, usage.ru_utime + usage.ru_stime


def run_capture(rig: Rig, feed: Feed, binlog: Path, log: Path) -> dict[str, float]:
    rig.feed, rig.live = feed, None
    rig.first_send = rig.last_send = 0.0
    cmd = THEFLASH + ["capture", "--pd", rig.address, "--tidb", rig.status, "--binlog", str(binlog),
                      "--until-ts", str(feed.last_ts), "--resolve-locks-after", "0"]
    if feed.initial:  # the copy's plan interleaves every region's scan: every region registered at once
        cmd += ["--scan-limit", str(max(rig.regions, 1))]
    with log.open("wb") as out:
        code, rss_mb, cpu_s = run_measured(cmd, out)
    ended = time.monotonic()
    if code != 0:
        raise SystemExit(f"capture failed:\n{log.read_text()[-3000:]}")
    took = ended - rig.first_send
    return {"s": took, "rows_per_s": feed.rows / took, "committed_per_s": feed.committed / took, "rss_mb": rss_mb,
            "cpu_us_per_row": cpu_s * 1e6 / max(feed.committed, 1)}


def run_writer(binlog: Path, store: Path, log: Path, committed: int, extra: Sequence[str] = ()) -> dict[str, float]:
    """``writer run --until-caught-up`` on a fresh store (``extra``: more of its options)."""
    from writer import _logged_seconds  # bench/writer.py: the writer's first log line to its last

    shutil.rmtree(store, ignore_errors=True)
    cmd = THEFLASH + ["writer", "run", "--binlog", binlog.as_uri(), "--store", str(store), "--until-caught-up",
                      "--log", str(log), *extra]
    started = time.monotonic()
    with (log.parent / (log.name + ".out")).open("wb") as out:
        code, rss_mb, _cpu = run_measured(cmd, out)
    wall = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"writer failed:\n{(log.parent / (log.name + '.out')).read_text()[-3000:]}")
    apply_s = _logged_seconds(log)
    return {"wall_s": wall, "apply_s": apply_s, "committed_per_s": committed / max(apply_s, 1e-6), "rss_mb": rss_mb}


def check_copy(store: Path, feed: Feed) -> str:
    """The store's table at the copy's last ts against the feed: every handle once, and the sum
    of column v. Raises SystemExit on a difference; returns what was compared."""
    from pyspark_theflash.store import Store

    with Store.open(str(store), readonly=True) as s:
        got = s.scan_table(f"{DB}.{TABLE}", feed.last_ts, columns=["id", "v"])
    ids = np.sort(got.column("id").to_numpy())
    want = np.concatenate([r * SPAN + np.arange(n, dtype=np.int64) for r, n in enumerate(feed.region_rows)])
    if not np.array_equal(ids, want):
        raise SystemExit(f"the copied table differs: {len(ids):,} rows read, {len(want):,} copied")
    v_sum = int(got.column("v").to_numpy().astype(np.uint64).sum(dtype=np.uint64))
    if v_sum != feed.v_sum:
        raise SystemExit(f"the copied table's values differ: sum(v) {v_sum} != {feed.v_sum}")
    return f"{len(ids):,} rows read back equal (every handle once, sum(v) equal)"


def min_resolved(store: Path, regions: int) -> int:
    """The least resolved ts of the store's live regions (0 before the writer holds ``regions`` of
    them): one SQL statement on a fresh read of the manifest, as a reader's view is. Every region
    of the rig holds the bench's one table, so this is the ts ``table_resolved_ts`` gives (checked
    against it once a run, ``check_readable``) without a Python step per region: the probe runs in
    the rig's process, and walking 10,000 regions every few ms took most of that process's samples
    and the GIL from the rig's senders."""
    path = store / MANIFEST_FILE
    if not path.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
            live, least = conn.execute(
                "SELECT count(*), min(resolved_ts) FROM regions WHERE state = 'normal'").fetchone()
    except sqlite3.Error:  # (the writer creating the manifest)
        return 0
    return int(least) if live >= regions and least is not None else 0


def check_readable(store: Path, ts: int) -> None:
    """The product's own answer agrees with the probe: a read planned from the store alone would
    take ``ts``, with no key range of the table missing."""
    from pyspark_theflash.scan.resolved import table_resolved_ts
    from pyspark_theflash.store import Store

    s = Store.open(str(store), readonly=True)
    try:
        with s.snapshot() as view:
            got = table_resolved_ts(view, view.table(TABLE_ID), f"{DB}.{TABLE}")
    finally:
        s.close()
    if got.ts < ts or got.gaps:
        raise SystemExit(f"the probe said readable at {ts}, the store's own resolved ts is {got.ts} (gaps {got.gaps})")


def plan_reads(store: Path, runs: int = 12) -> dict[str, float]:
    """Planning a read of the table (``scan.planner.plan``, before the first byte is read): the
    store opened, its regions listed, each region's resolved ts checked against the read's ts,
    its parts and bytes found, the partitions grouped by bytes. ``snapshot=resolved``: at the
    newest ts every region resolved, with no call upstream (the rig has no read index)."""
    from pyspark_theflash.scan.planner import plan

    took: list[float] = []
    partitions = 0
    for _ in range(runs):
        began = time.perf_counter()
        result = plan(str(store), f"{DB}.{TABLE}", {"snapshot": "resolved"})
        took.append(time.perf_counter() - began)
        partitions = len(result.partitions)
    return {"median_ms": round(statistics.median(took) * 1000, 1), "best_ms": round(min(took) * 1000, 1),
            "runs": runs, "partitions": partitions}


def start_writer(binlog: Path, store: Path, log: Path, extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    return subprocess.Popen(THEFLASH + ["writer", "run", "--binlog", binlog.as_uri(), "--store", str(store),
                                        "--interval", "20ms", "--flush-interval", "50ms", *extra],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


def run_together(rig: Rig, feed: Feed, work: Path) -> dict[str, float]:
    """Capture and writer at once, until the store's regions are all resolved past the feed."""
    binlog, store = work / "together-binlog", work / "together-store"
    rig.feed, rig.live = feed, None
    rig.first_send = 0.0
    capture = subprocess.Popen(THEFLASH + ["capture", "--pd", rig.address, "--tidb", rig.status, "--binlog",
                                           str(binlog), "--resolve-locks-after", "0"],
                               stdout=(work / "together-capture.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        while not binlog.is_dir():
            time.sleep(0.02)
        writer = start_writer(binlog, store, work / "together-writer.log")
        try:
            deadline = time.monotonic() + 1800
            while min_resolved(store, rig.regions) < feed.last_ts:
                if time.monotonic() > deadline or capture.poll() is not None or writer.poll() is not None:
                    raise SystemExit("capture + writer did not make the feed readable")
                time.sleep(0.05)
            took = time.monotonic() - rig.first_send
            check_readable(store, feed.last_ts)
        finally:
            writer.terminate()
            writer.wait(60)
    finally:
        capture.terminate()
        capture.wait(60)
    return {"s": took, "committed_per_s": feed.committed / took}


def run_latency(rig: Rig, work: Path, rate: float, seconds: float, txn_rows: int, resolved_every: float,
                probes_per_s: float = 10.0, writer_args: Sequence[str] = (), name: str = "latency",
                sample: Callable[[Path], None] | None = None) -> dict[str, float]:
    """Commits at ``rate``/s written as they happen; probes: COMMIT sent -> store resolved past it.
    ``writer_args``: more options of the writer; ``sample(store)``, when given, is called
    ``probes_per_s`` times a second from another thread while the clock runs."""
    binlog, store = work / f"{name}-binlog", work / f"{name}-store"
    rig.feed, rig.live = None, queue.Queue()
    live = rig.live
    capture = subprocess.Popen(THEFLASH + ["capture", "--pd", rig.address, "--tidb", rig.status, "--binlog",
                                           str(binlog), "--resolve-locks-after", "0"],
                               stdout=(work / f"{name}-capture.log").open("wb"), stderr=subprocess.STDOUT)
    writer = None
    lat: list[float] = []
    try:
        while not binlog.is_dir():
            time.sleep(0.02)
        writer = start_writer(binlog, store, work / f"{name}-writer.log", writer_args)
        first = rig.get_ts()
        deadline = time.monotonic() + 120
        # the first resolved ts (regions initialised, writer applying) before the clock starts
        while min_resolved(store, rig.regions) < first:
            live.put([(-1, resolved_bytes(rig.region_ids, rig.get_ts()))])
            time.sleep(0.1)
            if time.monotonic() > deadline:
                raise SystemExit("the latency feed never became readable")
        values = _values(txn_rows * 256, 17)
        sent: list[tuple[float, int]] = []  # (when a COMMIT was sent, its commit ts)
        stop = threading.Event()

        def produce() -> None:
            t = 0
            tick = 0.01
            began = time.monotonic()
            last_resolved = began
            while not stop.is_set():
                due = int((time.monotonic() - began) * rate) - t
                msg: list[tuple[int, bytes]] = []
                if due > 0:
                    ts0 = rig.get_ts(2 * due)
                    tt = np.arange(t, t + due)
                    region = np.repeat(tt % rig.regions, txn_rows)
                    handles = region.astype(np.int64) * SPAN + np.repeat(tt // rig.regions, txn_rows) * txn_rows + \
                        np.tile(np.arange(txn_rows), due)
                    starts = np.repeat(ts0 - 2 * due + 1 + 2 * np.arange(due), txn_rows).astype(np.uint64)
                    keys = record_keys(handles)
                    vals = values[np.arange(len(handles)) % len(values)]
                    pre = encode_rows(PREWRITE, starts, None, keys, vals)
                    com = encode_rows(COMMIT, starts, starts + np.uint64(1), keys, vals)
                    for mat in (pre, com):
                        for j in range(due):
                            msg.append((int(tt[j] % rig.regions), mat[j * txn_rows:(j + 1) * txn_rows].tobytes()))
                    t += due
                    sent.append((time.monotonic(), ts0))
                now = time.monotonic()
                if now - last_resolved >= resolved_every:
                    msg.append((-1, resolved_bytes(rig.region_ids, rig.get_ts())))
                    last_resolved = now
                if msg:
                    live.put(msg)
                time.sleep(tick)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()

        def sampling() -> None:
            assert sample is not None
            while not stop.is_set():
                sample(store)
                time.sleep(1 / probes_per_s)

        sampler = threading.Thread(target=sampling, daemon=True) if sample is not None else None
        if sampler is not None:
            sampler.start()
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            time.sleep(1 / probes_per_s)
            if not sent:
                continue
            at, cts = sent[-1]
            while min_resolved(store, rig.regions) < cts:
                if time.monotonic() - at > 30:
                    raise SystemExit("a commit did not become readable within 30 s")
                time.sleep(0.005)
            lat.append((time.monotonic() - at) * 1000)
        stop.set()
        if lat:
            check_readable(store, cts)  # the last probe's
        producer.join()
        if sampler is not None:
            sampler.join()
        live.put(None)
    finally:
        if writer is not None:
            writer.terminate()
            writer.wait(60)
        capture.terminate()
        capture.wait(60)
    lat.sort()
    return {"p50_ms": lat[len(lat) // 2], "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))], "probes": len(lat)}


def store_apply(rows: int, two_phase: bool) -> float:
    """bench/ingest.py --skip-delta in the same run: the store alone applying columnar batches."""
    cmd = [sys.executable, str(ROOT / "bench" / "ingest.py"), "--skip-delta", "--rows", str(rows),
           "--keys", str(max(rows // 2, 1000)), "--batch", str(min(50_000, max(rows // 2, 1000)))]
    if two_phase:
        cmd += ["--two-phase", "--txn-rows", "100"]  # (ingest checks the first event holds >= 25 rows)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"bench/ingest.py failed:\n{done.stderr[-3000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["theflash_rows_per_s"])


def sweep(counts: list[int], args: argparse.Namespace) -> int:
    """Capture's live rate and its memory per region at each region count: the rate of
    ``--txns`` 10-row transactions spread over the regions (TiKV's batching: ``--block``
    transactions of many regions per message, a resolved ts of every region each
    ``--resolved-txns``), and the peak RSS of a capture whose regions are all registered and
    idle (one message of rows), per region beyond the first count's (the process's own memory is
    the first count's RSS). Beside them the store's own apply rate."""
    fig: dict[str, Any] = {"bench": "capture_ceiling_sweep", "txns": args.txns, "block": args.block,
                           "resolved_txns": args.resolved_txns,
                           "store_apply_2pc_rows_per_s": round(store_apply(max(args.txns * 10, 2000), True))}
    print(f"store alone (bench/ingest.py): 2PC {fig['store_apply_2pc_rows_per_s']:,} committed rows/s (the baseline)",
          flush=True)
    print(f"{'regions':>8} {'committed rows/s':>17} {'x store':>8} {'CPU a row':>10} {'peak RSS idle':>14} "
          f"{'per region':>11}", flush=True)
    first: tuple[int, float] | None = None  # (regions, idle RSS) of the first count: the process's own
    for n in counts:
        work = Path(tempfile.mkdtemp(prefix="theflash-bench-sweep-"))
        rig = Rig(n)
        try:
            base = rig.get_ts() - (1 << 30)
            idle = live_feed(min(args.block, n), 10, n, args.block, base)
            rest = run_capture(rig, idle, work / "idle-binlog", work / "idle.log")
            del idle
            feed = live_feed(args.txns, 10, n, args.block, base, args.resolved_txns)
            live = run_capture(rig, feed, work / "live-binlog", work / "live.log")
        finally:
            rig.close()
            shutil.rmtree(work, ignore_errors=True)
        ratio = live["committed_per_s"] / fig["store_apply_2pc_rows_per_s"]
        # memory per region: what the regions beyond the first count's added to the idle RSS
        per = (rest["rss_mb"] - first[1]) * 1024 / (n - first[0]) if first and n > first[0] else None
        first = first or (n, rest["rss_mb"])
        fig[f"regions_{n}"] = {"committed_per_s": round(live["committed_per_s"]), "ratio_to_store": round(ratio, 3),
                               "capture_cpu_us_per_row": round(live["cpu_us_per_row"], 2),
                               "idle_rss_mb": round(rest["rss_mb"]),
                               "idle_rss_kib_per_region": round(per, 2) if per is not None else None}
        shown = f"{per:>7,.1f} KiB" if per is not None else "      -"
        print(f"{n:>8,} {live['committed_per_s']:>17,.0f} {ratio:>8.3f} {live['cpu_us_per_row']:>7.2f} us "
              f"{rest['rss_mb']:>11,.0f} MiB {shown}", flush=True)
    print(json.dumps(fig))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txns", type=int, default=200_000, help="10-row transactions of the live feed")
    parser.add_argument("--big-txns", type=int, default=20_000, help="100-row transactions of the second live feed")
    parser.add_argument("--together-txns", type=int, default=None,
                        help="10-row transactions of the capture + writer run (default: --txns; 2000000 for ~60 s)")
    parser.add_argument("--copy-rows", type=int, default=2_000_000, help="rows of the initial scan")
    parser.add_argument("--regions", type=int, default=8)
    parser.add_argument("--block", type=int, default=64, help="transactions per feed message")
    parser.add_argument("--resolved-txns", type=int, default=0,
                        help="transactions between the live feeds' resolved ts, each listing every region "
                             "(0: after every message; the regions issue measured 5000)")
    parser.add_argument("--latency-rate", type=float, default=5000.0, help="commits/s of the latency run")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--resolved-every", type=float, default=0.05, help="s between the latency feed's resolved ts")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: live,big,writer,plan,together,copy,latency")
    parser.add_argument("--sweep", default="",
                        help="comma-separated region counts (e.g. 8,1000,10000,100000): for each, live capture of "
                             "--txns 10-row txns and capture's peak RSS with every region registered and idle; "
                             "then the other parts are skipped")
    args = parser.parse_args()
    if args.together_txns is None:
        args.together_txns = args.txns
    skip = set(filter(None, args.skip.split(",")))

    if args.sweep:
        return sweep([int(n) for n in args.sweep.split(",")], args)
    work = Path(tempfile.mkdtemp(prefix="theflash-bench-ceiling-"))
    rig = Rig(args.regions)
    fig: dict[str, Any] = {"bench": "capture_ceiling", "txns": args.txns, "regions": args.regions,
                           "resolved_txns": args.resolved_txns}
    try:
        base = rig.get_ts() - (1 << 30)  # below PD's clock: the DDL frontier never holds the feed back
        built = time.monotonic()
        small = live_feed(args.txns, 10, args.regions, args.block, base, args.resolved_txns)
        big = live_feed(args.big_txns, 100, args.regions, max(1, args.block // 10), base, args.resolved_txns)
        copy = copy_feed(args.copy_rows, args.regions, 1024, base)
        print(f"feeds encoded in {time.monotonic() - built:.1f}s (not timed): {small.rows} + {big.rows} live rows, "
              f"{copy.rows} copy rows", flush=True)
        fig["store_apply_2pc_rows_per_s"] = round(store_apply(max(args.txns * 10, 2000), True))
        fig["store_apply_committed_rows_per_s"] = round(store_apply(max(args.copy_rows, 2000), False))
        print(f"store alone (bench/ingest.py): 2PC {fig['store_apply_2pc_rows_per_s']:,} committed rows/s, "
              f"1PC/COMMITTED {fig['store_apply_committed_rows_per_s']:,} rows/s (the baselines)", flush=True)
        if "live" not in skip:
            r = run_capture(rig, small, work / "live-binlog", work / "live.log")
            fig["capture_10row_committed_per_s"] = round(r["committed_per_s"])
            fig["capture_10row_feed_rows_per_s"] = round(r["rows_per_s"])
            print(f"capture, 10-row txns:   {r['committed_per_s']:>12,.0f} committed rows/s "
                  f"({r['rows_per_s']:,.0f} feed rows/s, {r['s']:.1f}s; target 500k)", flush=True)
            if "writer" not in skip:
                w = run_writer(work / "live-binlog", work / "live-store", work / "live-writer.log", small.committed)
                fig["writer_alone_committed_per_s"] = round(w["committed_per_s"])
                fig["writer_alone_ratio_to_store"] = round(w["committed_per_s"] / fig["store_apply_2pc_rows_per_s"], 3)
                print(f"writer alone on it:     {w['committed_per_s']:>12,.0f} committed rows/s from its first read "
                      f"({w['apply_s']:.1f}s; {w['wall_s']:.1f}s wall; {fig['writer_alone_ratio_to_store']}x the store "
                      "alone; target 1M)", flush=True)
                if "plan" not in skip:
                    p = plan_reads(work / "live-store")
                    fig["plan_ms_median"], fig["plan_ms_best"] = p["median_ms"], p["best_ms"]
                    fig["plan_partitions"] = p["partitions"]
                    print(f"planning a read of it:  {p['median_ms']:>9,.0f} ms median, {p['best_ms']:,.0f} ms best of "
                          f"{p['runs']} ({args.regions:,} regions in {p['partitions']} partitions sized by bytes; "
                          "snapshot=resolved; target 200 ms)", flush=True)
        if "big" not in skip:
            r = run_capture(rig, big, work / "big-binlog", work / "big.log")
            fig["capture_100row_committed_per_s"] = round(r["committed_per_s"])
            print(f"capture, 100-row txns:  {r['committed_per_s']:>12,.0f} committed rows/s ({r['s']:.1f}s)", flush=True)
        if "together" not in skip:
            together = small if args.together_txns == args.txns else \
                live_feed(args.together_txns, 10, args.regions, args.block, base, args.resolved_txns)
            r = run_together(rig, together, work)
            del together
            fig["together_committed_per_s"] = round(r["committed_per_s"])
            fig["together_s"] = round(r["s"], 1)
            print(f"capture + writer:       {r['committed_per_s']:>12,.0f} committed rows/s readable "
                  f"({r['s']:.1f}s; target 300k over 60 s: --together-txns 2000000)", flush=True)
        if "copy" not in skip:
            r = run_capture(rig, copy, work / "copy-binlog", work / "copy.log")
            fig["copy_capture_rows_per_s"] = round(r["rows_per_s"])
            w = run_writer(work / "copy-binlog", work / "copy-store", work / "copy-writer.log", copy.committed)
            fig["copy_writer_rows_per_s"] = round(w["committed_per_s"])
            fig["copy_writer_ratio_to_store"] = round(w["committed_per_s"] / fig["store_apply_committed_rows_per_s"], 3)
            fig["copy_rows"] = copy.rows
            fig["copy_capture_peak_rss_mb"], fig["copy_writer_peak_rss_mb"] = round(r["rss_mb"]), round(w["rss_mb"])
            print(f"initial copy: capture   {r['rows_per_s']:>12,.0f} rows/s ({r['s']:.1f}s; target 1M); writer "
                  f"{w['committed_per_s']:,.0f} rows/s ({fig['copy_writer_ratio_to_store']}x the store alone; "
                  "target 800k)", flush=True)
            print(f"              peak RSS: capture {r['rss_mb']:,.0f} MiB, writer {w['rss_mb']:,.0f} MiB; "
                  f"{check_copy(work / 'copy-store', copy)}", flush=True)
        if "latency" not in skip:
            r = run_latency(rig, work, args.latency_rate, args.latency_seconds, 10, args.resolved_every)
            fig["latency_rate"] = args.latency_rate
            fig["latency_p50_ms"], fig["latency_p99_ms"] = round(r["p50_ms"], 1), round(r["p99_ms"], 1)
            print(f"commit -> readable at {args.latency_rate:g} commits/s: p50 {r['p50_ms']:.0f} ms, p99 "
                  f"{r['p99_ms']:.0f} ms ({r['probes']} probes; resolved ts every {args.resolved_every:g}s; "
                  "target p99 300 ms)", flush=True)
    except BaseException:
        print_log_tails(work)
        raise
    finally:
        rig.close()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
