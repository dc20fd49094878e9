"""The service form of the change log: ``BinlogService`` over gRPC, and its client.

Server: :func:`serve_binlog` serves a segment directory. ``Pull`` first answers with the
position it starts from (a response without events), then streams the events, then follows the
tail: it sleeps until the in-process :class:`SegmentWriter` signals an append (or, for a writer
in another process, re-checks every ``POLL_INTERVAL_S``) and ends cleanly on ``stop()``.
Each response carries every event's start and next position (``segments``, ``offsets``,
``next_offsets``) and ``next``: the position just after the last event examined, which moves past other regions'
events when a region filter is set.

Errors travel as status codes with the details in trailing metadata, and the client raises the
same error types as the file form: gone position -> OUT_OF_RANGE, corruption -> DATA_LOSS,
a foreign position -> INVALID_ARGUMENT.

Client: :class:`GrpcEventSource` pulls on a background thread into a bounded queue, begun by
the first read (a source opened for the log's head or tail pulls nothing); when the stream
breaks or ends (server restart) it reconnects with exponential backoff and resumes just after
the last event it received, so no event is lost or repeated.
"""
from __future__ import annotations

import collections
import functools
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import grpc
from google.protobuf.message import DecodeError

from pyspark_theflash.grpc_health import services_of
from pyspark_theflash.ports import bind_grpc, grpc_server
from pyspark_theflash.binlog.errors import (
    BinlogCorruptError,
    BinlogError,
    BinlogFormatError,
    BinlogPositionError,
    BinlogPositionGoneError,
    BinlogSourceError,
    BinlogTruncatedError,
    BinlogVersionError,
)
from pyspark_theflash.binlog.position import Position, PositionedEvent
from pyspark_theflash.binlog.segment import (FORMAT_VERSION, READ_VERSIONS, HeadTracker, RawRecord, SegmentReader,
                                             append_signal, segment_format_version, segment_path, tail)
from pyspark_theflash.binlog.source import EventSource
from pyspark_theflash.proto import binlog_pb2, binlog_pb2_grpc

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 256
MAX_RESPONSE_BYTES = 4 << 20  # split responses beyond this many event bytes
_FOLLOW_WAIT_S = 0.5  # a following stream re-checks that its client is still there this often
_UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
# A Status call (the log's head or tail) waits this long for the service: one that is starting,
# or a loaded machine's connection that failed its handshake, is waited for, not an error.
STATUS_TIMEOUT_S = 10.0


# ---------------------------------------------------------------------------------------------
# Errors across the wire.

_METADATA_PREFIX = "theflash-"


def _status_of(exc: BinlogError) -> tuple[grpc.StatusCode, list[tuple[str, str]]]:
    if isinstance(exc, BinlogPositionGoneError):
        return grpc.StatusCode.OUT_OF_RANGE, [
            ("error", "gone"), ("requested", str(exc.requested)), ("oldest", str(exc.oldest))
        ]
    if isinstance(exc, BinlogCorruptError):
        kind = "truncated" if isinstance(exc, BinlogTruncatedError) else "corrupt"
        return grpc.StatusCode.DATA_LOSS, [
            ("error", kind), ("path", str(exc.path)), ("offset", str(exc.offset)), ("reason", exc.reason)
        ]
    if isinstance(exc, BinlogFormatError):
        return grpc.StatusCode.FAILED_PRECONDITION, [("error", "format"), ("path", str(exc.path)), ("reason", exc.reason)]
    if isinstance(exc, BinlogPositionError):
        return grpc.StatusCode.INVALID_ARGUMENT, [("error", "position")]
    return grpc.StatusCode.INTERNAL, [("error", "binlog")]


def _abort(context: grpc.ServicerContext, exc: BinlogError) -> None:
    code, details = _status_of(exc)
    context.set_trailing_metadata(tuple((_METADATA_PREFIX + k, v) for k, v in details))
    context.abort(code, str(exc))


def _error_from(error: grpc.RpcError, address: str) -> BinlogError | None:
    """The binlog error a failed call reports, or None when it is a transport failure."""
    metadata = {
        k[len(_METADATA_PREFIX) :]: v
        for k, v in (error.trailing_metadata() or ())
        if k.startswith(_METADATA_PREFIX)
    }
    kind = metadata.get("error")
    message = f"{error.details()} (from binlog service {address})"
    if kind == "gone":
        return BinlogPositionGoneError(
            Position.parse(metadata["requested"]), Position.parse(metadata["oldest"]), f"binlog service {address}"
        )
    if kind in ("corrupt", "truncated"):
        cls = BinlogTruncatedError if kind == "truncated" else BinlogCorruptError
        return cls(metadata["path"], int(metadata["offset"]), metadata["reason"])
    if kind == "format":
        return BinlogFormatError(metadata["path"], metadata["reason"])
    if kind == "position":
        return BinlogPositionError(message)
    if kind == "binlog":
        return BinlogError(message)
    return None


