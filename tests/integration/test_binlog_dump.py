"""`theflash binlog dump` / `status` / `prune`: decoded keys and values, both source forms."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from pyspark_theflash.binlog import Position, SegmentWriter, serve_binlog
from pyspark_theflash.binlog.segment import HEADER_BYTES, list_segments
from pyspark_theflash.cli import main
from pyspark_theflash.codec import Datum, encode_index_key, encode_record_key, encode_region_key
from pyspark_theflash.codec.row_v2 import encode_row_v2
from pyspark_theflash.proto import binlog_pb2

TABLE_ID = 45
TS = (1_763_704_623_123 << 18) | 5  # 2025-11-21 05:57:03.123 UTC, logical 5
TABLE_INFO = {
    "id": TABLE_ID,
    "name": {"O": "accounts", "L": "accounts"},
    "pk_is_handle": True,
    "cols": [
        {"id": 1, "name": {"O": "id", "L": "id"}, "offset": 0, "state": 5,
         "type": {"Tp": 8, "Flag": 3, "Flen": 20, "Decimal": 0}},
        {"id": 2, "name": {"O": "owner", "L": "owner"}, "offset": 1, "state": 5,
         "type": {"Tp": 15, "Flag": 0, "Flen": 64, "Decimal": 0, "Charset": "utf8mb4", "Collate": "utf8mb4_bin"}},
        {"id": 3, "name": {"O": "balance", "L": "balance"}, "offset": 2, "state": 5,
         "type": {"Tp": 3, "Flag": 0, "Flen": 11, "Decimal": 0}},
    ],
    "schema_version": 7,
}
ROW_VALUE = encode_row_v2([(2, Datum("bytes", b"alice")), (3, Datum("int", 1200))])


def bank_events() -> list[binlog_pb2.Event]:
    epoch = binlog_pb2.RegionEpoch(version=3, conf_version=1)
    prewrite = binlog_pb2.Event(region_id=2, index=11, epoch=epoch)
    prewrite.entries.rows.add(
        type=binlog_pb2.Row.PREWRITE, op=binlog_pb2.PUT, start_ts=TS - 10, key=encode_record_key(TABLE_ID, 7),
        value=ROW_VALUE, primary=encode_record_key(TABLE_ID, 7), ttl=3000,
    )
    prewrite.entries.rows.add(
        type=binlog_pb2.Row.PREWRITE, op=binlog_pb2.PUT, start_ts=TS - 10,
        key=encode_index_key(TABLE_ID, 2, [Datum("bytes", b"alice"), Datum("int", 7)]), value=b"0",
        primary=encode_record_key(TABLE_ID, 7), ttl=3000,
    )
    commit = binlog_pb2.Event(region_id=2, index=12, epoch=epoch)
    commit.entries.rows.add(type=binlog_pb2.Row.COMMIT, start_ts=TS - 10, commit_ts=TS - 4,
                            key=encode_record_key(TABLE_ID, 7))
    resolved = binlog_pb2.Event(region_id=2, index=12, epoch=epoch, resolved_ts=TS)
    split = binlog_pb2.Event(region_id=2, index=13, epoch=epoch)
    boundary = encode_region_key(encode_record_key(TABLE_ID, 100))
    split.admin.split.regions.add(id=2, start_key=b"", end_key=boundary,
                                  epoch=binlog_pb2.RegionEpoch(version=4, conf_version=1))
    split.admin.split.regions.add(id=9, start_key=boundary, end_key=b"",
                                  epoch=binlog_pb2.RegionEpoch(version=4, conf_version=1))
    snapshot = binlog_pb2.Event(region_id=9, index=5, epoch=binlog_pb2.RegionEpoch(version=4, conf_version=1))
    snapshot.snapshot.region.CopyFrom(split.admin.split.regions[1])
    for handle in (100, 101, 102, 103):
        snapshot.snapshot.writes.add(key=encode_record_key(TABLE_ID, handle), commit_ts=TS - 100)
    snapshot.snapshot.locks.add(key=encode_record_key(TABLE_ID, 104))
    return [prewrite, commit, resolved, split, snapshot]


@pytest.fixture
def binlog_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "binlog"
    with SegmentWriter(directory, segment_bytes=400) as writer:
        writer.append(bank_events())
    return directory


@pytest.fixture
def schema_url() -> Iterator[str]:
    """A TiDB-status-port-style HTTP server answering /db-table/{id}."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == f"/db-table/{TABLE_ID}":
                status, body = 200, {"db_info": {"db_name": {"O": "bank", "L": "bank"}}, "table_info": TABLE_INFO}
            else:
                status, body = 404, {"error": "unknown table"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_dump_decodes_keys_and_values_with_the_schema(
    binlog_dir: Path, schema_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "binlog", "dump", str(binlog_dir), "--schema-url", schema_url)
    assert code == 0
    assert f"1:{HEADER_BYTES} region 2 index 11 epoch 3.1 entries (2 rows)" in out
    assert f"PREWRITE PUT start_ts={TS - 10} key=table {TABLE_ID} handle 7 primary=table {TABLE_ID} handle 7 ttl=3000ms" in out
    assert "value bank.accounts: id=7, owner='alice', balance=1200" in out
    assert f"key=index t{TABLE_ID}_i2 0x" in out, "index keys are shown as their prefix and hex"
    assert f"COMMIT start_ts={TS - 10} commit_ts={TS - 4} key=table {TABLE_ID} handle 7" in out
    assert f"resolved_ts {TS} (2025-11-21 05:57:03.123 UTC, logical 5)" in out
    assert "admin split" in out
    assert f"region 2 [-inf, table {TABLE_ID} handle 100) epoch 4.1" in out
    assert f"region 9 [table {TABLE_ID} handle 100, +inf) epoch 4.1" in out
    assert "snapshot (4 writes, 1 locks)" in out
    assert f"first writes: table {TABLE_ID} handle 100, table {TABLE_ID} handle 101, table {TABLE_ID} handle 102" in out
    assert out.count(" region ") >= 5 and len(list_segments(binlog_dir)) >= 2


def test_dump_without_schema_shows_values_as_hex_with_length(
    binlog_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "binlog", "dump", f"file://{binlog_dir}", "--limit", "1")
    assert code == 0
    assert f"value {len(ROW_VALUE)} bytes 0x{ROW_VALUE.hex()}" in out
    assert "index 12" not in out, "--limit 1 prints one event"


def test_dump_over_grpc_prints_the_same_as_from_files(
    binlog_dir: Path, schema_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, from_files, _ = run(capsys, "binlog", "dump", str(binlog_dir), "--schema-url", schema_url)
    with serve_binlog(binlog_dir) as server:
        code, from_stream, _ = run(capsys, "binlog", "dump", server.url, "--schema-url", schema_url)
    assert code == 0 and from_stream == from_files and from_files


def test_dump_region_filter_and_start_position(binlog_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "binlog", "dump", str(binlog_dir), "--region", "9")
    assert code == 0
    assert "region 9 index 5" in out and "region 2 index" not in out
    _, everything, _ = run(capsys, "binlog", "dump", str(binlog_dir))
    third = everything.split("\n")[0]
    blocks = [line for line in everything.splitlines() if not line.startswith(" ")]
    start = blocks[2].split()[0]  # the position of the third event
    _, suffix, _ = run(capsys, "binlog", "dump", str(binlog_dir), "--from", start)
    assert [line for line in suffix.splitlines() if not line.startswith(" ")] == blocks[2:]
    assert third not in suffix


def test_dump_follow_prints_events_appended_later(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "binlog"
    events = bank_events()
    with SegmentWriter(directory) as writer:
        writer.append(events[:1])
        codes: list[int] = []
        dumper = threading.Thread(target=lambda: codes.append(main(["binlog", "dump", str(directory), "--follow", "--limit", "3"])))
        dumper.start()
        writer.append(events[1:3])
        dumper.join(timeout=30)
    assert codes == [0]
    out = capsys.readouterr().out
    assert "region 2 index 11" in out and f"resolved_ts {TS}" in out


def test_dump_reports_a_pruned_position_as_a_user_error(binlog_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "binlog", "prune", str(binlog_dir), "--before", f"2:{HEADER_BYTES}")
    assert code == 0 and "1 segment(s) deleted" in out
    code, _, err = run(capsys, "binlog", "dump", str(binlog_dir), "--from", f"1:{HEADER_BYTES}")
    assert code == 2
    assert "no longer available" in err and f"oldest position is 2:{HEADER_BYTES}" in err


def test_status_prints_head_tail_and_segments(binlog_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SegmentWriter(binlog_dir) as writer:
        head = writer.head
    code, out, _ = run(capsys, "binlog", "status", str(binlog_dir))
    assert code == 0
    assert f"head     {head}" in out and f"tail     {Position(1, HEADER_BYTES)}" in out
    assert f"segments {len(list_segments(binlog_dir))}" in out and "000000000001.binlog" in out
    with serve_binlog(binlog_dir) as server:
        code, out, _ = run(capsys, "binlog", "status", server.url)
    assert code == 0 and f"head     {head}" in out


def test_serve_command_serves_until_interrupted(binlog_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "pyspark_theflash", "binlog", "serve", str(binlog_dir), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(f"serving {binlog_dir} at grpc://127.0.0.1:"), line + process.stderr.read()
        url = line.split(" at ")[1].strip()
        code, out, _ = run(capsys, "binlog", "dump", url, "--limit", "1")
        assert code == 0 and f"key=table {TABLE_ID} handle 7" in out
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130


def test_a_ddl_event_is_dumped_and_passes_every_region_filter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pyspark_theflash.upstream.ddl import DDL, ddl_event

    directory = tmp_path / "binlog"
    info = dict(TABLE_INFO, schema_version=8)
    with SegmentWriter(directory) as writer:
        writer.append([*bank_events()[:2], ddl_event(DDL.ADD_COLUMN, TS, 8, "bank", info,
                                                     query="ALTER TABLE bank.accounts ADD COLUMN balance")])
    for source in (str(directory), None):
        if source is None:
            server = serve_binlog(directory)
            source = server.url
        code, out, _ = run(capsys, "binlog", "dump", source, "--region", "9")
        assert code == 0
        assert "region 2 index" not in out  # region 2's events are filtered out, the DDL is not
        assert f"region 0 index 0 epoch 0.0 ddl ADD_COLUMN bank.accounts (table {TABLE_ID}) schema version 8" in out
        assert "ALTER TABLE bank.accounts ADD COLUMN balance" in out
        if source.startswith("grpc"):
            server.stop()


def test_dump_and_status_name_damage_followed_by_good_records_and_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Damage in the newest segment with records after it is corruption, not a torn tail."""
    from pyspark_theflash.binlog import SegmentReader
    from pyspark_theflash.binlog.segment import segment_path

    binlog_dir = tmp_path / "binlog"
    with SegmentWriter(binlog_dir) as writer:
        writer.append(bank_events())
    newest = list_segments(binlog_dir)[-1]
    with SegmentReader(binlog_dir) as reader:
        victim = [r for r in reader if r.position.segment == newest][0]
    path = segment_path(binlog_dir, newest)
    data = bytearray(path.read_bytes())
    assert victim.next.offset < len(data), "a good record follows the damaged one"
    data[victim.position.offset + 2] ^= 0x10  # its length now points past the end of the file
    path.write_bytes(bytes(data))
    for argv in (["binlog", "status", str(binlog_dir)], ["binlog", "dump", str(binlog_dir)]):
        code, _, err = run(capsys, *argv)
        assert code != 0, argv
        assert str(path) in err and f"offset {victim.position.offset}" in err, err


def test_output_cut_short_by_head_ends_quietly(tmp_path: Path) -> None:
    """`theflash binlog status DIR | head -1`: no BrokenPipeError traceback."""
    import subprocess
    import sys

    directory = tmp_path / "binlog"
    with SegmentWriter(directory, segment_bytes=64) as writer:
        for event in bank_events() * 300:  # a segment a record: a status line each, > a pipe's buffer
            writer.append([event])
    command = f"{sys.executable} -m pyspark_theflash binlog status {directory} | head -1"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("binlog ") and done.stdout.count("\n") == 1
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def _older_segments_log(tmp_path: Path) -> Path:
    """A log of many small segments (a record or two each), so damage can sit far from the head."""
    directory = tmp_path / "binlog"
    with SegmentWriter(directory, segment_bytes=200) as writer:
        for event in bank_events() * 4:
            writer.append([event])
    assert len(list_segments(directory)) >= 6
    return directory


def _flip_payload(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # inside the segment's last record's payload: its checksum no longer holds
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-5])


# (the oldest segment deleted is a pruned log, not damage)
@pytest.mark.parametrize("where,damage", [("oldest", "flipped byte"), ("oldest", "truncated"), ("middle", "flipped byte"),
                                          ("middle", "truncated"), ("middle", "deleted")])
def test_status_walks_every_segment_and_fails_as_dump_does_on_damage_away_from_the_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, damage: str
) -> None:
    """`binlog status` checks every record of every segment (not just the head and the tail): damage
    in an older segment makes it exit as `binlog dump` (and the writer, through the same reader) do,
    naming the segment file. `--quick` checks the ends only and says so."""
    from pyspark_theflash.binlog.segment import segment_path

    directory = _older_segments_log(tmp_path)
    numbers = list_segments(directory)
    number = numbers[0] if where == "oldest" else numbers[len(numbers) // 2]
    path = segment_path(directory, number)
    code, out, _ = run(capsys, "binlog", "status", str(directory))
    assert code == 0 and "checked  " in out and "every segment" in out
    if damage == "flipped byte":
        _flip_payload(path)
    elif damage == "truncated":
        _truncate(path)
    else:
        path.unlink()
    status_code, _, status_err = run(capsys, "binlog", "status", str(directory))
    dump_code, _, dump_err = run(capsys, "binlog", "dump", str(directory))
    assert status_code == dump_code == 2, (status_code, dump_code, status_err, dump_err)
    assert path.name in status_err and "Traceback" not in status_err, status_err
    code, out, _ = run(capsys, "binlog", "status", str(directory), "--quick")
    assert code == 0 and "the ends only" in out
