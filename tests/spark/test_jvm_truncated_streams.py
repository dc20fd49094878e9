"""A stream cut short never reads as a short table: the JVM connector (a real local Spark with
the jar) fails the task with an error naming the session, the stream and the rows read so far
when a stream's body ends before Arrow's end-of-stream marker — whether the service's engine
fails mid-stream (the real service ends the chunked body without its last chunk) or a server
closes a body at a batch boundary, inside a batch or inside the marker — and still reads
whole streams completely, chunked or not."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pytest

from cut_streams import (BATCH_ROWS, CUTS, LOOP_TABLE, REFUSED, ROWS, TABLE, WHOLE, LoopbackService, StreamFailsMidWay,
                         loopback, serving_a_failing_engine, stream_batches)  # noqa: F401 (loopback: a fixture)
from jvm_spark import JvmSpark, RemoteError
from pyspark_theflash.scan.stream_body import StreamTruncatedError
from service_client import HttpReader

pytestmark = pytest.mark.spark


def rows_before_the_cut(message: str, server: str, session: str, n: int) -> int:
    """The rows that the StreamTruncatedException in ``message`` says stream ``n`` of ``session``
    had read when it broke off."""
    url = f"{server}/v1/read-sessions/{session}/streams/{n}"
    found = re.search(re.escape(f"io.theflash.spark.StreamTruncatedException: theflash stream {n} of read session "
                                f"{session} ({url}) broke off after ") + r"(\d+)" + re.escape(
                                    " rows, before the Arrow end-of-stream marker ("), message)
    assert found, message
    assert ("the service stopped, failed mid-stream (see its log) or the connection was cut; the read fails "
            "rather than return part of the table") in message
    return int(found.group(1))


# -- functions run in the Spark worker with the jar (tests/support/jvm_spark.py) ---------------------
def jvm_read(spark: Any, options: dict[str, str], table: str) -> pa.Table:
    return spark.read.format("theflash").options(**options).load(table).toArrow()


# -- the real service, its engine failing one stream mid-way (tests/support/cut_streams.py) -------------
@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StreamFailsMidWay, str]]:
    with serving_a_failing_engine(Path(tmp_path_factory.mktemp("jvm-cut"))) as (_, engine, running):
        yield engine, running.http_url


def test_a_stream_whose_engine_fails_mid_way_fails_the_read_naming_session_stream_and_rows(
        jvm_spark: JvmSpark, failing: tuple[StreamFailsMidWay, str]) -> None:
    engine, url = failing
    options = {"server": url, "min_partitions": "2", "batch_rows": "50"}
    whole = jvm_spark.call(jvm_read, options, TABLE)
    assert sorted(whole.column("id").to_pylist()) == list(range(ROWS))

    engine.stream = 1
    try:
        # the Python client sees the cut too (tests/integration/test_service_truncated_streams.py)
        with pytest.raises(StreamTruncatedError):
            HttpReader(url).read({"table": TABLE, "min_streams": 2, "batch_rows": 50})
        with pytest.raises(RemoteError) as caught:
            jvm_spark.call(jvm_read, options, TABLE)
    finally:
        engine.stream = None
    message = caught.value.message
    found = re.search(r"theflash stream 1 of read session ([0-9a-f]+) \(", message)
    assert found, message
    # at most what was sent: the JDK's client drops what it holds unread once it sees the cut
    assert 0 <= rows_before_the_cut(message, url, found.group(1), 1) <= engine.rows_sent and engine.rows_sent > 0

    again = jvm_spark.call(jvm_read, options, TABLE)  # the service serves on, whole streams read whole
    assert again.num_rows == ROWS


# -- a loopback server that cuts stream 1 the way it is told (tests/support/cut_streams.py) -----------
@pytest.mark.parametrize("cut", list(CUTS))
def test_a_stream_cut_before_the_end_marker_fails_the_read_naming_session_stream_and_rows(
        jvm_spark: JvmSpark, loopback: LoopbackService, cut: str) -> None:
    loopback.cut = cut
    with pytest.raises(RemoteError) as caught:
        jvm_spark.call(jvm_read, {"server": loopback.url}, LOOP_TABLE)
    rows = rows_before_the_cut(caught.value.message, loopback.url, loopback.sessions[-1], 1)
    chunked, _, whole_batches = CUTS[cut]
    if chunked:  # the JDK's client may drop what it holds unread once it sees the cut
        assert rows <= whole_batches and rows % BATCH_ROWS == 0, rows
    else:
        assert rows == whole_batches


@pytest.mark.parametrize("whole", list(WHOLE))
def test_a_stream_ending_with_the_end_marker_reads_every_row(
        jvm_spark: JvmSpark, loopback: LoopbackService, whole: str) -> None:
    loopback.cut = whole
    got = jvm_spark.call(jvm_read, {"server": loopback.url}, LOOP_TABLE)
    expected = pa.Table.from_batches(stream_batches(0) + stream_batches(1))
    assert got.sort_by("id").to_pylist() == expected.to_pylist()


def test_a_stream_the_service_refuses_fails_the_read_with_the_services_answer(
        jvm_spark: JvmSpark, loopback: LoopbackService) -> None:
    loopback.cut = REFUSED
    with pytest.raises(RemoteError) as caught:
        jvm_spark.call(jvm_read, {"server": loopback.url}, LOOP_TABLE)
    assert "read session has ended (its lease expired)" in caught.value.message, caught.value.message
    assert f"(theflash service {loopback.url}: 410 session_gone)" in caught.value.message, caught.value.message