# ---------------------------------------------------------------------------------------------
# Server.


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_EVENTS_TAG = b"\x0a"  # PullResponse.events: field 1, length-delimited


def _response(records: list[RawRecord], next_position: Position, directory: Path) -> binlog_pb2.PullResponse:
    """A response of the records' events as stored (their bytes are spliced in, not re-encoded),
    with the format version of the segments they come from."""
    response: binlog_pb2.PullResponse = binlog_pb2.PullResponse.FromString(
        b"".join(_EVENTS_TAG + _varint(len(r.payload)) + r.payload for r in records)
    )
    response.segments.extend([r.position.segment for r in records])
    response.offsets.extend([r.position.offset for r in records])
    response.next_offsets.extend([r.next.offset for r in records])
    response.next.segment, response.next.offset = next_position
    segments = {r.position.segment for r in records} or {next_position.segment}
    response.format_version = max(_format_version(directory, n) for n in segments)
    return response


@functools.lru_cache(maxsize=1024)
def _format_version_cached(directory: str, number: int) -> int:
    return segment_format_version(directory, number)


def _format_version(directory: Path, number: int) -> int:
    """A segment's format version (its header never changes: cached); the version this code
    writes for a segment not created yet (a stream's position at the head)."""
    try:
        return _format_version_cached(str(directory), number)
    except FileNotFoundError:
        return FORMAT_VERSION


def _responses(records: list[RawRecord], next_position: Position, directory: Path) -> Iterator[binlog_pb2.PullResponse]:
    """Responses of at most MAX_RESPONSE_BYTES of events each (at least one event each).
    A record whose checksum matched but which is no Event raises after those before it."""
    chunk: list[RawRecord] = []
    size = 0
    for record in records:
        if chunk and size + len(record.payload) > MAX_RESPONSE_BYTES:
            yield _checked_response(chunk, chunk[-1].next, directory)
            chunk, size = [], 0
        chunk.append(record)
        size += len(record.payload)
    yield _checked_response(chunk, next_position, directory)


def _checked_response(records: list[RawRecord], next_position: Position, directory: Path) -> binlog_pb2.PullResponse:
    try:
        return _response(records, next_position, directory)
    except DecodeError:
        pass
    for i, record in enumerate(records):  # find the culprit
        try:
            binlog_pb2.Event.FromString(record.payload)
        except DecodeError as exc:
            raise _NotAnEvent(records[:i], record, directory, exc) from None
    raise AssertionError("a response failed to parse although each of its events parses")


class _NotAnEvent(Exception):
    def __init__(self, good: list[RawRecord], bad: RawRecord, directory: Path, cause: Exception) -> None:
        self.good = good
        self.error = BinlogCorruptError(
            segment_path(directory, bad.position.segment), bad.position.offset,
            f"the checksum matches but the payload is not an Event ({cause})",
        )


