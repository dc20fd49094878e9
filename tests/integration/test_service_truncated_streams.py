"""A stream cut short never reads as a short table in Python either.

* A Flight client reading a stream whose engine fails after some batches gets a Flight error
  whose message names the error code, the session, the stream and the rows sent — after exactly
  the batches sent, never a clean end with fewer rows.
* An HTTP client reading through ``scan.stream_body`` (the tests' ``HttpReader`` and the
  ClickHouse engine's read through the writer's service) gets ``StreamTruncatedError`` naming
  the session, the stream and the rows read so far, whether the real service's engine fails
  mid-stream (the chunked body ends without its last chunk) or a server closes a body at a
  batch boundary, inside a batch or inside the end marker — which pyarrow's stream reader alone
  reads as a clean end — and reads whole streams whole, chunked or not.

The JVM connector's side of the same cuts is tests/spark/test_jvm_truncated_streams.py.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from cut_streams import (CUTS, LOOP_TABLE, ROWS, TABLE, WHOLE, LoopbackService, StreamFailsMidWay,
                         loopback, serving_a_failing_engine, stream_batches)  # noqa: F401 (loopback: a fixture)
from flash_rig import FlashRig
from pyspark_theflash.scan.through_service import read_through_service
from pyspark_theflash.scan.session import open_read_session, read_stream
from pyspark_theflash.service import RunningService
from pyspark_theflash.scan.stream_body import StreamTruncatedError
from service_client import FlightReader, HttpReader


def truncation(message: str, url: str, session: str, n: int) -> int:
    """The rows a StreamTruncatedError's ``message`` says stream ``n`` of ``session`` (at the
    service ``url``) had read when it broke off; fails unless the message is the whole one."""
    found = re.fullmatch(
        re.escape(f"theflash stream {n} of read session {session} ({url}/v1/read-sessions/{session}/streams/{n}) "
                  "broke off after ") + r"(\d+)" + re.escape(" rows, before the Arrow end-of-stream marker (")
        + r".+" + re.escape("): the service stopped, failed mid-stream (see its log) or the connection was cut; "
                            "the read fails rather than return part of the table"), message)
    assert found, message
    return int(found.group(1))


# -- the real service, its engine failing stream 1 after its first batch -----------------------
@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FlashRig, StreamFailsMidWay, RunningService]]:
    with serving_a_failing_engine(Path(tmp_path_factory.mktemp("py-cut"))) as served:
        yield served


@pytest.fixture
def stream_1_fails(failing: tuple[FlashRig, StreamFailsMidWay, RunningService]) -> Iterator[StreamFailsMidWay]:
    engine = failing[1]
    engine.stream, engine.rows_sent, engine.session = 1, -1, None
    yield engine
    engine.stream = None


REQUEST = {"table": TABLE, "min_streams": 2, "batch_rows": 50}


def test_a_flight_read_of_a_stream_failing_mid_way_ends_with_a_flight_error_naming_it(
        failing: tuple[FlashRig, StreamFailsMidWay, RunningService], stream_1_fails: StreamFailsMidWay) -> None:
    _, engine, running = failing
    service = running.service
    reader = FlightReader(running.flight_location)
    try:
        info = reader.info(REQUEST)
        session = json.loads(info.app_metadata)["id"]
        assert len(info.endpoints) == 2
        aborted = service.metrics.value("theflash_service_streams_aborted_total", frontend="flight")
        stream = reader.client.do_get(info.endpoints[1].ticket, reader.options)
        received = 0
        with pytest.raises(flight.FlightInternalError) as caught:
            while True:
                received += stream.read_chunk().data.num_rows  # StopIteration would be a clean end: a failure
        assert engine.session == session and engine.rows_sent == 50
        assert received == engine.rows_sent  # the batches sent arrive, then the error
        assert str(caught.value).startswith(
            f"internal: stream 1 of read session {session} failed after 50 rows were sent, which are not the whole "
            "stream: OSError: stream 1: a part file vanished mid-read (test fault)")
        body = json.loads(caught.value.extra_info)["error"]
        assert (body["code"], body["status"]) == ("internal", 500)
        assert body["message"].startswith(f"stream 1 of read session {session} failed after 50 rows")
        with pytest.raises(flight.FlightInternalError, match=f"^internal: stream 1 of read session {session} failed"):
            reader.client.do_get(info.endpoints[1].ticket, reader.options).read_all()  # read_all too
        assert service.metrics.value("theflash_service_streams_aborted_total", frontend="flight") == aborted + 2

        engine.stream = None  # the service serves on: the same session's stream reads whole now
        table = pa.concat_tables([reader.client.do_get(e.ticket, reader.options).read_all() for e in info.endpoints])
        assert sorted(table.column("id").to_pylist()) == list(range(ROWS))
        reader.action("release", {"session": session})
    finally:
        reader.close()


def test_an_http_read_of_a_stream_failing_mid_way_raises_stream_truncated_naming_it(
        failing: tuple[FlashRig, StreamFailsMidWay, RunningService], stream_1_fails: StreamFailsMidWay) -> None:
    _, engine, running = failing
    reader = HttpReader(running.http_url)
    with pytest.raises(StreamTruncatedError) as caught:
        reader.read(REQUEST)
    err = caught.value
    assert (err.session, err.stream, err.rows) == (engine.session, 1, engine.rows_sent) and err.rows == 50
    assert truncation(str(err), running.http_url, engine.session, 1) == 50
    assert "IncompleteRead" in str(err)  # the chunked body ended without its last chunk
    assert running.service.metrics.value("theflash_service_sessions_active") == 0  # the reader released it

    engine.stream = None
    assert sorted(reader.read(REQUEST)[0].column("id").to_pylist()) == list(range(ROWS))


def test_the_clickhouse_engines_read_through_a_service_failing_mid_way_raises_stream_truncated(
        failing: tuple[FlashRig, StreamFailsMidWay, RunningService], stream_1_fails: StreamFailsMidWay) -> None:
    """``read_through_service`` (a Spark worker reading a ClickHouse store the writer owns)
    against the real service: a session over one planned stream's handle ranges, whose stream 0
    fails after its first batch."""
    rig, engine, running = failing
    with open_read_session(rig.store, TABLE, options={"upstream": rig.upstream, "min_partitions": "2",
                                                      "batch_rows": "50"}) as planned:
        assert len(planned.streams) == 2
        partition = planned.streams[1].partition
        expected = pa.Table.from_batches(list(read_stream(planned, 1)), schema=planned.schema)
        assert expected.num_rows > 50

        engine.stream = 0  # the service's session over one stream's ranges has one stream
        with pytest.raises(StreamTruncatedError) as caught:
            list(read_through_service(partition, running.http_url))
        assert engine.session is not None and engine.rows_sent == 50
        assert truncation(str(caught.value), running.http_url, engine.session, 0) == 50
        assert running.service.metrics.value("theflash_service_sessions_active") == 0  # released all the same

        engine.stream = None
        got = pa.Table.from_batches(list(read_through_service(partition, running.http_url)))
        assert got.sort_by("id").to_pylist() == expected.sort_by("id").to_pylist()


# -- a loopback server cutting stream 1 the ways the real one never does (tests/support/cut_streams.py)
@pytest.mark.parametrize("cut", list(CUTS))
def test_an_http_stream_cut_before_the_end_marker_raises_stream_truncated_naming_it(
        loopback: LoopbackService, cut: str) -> None:
    loopback.cut = cut
    with pytest.raises(StreamTruncatedError) as caught:
        HttpReader(loopback.url).read({"table": LOOP_TABLE})
    session = loopback.sessions[-1]
    assert (caught.value.session, caught.value.stream) == (session, 1)
    assert truncation(str(caught.value), loopback.url, session, 1) == caught.value.rows == CUTS[cut][2]


@pytest.mark.parametrize("whole", list(WHOLE))
def test_an_http_stream_ending_with_the_end_marker_reads_every_row(loopback: LoopbackService, whole: str) -> None:
    loopback.cut = whole
    got, _ = HttpReader(loopback.url).read({"table": LOOP_TABLE})
    assert got.sort_by("id").to_pylist() == pa.Table.from_batches(stream_batches(0) + stream_batches(1)).to_pylist()
