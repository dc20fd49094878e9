"""The service form of the binlog: real gRPC on loopback, compared with the file form."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from pyspark_theflash.binlog import (
    BinlogCorruptError,
    BinlogPositionGoneError,
    BinlogSourceError,
    EventSource,
    Position,
    PositionedEvent,
    SegmentWriter,
    open_source,
    serve_binlog,
)
from pyspark_theflash.binlog.segment import HEADER_BYTES, list_segments, segment_path
from pyspark_theflash.binlog.open import parse_source_url
from pyspark_theflash.proto import binlog_pb2, binlog_pb2_grpc
from binlog_samples import sample_events
from loopback_ports import free_port


def read_count(source: EventSource, count: int, deadline_s: float = 20.0) -> list[PositionedEvent]:
    """Read until ``count`` events arrived (fails after the deadline)."""
    got: list[PositionedEvent] = []
    deadline = time.monotonic() + deadline_s
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {len(got)} of {count} events arrived"
        got.extend(source.read(count - len(got), timeout_s=0.2))
    return got


def read_to_head(source: EventSource, deadline_s: float = 20.0) -> list[PositionedEvent]:
    """Read until the source's position reaches the log's head."""
    head = source.head()
    got: list[PositionedEvent] = []
    deadline = time.monotonic() + deadline_s
    while source.position is None or source.position < head:
        assert time.monotonic() < deadline, f"stuck at {source.position}, head {head}"
        got.extend(source.read(1000, timeout_s=0.05))
    return got


def mixed_region_events(count: int) -> list[binlog_pb2.Event]:
    events = []
    for region in (1, 2, 3):
        events.extend(sample_events(count, region_id=region))
    events.sort(key=lambda e: (e.index, e.region_id))  # interleaved, each region in raft order
    return events


@pytest.fixture
def binlog_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "binlog"
    directory.mkdir()
    return directory


def test_file_and_stream_forms_deliver_identical_events_and_positions(binlog_dir: Path) -> None:
    events = mixed_region_events(30)
    with SegmentWriter(binlog_dir, segment_bytes=1500) as writer, serve_binlog(binlog_dir) as server:
        writer.append(events)
        assert len(list_segments(binlog_dir)) >= 4
        with open_source(f"file://{binlog_dir}") as file_source, open_source(server.url) as stream:
            from_file = read_to_head(file_source)
            from_stream = read_to_head(stream)
            assert [r.event for r in from_file] == events
            assert from_stream == from_file
            assert stream.position == file_source.position == writer.head
        # From any position, both forms resume with the same suffix.
        for middle in (from_file[1], from_file[len(events) // 2], from_file[-1]):
            with open_source(binlog_dir, middle.next) as file_source, open_source(server.url, middle.next) as stream:
                assert read_to_head(stream) == read_to_head(file_source)


def test_pull_follows_the_tail(binlog_dir: Path) -> None:
    events = sample_events(40)
    with SegmentWriter(binlog_dir, segment_bytes=800) as writer, serve_binlog(binlog_dir) as server:
        writer.append(events[:10])
        with open_source(server.url) as stream:
            assert [r.event for r in read_count(stream, 10)] == events[:10]
            # Appended after the Pull started, from another thread and across rotations.
            appender = threading.Thread(target=lambda: [writer.append([e]) for e in events[10:]])
            appender.start()
            followed = read_count(stream, 30)
            appender.join()
        with open_source(binlog_dir) as file_source:
            assert followed == read_to_head(file_source)[10:]
    assert [r.event for r in followed] == events[10:]


def test_region_filter_delivers_only_those_regions_in_both_forms(binlog_dir: Path) -> None:
    events = mixed_region_events(20)
    with SegmentWriter(binlog_dir, segment_bytes=2000) as writer, serve_binlog(binlog_dir) as server:
        writer.append(events)
        with open_source(binlog_dir, region_ids=[2]) as file_source, open_source(server.url, region_ids=[2]) as stream:
            from_file = read_to_head(file_source)
            from_stream = read_to_head(stream)
            # Both skipped past the other regions' events at the end of the log.
            assert stream.position == file_source.position == writer.head
    assert [r.event for r in from_file] == [e for e in events if e.region_id == 2]
    assert from_stream == from_file


def test_client_reconnects_and_resumes_after_the_server_restarts(binlog_dir: Path) -> None:
    events = sample_events(30)
    with SegmentWriter(binlog_dir, segment_bytes=900) as writer:
        writer.append(events[:12])
        server = serve_binlog(binlog_dir)
        port = server.port
        stream = open_source(server.url)
        try:
            first = read_count(stream, 12)
            server.stop()
            writer.append(events[12:20])  # written while no server is up
            server = serve_binlog(binlog_dir, port=port)
            writer.append(events[20:])
            rest = read_count(stream, 18)
            assert stream.reconnects >= 1
        finally:
            stream.close()
            server.stop()
    with open_source(binlog_dir) as file_source:
        assert first + rest == read_to_head(file_source), "no event lost or repeated"


def test_status_gives_head_and_tail(binlog_dir: Path) -> None:
    with SegmentWriter(binlog_dir, segment_bytes=600) as writer, serve_binlog(binlog_dir) as server:
        stub = binlog_pb2_grpc.BinlogServiceStub(grpc.insecure_channel(server.address))
        empty = stub.Status(binlog_pb2.StatusRequest(), timeout=10)
        assert Position.from_proto(empty.head) == Position.from_proto(empty.tail) == Position(1, HEADER_BYTES)
        end = writer.append(sample_events(30))
        writer.prune(Position(3, HEADER_BYTES))
        status = stub.Status(binlog_pb2.StatusRequest(), timeout=10)
        assert Position.from_proto(status.head) == end == writer.head
        assert Position.from_proto(status.tail) == Position(3, HEADER_BYTES)
        with open_source(server.url) as stream:
            assert stream.head() == end and stream.tail() == Position(3, HEADER_BYTES)


def test_a_source_opened_for_the_logs_bounds_pulls_nothing(binlog_dir: Path) -> None:
    """The writer opens a source only for the head or tail (its check before it is up, its
    snapshot bootstrap): the Pull stream begins with the first read."""
    def pullers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == f"binlog-pull {server.address}"]

    with SegmentWriter(binlog_dir) as writer, serve_binlog(binlog_dir) as server:
        end = writer.append(sample_events(20))
        with open_source(server.url) as stream:
            assert stream.tail() == Position(1, HEADER_BYTES) and stream.head() == end
            assert pullers() == [] and server.servicer.open_streams() == 0
            assert [r.event for r in read_count(stream, 20)] == sample_events(20)
            assert len(pullers()) == 1 and server.servicer.open_streams() == 1


def test_status_waits_for_a_service_that_starts_listening_after_the_first_attempt(binlog_dir: Path) -> None:
    """A Status call whose first connection fails (nothing listens yet; on a loaded machine, a
    handshake cut short) is answered once the service is up, within its timeout: the writer's
    first call is not its death."""
    port = free_port()
    with SegmentWriter(binlog_dir) as writer:
        end = writer.append(sample_events(5))
        servers = []
        starter = threading.Timer(0.5, lambda: servers.append(serve_binlog(binlog_dir, port=port)))
        with open_source(f"grpc://127.0.0.1:{port}") as stream:
            starter.start()
            try:
                assert stream.head() == end
            finally:
                starter.join()
                for server in servers:
                    server.stop()


def test_status_of_a_service_that_never_answers_is_a_one_line_error_naming_it() -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    from pyspark_theflash.binlog.service import GrpcEventSource

    with GrpcEventSource(address, status_timeout_s=0.5) as stream, pytest.raises(BinlogSourceError) as raised:
        stream.tail()
    message = str(raised.value)
    assert f"binlog service {address} did not answer Status within 0.5s: UNAVAILABLE" in message
    assert "is it running" in message and "\n" not in message


def test_pruned_position_over_grpc_raises_the_same_error(binlog_dir: Path) -> None:
    with SegmentWriter(binlog_dir, segment_bytes=600) as writer, serve_binlog(binlog_dir) as server:
        writer.append(sample_events(30))
        writer.prune(Position(3, HEADER_BYTES))
        with open_source(server.url, Position(1, HEADER_BYTES)) as stream:
            with pytest.raises(BinlogPositionGoneError) as caught:
                read_count(stream, 1)
    assert caught.value.oldest == Position(3, HEADER_BYTES) and caught.value.requested == Position(1, HEADER_BYTES)
    assert server.address in str(caught.value)


def test_corruption_over_grpc_names_the_segment_file_and_offset(binlog_dir: Path) -> None:
    with SegmentWriter(binlog_dir) as writer:
        writer.append(sample_events(10))
    with open_source(binlog_dir) as file_source:
        victim = read_to_head(file_source)[4]
    path = segment_path(binlog_dir, 1)
    data = bytearray(path.read_bytes())
    data[victim.position.offset + 9] ^= 0x10
    path.write_bytes(bytes(data))
    with open_source(binlog_dir) as file_source:
        assert len(file_source.read(100, timeout_s=5)) == 4, "the events before the damage arrive first"
        with pytest.raises(BinlogCorruptError) as in_file:
            file_source.read(100, timeout_s=5)
    with serve_binlog(binlog_dir) as server, open_source(server.url) as stream:
        assert len(read_count(stream, 4)) == 4
        with pytest.raises(BinlogCorruptError) as in_stream:
            stream.read(100, timeout_s=5)
    for caught in (in_file, in_stream):
        assert caught.value.path == path and caught.value.offset == victim.position.offset


def test_stopping_the_server_ends_following_streams_cleanly(binlog_dir: Path) -> None:
    with SegmentWriter(binlog_dir) as writer:
        writer.append(sample_events(3))
        server = serve_binlog(binlog_dir)
        channel = grpc.insecure_channel(server.address)
        call = binlog_pb2_grpc.BinlogServiceStub(channel).Pull(binlog_pb2.PullRequest(max_batch=2))
        responses = [next(call), next(call)]  # the start, then the first events
        assert Position.from_proto(responses[0].next) == Position(1, HEADER_BYTES) and not responses[0].events
        assert len(responses[1].events) == 2
        assert len(responses[1].segments) == len(responses[1].offsets) == len(responses[1].next_offsets) == 2
        ended, all_arrived = threading.Event(), threading.Event()

        def drain() -> None:
            for response in call:  # following the tail until the server stops
                responses.append(response)
                if sum(len(r.events) for r in responses) == 3:
                    all_arrived.set()
            ended.set()

        follower = threading.Thread(target=drain)
        follower.start()
        assert all_arrived.wait(timeout=20)
        server.stop()
        follower.join(timeout=20)
        channel.close()
    assert ended.is_set(), "the stream must end without an error"
    assert call.code() == grpc.StatusCode.OK
    assert sum(len(r.events) for r in responses) == 3


def test_source_urls() -> None:
    assert parse_source_url("file:///data/binlog") == ("file", "/data/binlog")
    assert parse_source_url("/data/binlog") == ("file", "/data/binlog")
    assert parse_source_url("relative/dir") == ("file", "relative/dir")
    assert parse_source_url("grpc://127.0.0.1:9000") == ("grpc", "127.0.0.1:9000")
    for bad in ("http://x:1", "file://host/data", "grpc://nohost", "grpc://h:1/path"):
        with pytest.raises(BinlogSourceError):
            parse_source_url(bad)
    with pytest.raises(BinlogSourceError, match="does not exist"):
        open_source("/nonexistent/binlog/dir")


def test_a_checksummed_record_that_is_no_event_is_reported_by_both_forms(binlog_dir: Path) -> None:
    events = sample_events(3)
    with SegmentWriter(binlog_dir) as writer:
        writer.append(events)
        bad_at = writer.head
        writer.append([b"\xff\xff\xff\xff"])  # a valid frame around bytes that are no Event
        writer.append(sample_events(2))
    with serve_binlog(binlog_dir) as server:
        for url, regions in ((str(binlog_dir), None), (server.url, None), (str(binlog_dir), [1]), (server.url, [1])):
            with open_source(url, region_ids=regions) as source:
                assert [r.event for r in read_count(source, 3)] == events
                with pytest.raises(BinlogCorruptError) as caught:
                    source.read(10, timeout_s=0.5)
                assert caught.value.offset == bad_at.offset, url
                assert caught.value.path == segment_path(binlog_dir, bad_at.segment)
                assert "not an Event" in str(caught.value)


def test_a_checksummed_record_that_is_no_event_stops_a_batch_read_in_front_of_it(binlog_dir: Path) -> None:
    """The writer's read (``read_events``: a read's events decoded at once) returns the events
    before such a record, then raises naming it — every time it is asked again."""
    events = sample_events(3)
    with SegmentWriter(binlog_dir) as writer:
        writer.append(events)
        bad_at = writer.head
        writer.append([b"\x0a\x05\x12"])  # a valid frame around a truncated Event
        writer.append(sample_events(2))
    with serve_binlog(binlog_dir) as server:
        for url, regions in ((str(binlog_dir), None), (server.url, None), (str(binlog_dir), [1])):
            with open_source(url, region_ids=regions) as source:
                got: list = []
                while len(got) < 3:
                    batch = source.read_events(10, timeout_s=0.5)  # a file read waits this out for 10
                    assert batch is not None, url
                    got.extend(batch.events)
                assert got == events and batch.next == bad_at, url
                for _ in range(2):
                    with pytest.raises(BinlogCorruptError) as caught:
                        source.read_events(10, timeout_s=0.5)
                    assert caught.value.offset == bad_at.offset, url
                    assert "not an Event" in str(caught.value)


def test_the_stream_form_carries_the_segments_format_version_and_a_client_refuses_one_it_cannot_read(
        binlog_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Pull response names the format version of its events' segments; a writer pulling
    from a newer capture's service is refused with the upgrade remedy instead of reading a newer
    event form as empty (a file reader refuses such a segment by its header already)."""
    from pyspark_theflash.binlog import BinlogVersionError
    from pyspark_theflash.binlog import service as binlog_service
    from pyspark_theflash.binlog.segment import FORMAT_VERSION, READ_VERSIONS

    events = mixed_region_events(10)
    with SegmentWriter(binlog_dir, segment_bytes=1500) as writer, serve_binlog(binlog_dir) as server:
        writer.append(events)
        stub = binlog_pb2_grpc.BinlogServiceStub(grpc.insecure_channel(server.url.removeprefix("grpc://")))
        call = stub.Pull(binlog_pb2.PullRequest(max_batch=4), timeout=5)
        versions = []
        for response in call:
            versions.append(response.format_version)
            if len(versions) >= 3:
                call.cancel()
                break
        assert versions == [FORMAT_VERSION] * 3
        with open_source(server.url) as stream:
            assert [r.event for r in read_to_head(stream)] == events
        # a service of a newer TheFlash: its segments are of a version this code does not read
        monkeypatch.setattr(binlog_service, "_format_version", lambda directory, number: FORMAT_VERSION + 1)
        with open_source(server.url) as stream:
            with pytest.raises(BinlogVersionError, match=rf"format version {FORMAT_VERSION + 1}; this code reads "
                                                         rf"versions {', '.join(map(str, READ_VERSIONS))}: upgrade TheFlash"):
                read_to_head(stream)