class BinlogServicer(binlog_pb2_grpc.BinlogServiceServicer):
    """Serves one segment directory."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._head = HeadTracker(self.directory)
        self._head_lock = threading.Lock()
        self._stopping = threading.Event()
        self._streams: set[threading.Event] = set()
        self._streams_lock = threading.Lock()

    def open_streams(self) -> int:
        """How many Pull streams are open now."""
        with self._streams_lock:
            return len(self._streams)

    def stop_streams(self) -> None:
        """End every Pull stream cleanly (they return; clients see the stream end)."""
        self._stopping.set()
        with self._streams_lock:
            for done in self._streams:
                done.set()
        append_signal(self.directory).notify()

    def Pull(self, request: binlog_pb2.PullRequest, context: grpc.ServicerContext) -> Iterator[binlog_pb2.PullResponse]:
        start = Position.from_proto(getattr(request, "from")) if request.HasField("from") else None
        region_ids = frozenset(request.region_ids) or None
        max_batch = request.max_batch or DEFAULT_MAX_BATCH
        done = threading.Event()
        with self._streams_lock:
            if self._stopping.is_set():
                context.abort(grpc.StatusCode.UNAVAILABLE, "the binlog service is shutting down")
            self._streams.add(done)
        def wake() -> None:
            done.set()
            append_signal(self.directory).notify()

        context.add_callback(wake)
        reader: SegmentReader | None = None
        try:
            try:
                reader = SegmentReader(self.directory, start)
            except BinlogError as exc:
                _abort(context, exc)
            assert reader is not None
            sent = reader.position
            yield _response([], sent, self.directory)  # where this stream starts
            while not done.is_set() and context.is_active():
                try:
                    records = reader.read_raw(max_batch, _FOLLOW_WAIT_S, region_ids, stop=done, eager=True)
                except BinlogError as exc:
                    _abort(context, exc)
                if records or reader.position != sent:
                    sent = reader.position
                    try:
                        yield from _responses(records, sent, self.directory)
                    except _NotAnEvent as damaged:
                        if damaged.good:
                            yield _response(damaged.good, damaged.good[-1].next, self.directory)
                        _abort(context, damaged.error)
        finally:
            with self._streams_lock:
                self._streams.discard(done)
            if reader is not None:
                reader.close()

    def Status(self, request: binlog_pb2.StatusRequest, context: grpc.ServicerContext) -> binlog_pb2.StatusResponse:
        try:
            with self._head_lock:
                head = self._head.head()
            return binlog_pb2.StatusResponse(head=head.to_proto(), tail=tail(self.directory).to_proto())
        except BinlogError as exc:
            _abort(context, exc)
            raise  # unreachable: abort raises

    def close(self) -> None:
        with self._head_lock:
            self._head.close()


class BinlogServer:
    """A running ``BinlogService``: ``.port``, ``.address`` (host:port), ``.url`` and ``.stop()``."""

    def __init__(self, server: grpc.Server, servicer: BinlogServicer, host: str, port: int) -> None:
        self._server = server
        self.servicer = servicer
        self.host = host
        self.port = port
        self.address = f"{host}:{port}"
        self.url = f"grpc://{self.address}"
        self.directory = servicer.directory

    def stop(self, grace_s: float = 1.0) -> None:
        """End streams cleanly, then stop accepting calls; returns once the server is down."""
        self.servicer.stop_streams()
        self._server.stop(grace_s).wait()
        self.servicer.close()

    def wait_for_termination(self, timeout_s: float | None = None) -> bool:
        return bool(self._server.wait_for_termination(timeout_s))

    def __enter__(self) -> "BinlogServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_binlog(directory: Path | str, host: str = "127.0.0.1", port: int = 0, max_workers: int = 32) -> BinlogServer:
    """Serve the segment directory ``directory`` on ``host:port`` (port 0: the OS chooses).
    Each following Pull stream holds one of ``max_workers`` threads while it is open."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BinlogSourceError(f"binlog directory {directory} does not exist (or is not a directory)")
    server = grpc_server(max_workers, "binlog-service", services_of(binlog_pb2), _UNLIMITED)
    servicer = BinlogServicer(directory)
    binlog_pb2_grpc.add_BinlogServiceServicer_to_server(servicer, server)
    bound = bind_grpc(server, "the binlog service", host, port)
    server.start()
    log.info("binlog service for %s listening on %s:%d", directory, host, bound)
    return BinlogServer(server, servicer, host, bound)


# ---------------------------------------------------------------------------------------------
# Client.


class _Chunk(NamedTuple):
    events: list[PositionedEvent]
    next: Position


class GrpcEventSource(EventSource):
    """Events from a ``BinlogService``, pulled by a background thread that reconnects."""

    def __init__(
        self,
        address: str,
        position: Position | None = None,
        region_ids: Iterable[int] | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        backoff_s: tuple[float, float] = (0.05, 2.0),
        queue_chunks: int = 64,
        status_timeout_s: float = STATUS_TIMEOUT_S,
    ) -> None:
        self.address = address
        self.url = f"grpc://{address}"
        self._region_ids = sorted(set(region_ids)) if region_ids else []
        self._max_batch = max_batch
        self._backoff = backoff_s
        self._status_timeout_s = status_timeout_s
        self._channel = grpc.insecure_channel(
            address,
            options=[
                *_UNLIMITED,
                ("grpc.initial_reconnect_backoff_ms", int(backoff_s[0] * 1000)),
                ("grpc.min_reconnect_backoff_ms", int(backoff_s[0] * 1000)),
                ("grpc.max_reconnect_backoff_ms", int(backoff_s[1] * 1000)),
            ],
        )
        self._stub = binlog_pb2_grpc.BinlogServiceStub(self._channel)
        self._queue: queue.Queue[_Chunk | BinlogError] = queue.Queue(maxsize=queue_chunks)
        self._pending: collections.deque[PositionedEvent] = collections.deque()
        self._pending_next: Position | None = None
        self._position = position  # after the last event delivered by read()
        self._resume = position  # after the last event received from the server
        self._error: BinlogError | None = None
        self._closed = threading.Event()
        self._call: grpc.Future | None = None
        self._call_lock = threading.Lock()
        self.reconnects = 0
        # Begun by the first read: a source opened only for the log's head or tail (the writer's
        # check before it says it is up, its snapshot bootstrap) would otherwise pull the log
        # from its oldest event into the queue, and the service read its segments, for nothing.
        self._thread = threading.Thread(target=self._pull_forever, name=f"binlog-pull {address}", daemon=True)

    # -- the background puller --

    def _pull_forever(self) -> None:
        delay = self._backoff[0]
        while not self._closed.is_set():
            request = binlog_pb2.PullRequest(region_ids=self._region_ids, max_batch=self._max_batch)
            if self._resume is not None:
                getattr(request, "from").CopyFrom(self._resume.to_proto())
            try:
                call = self._stub.Pull(request)
                with self._call_lock:
                    self._call = call
                if self._closed.is_set():
                    call.cancel()
                for response in call:
                    delay = self._backoff[0]
                    version = response.format_version or 1  # a server before the field wrote version 1
                    if version not in READ_VERSIONS:
                        self._put(BinlogVersionError(f"{self.url} (segment {response.next.segment})", version,
                                                     READ_VERSIONS))
                        return
                    chunk = _Chunk(
                        [
                            PositionedEvent(Position(s, o), e, Position(s, n))
                            for s, o, n, e in zip(
                                response.segments, response.offsets, response.next_offsets, response.events
                            )
                        ],
                        Position.from_proto(response.next),
                    )
                    if not self._put(chunk):
                        return
                    self._resume = chunk.next
                reason = "the server ended the stream"
            except grpc.RpcError as error:
                if self._closed.is_set():
                    return
                fatal = _error_from(error, self.address)
                if fatal is not None:
                    self._put(fatal)
                    return
                reason = f"{error.code().name}: {error.details()}"
            finally:
                with self._call_lock:
                    self._call = None
            if self._closed.wait(delay):
                return
            self.reconnects += 1
            log.warning("binlog service %s: %s; reconnecting from %s", self.address, reason, self._resume or "the tail")
            delay = min(delay * 2, self._backoff[1])

    def _put(self, item: _Chunk | BinlogError) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    # -- EventSource --

    def buffered(self) -> bool:
        return bool(self._pending) or self._pending_next is not None or not self._queue.empty()

    def saturated(self) -> bool:
        return self._queue.full()

    def read(self, max_events: int, timeout_s: float) -> list[PositionedEvent]:
        if self._closed.is_set():
            raise BinlogSourceError(f"binlog source {self.url} is closed")
        if self._thread.ident is None:
            self._start_pulling()
        deadline = time.monotonic() + timeout_s
        out: list[PositionedEvent] = []
        while len(out) < max_events:
            if not self._pending and self._pending_next is None:
                if self._error is not None:
                    if out:
                        break
                    raise self._error
                remaining = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, BinlogError):
                    self._error = item
                    continue
                self._pending.extend(item.events)
                self._pending_next = item.next
            while self._pending and len(out) < max_events:
                out.append(self._pending.popleft())
                self._position = out[-1].next
            if not self._pending and self._pending_next is not None:
                self._position = self._pending_next  # also past the events filtered out
                self._pending_next = None
        return out

    def _start_pulling(self) -> None:
        with self._call_lock:
            if self._thread.ident is None:
                self._thread.start()

    @property
    def position(self) -> Position | None:
        return self._position

    def _status(self) -> binlog_pb2.StatusResponse:
        """The service's Status, waited for up to ``status_timeout_s``: a first attempt fails fast
        when the connection does (nothing listens yet, a handshake a loaded machine cut short),
        the next waits for the channel to be ready within what is left."""
        deadline = time.monotonic() + self._status_timeout_s
        first: grpc.RpcError | None = None
        while True:
            remaining = deadline - time.monotonic()
            try:
                status: binlog_pb2.StatusResponse = self._stub.Status(
                    binlog_pb2.StatusRequest(), timeout=max(remaining, 0.001), wait_for_ready=first is not None)
                return status
            except grpc.RpcError as error:
                fatal = _error_from(error, self.address)
                if fatal is not None:
                    raise fatal from None
                first = first or error
                # (the service's own UNAVAILABLE, shutting down, is answered at once: not a spin)
                if error.code() == grpc.StatusCode.UNAVAILABLE and not self._closed.wait(0.05) \
                        and deadline - time.monotonic() > 0:
                    continue
                raise BinlogSourceError(
                    f"binlog service {self.address} did not answer Status within {self._status_timeout_s:g}s: "
                    f"{first.code().name} ({first.details()}); is it running (`theflash capture` or "
                    "`theflash binlog serve` prints its address)?"
                ) from None

    def head(self) -> Position:
        return Position.from_proto(self._status().head)

    def tail(self) -> Position:
        return Position.from_proto(self._status().tail)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with self._call_lock:
            if self._call is not None:
                self._call.cancel()
        if self._thread.ident is not None:
            self._thread.join(timeout=10)
        self._channel.close()
