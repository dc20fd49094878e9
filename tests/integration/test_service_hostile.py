"""The service survives hostile local clients (service/http.py's limits): unauthenticated oversized
bodies, lying and negative Content-Lengths, connections that never finish their headers, filters
nested 100,000 deep. ``theflash serve`` runs in a process of its own, so its memory and threads are
its own: through every attack its memory stays within 50 MiB of idle and its threads bounded by
its worker pool, and valid reads work afterwards on both front ends."""
from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator, NamedTuple

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flash_rig import FlashRig, wait_for
from pyspark_theflash.upstream.tidb import make_column
from service_client import FlightReader, HttpReader

TABLE = "bank.accounts"
ACCOUNTS = 50
TOKEN = "hostile-test-token"
WORKERS = 8
HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
MIB = 1 << 20


class Served(NamedTuple):
    pid: int
    host: str
    http_port: int
    flight: str
    argv: list[str]  # how it was started: a test starts another like it


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("hostile")
    rig = FlashRig(root)
    server = None
    try:
        rig.cluster.create_table(TABLE, [make_column("id", "BIGINT", not_null=True),
                                         make_column("balance", "BIGINT")], primary_key=["id"])
        rig.cluster.bulk_insert(TABLE, pa.table({"id": pa.array(range(ACCOUNTS), pa.int64()),
                                                 "balance": pa.array([100] * ACCOUNTS, pa.int64())}))
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated(TABLE)
        (root / "token").write_text(TOKEN + "\n")
        argv = [sys.executable, "-m", "pyspark_theflash", "serve", "--store", rig.store, "--port", "0",
                "--token-file", str(root / "token"), "--upstream", rig.upstream,
                "--http-workers", str(WORKERS), "--http-header-timeout", str(HEADER_TIMEOUT_S),
                "--http-body-timeout", str(BODY_TIMEOUT_S), "--http-idle-timeout", "2"]
        server, served = start(argv, root / "serve.log")
        yield served
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        rig.close()


def start(argv: list[str], log_path: Path) -> tuple[subprocess.Popen[str], Served]:
    with log_path.open("w") as log:
        server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
    line = server.stdout.readline()  # type: ignore[union-attr]
    found = re.search(r"flight (grpc://\S+)\s+http http://([\d.]+):(\d+)", line)
    assert found, f"theflash serve did not start: {line!r} {log_path.read_text()[-2000:]}"
    return server, Served(server.pid, found.group(2), int(found.group(3)), found.group(1), argv)


def status_of(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            fields[key] = int(value.split()[0])
    return {"rss": fields["VmRSS"] * 1024, "threads": fields["Threads"]}


def valid_reads(s: Served) -> None:
    """A whole read over HTTP and over Flight: every account, every balance."""
    table, _ = HttpReader(f"http://{s.host}:{s.http_port}", token=TOKEN).read({"table": TABLE})
    assert sorted(table.column("id").to_pylist()) == list(range(ACCOUNTS))
    assert set(table.column("balance").to_pylist()) == {100}
    reader = FlightReader(s.flight, token=TOKEN)
    try:
        table, _ = reader.read({"table": TABLE})
        assert table.num_rows == ACCOUNTS
    finally:
        reader.close()


def connect(s: Served) -> socket.socket:
    sock = socket.create_connection((s.host, s.http_port), timeout=10)
    return sock


def answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body of one answer (Content-Length framed) read from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    size = int(headers.get("content-length", "0"))
    while len(body) < size:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def error_code(body: bytes) -> str:
    return json.loads(body)["error"]["code"]


def test_hostile_clients_leave_memory_and_threads_bounded_and_valid_reads_working(served: Served) -> None:
    valid_reads(served)  # warm: the store opened, a session planned and read on both front ends
    idle = status_of(served.pid)
    peak_threads = idle["threads"]
    bound = idle["threads"] + WORKERS + 2

    def threads_bounded() -> None:
        nonlocal peak_threads
        now = status_of(served.pid)["threads"]
        peak_threads = max(peak_threads, now)
        assert now <= bound, (now, idle)

    # 1. unauthenticated oversized bodies: refused on the headers, the body never read
    for _ in range(10):
        sock = connect(served)
        try:
            sock.sendall(b"POST /v1/read-sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 209715200\r\n\r\n")
            status, headers, body = answer(sock)
            assert status == 401 and error_code(body) == "unauthenticated" and headers.get("connection") == "close"
            sent = 0
            try:
                while sent < 20 * MIB:
                    sock.sendall(b"\0" * MIB)
                    sent += MIB
            except OSError:
                pass  # the server closed the connection: what it had not read is dropped
        finally:
            sock.close()
    # a lying size without a token is refused the same way; with one, a negative size is a 400
    for length, token, expected in ((b"-1", b"", 401), (b"-1", TOKEN.encode(), 400), (b"abc", TOKEN.encode(), 400),
                                    (b"2097152", TOKEN.encode(), 413)):
        sock = connect(served)
        try:
            auth = b"Authorization: Bearer " + token + b"\r\n" if token else b""
            sock.sendall(b"POST /v1/read-sessions HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: " + length + b"\r\n\r\n{}")
            status, headers, _ = answer(sock)
            assert status == expected and headers.get("connection") == "close", (length, status)
        finally:
            sock.close()
    # a body without a Content-Length is refused (411), not read until the client closes
    sock = connect(served)
    try:
        sock.sendall(b"POST /v1/read-sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                     + b"\r\n\r\n" + b"x" * 4096)
        status, _, body = answer(sock)
        assert status == 411 and error_code(body) == "length_required"
    finally:
        sock.close()
    threads_bounded()

    # 2. a lying Content-Length: 1000 promised, 10 sent, then silence: cut off after the body timeout
    sock = connect(served)
    try:
        sock.sendall(b"POST /v1/read-sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                     + b"\r\nContent-Length: 1000\r\n\r\n{\"table\":")
        sock.settimeout(0.2)
        wait_for(lambda: closed_by_server(sock), 10 * BODY_TIMEOUT_S, "the server to drop a body that never comes")
    finally:
        sock.close()

    # 3. 200 half-open connections (headers never finished): threads stay bounded, all are closed
    halves = []
    for i in range(200):
        sock = connect(served)
        sock.sendall(b"GET /v1/tab")
        sock.settimeout(0.05)
        halves.append(sock)
        if i % 20 == 0:
            threads_bounded()
    open_ones = set(range(len(halves)))

    def all_closed() -> bool:
        threads_bounded()
        for i in list(open_ones):
            if closed_by_server(halves[i]):
                open_ones.discard(i)
        return not open_ones

    try:
        wait_for(all_closed, 30, "the server to close 200 connections that never finished their headers")
    finally:
        for sock in halves:
            sock.close()

    # 4. filters nested 100,000 deep (JSON lists) and 500 deep (the filter's own "not"): 400 invalid_filter
    deep_lists = b'{"table": "' + TABLE.encode() + b'", "filter": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    nots = {"table": TABLE, "filter": [json.loads('{"not": ' * 500 + '["id", "=", 1]' + "}" * 500)]}
    http = HttpReader(f"http://{served.host}:{served.http_port}", token=TOKEN)
    for body in (deep_lists, json.dumps(nots).encode()):
        status, _, data = http.request("POST", "/v1/read-sessions", raw=body)
        assert status == 400 and error_code(data) == "invalid_filter", (status, data[:300])
        reader = FlightReader(served.flight, token=TOKEN)
        try:
            with pytest.raises(flight.FlightServerError, match="^invalid_filter"):
                reader.client.get_flight_info(flight.FlightDescriptor.for_command(body), reader.options)
        finally:
            reader.close()
    threads_bounded()

    # afterwards: memory near idle, threads bounded, valid reads work
    valid_reads(served)
    after = status_of(served.pid)
    print(f"theflash serve: idle {idle['rss'] / MIB:.1f} MiB {idle['threads']} threads; after the attacks "
          f"{after['rss'] / MIB:.1f} MiB {after['threads']} threads; at most {peak_threads} threads during them")
    assert after["rss"] - idle["rss"] <= 50 * MIB, (after, idle)
    assert peak_threads <= bound, (peak_threads, idle)


def test_a_kept_alive_connection_idle_past_its_timeout_is_closed_and_reads_go_on(served: Served) -> None:
    sock = connect(served)
    try:
        sock.sendall(b"GET /v1/tables HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
        status, _, body = answer(sock)
        assert status == 200 and TABLE in body.decode()
        sock.settimeout(0.2)
        wait_for(lambda: closed_by_server(sock), 15, "the server to close an idle kept-alive connection")
    finally:
        sock.close()
    valid_reads(served)


def test_serve_stops_at_once_on_sigterm_with_kept_alive_connections_open(served: Served, tmp_path: Path) -> None:
    """Workers waiting on idle kept-alive connections do not hold up the process's exit."""
    server, other = start(served.argv, tmp_path / "serve.log")
    held: list[socket.socket] = []
    try:
        for _ in range(3):
            sock = connect(other)
            sock.sendall(b"GET /v1/tables HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
            assert answer(sock)[0] == 200  # answered; the connection stays open, idle
            held.append(sock)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=15) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
        for sock in held:
            sock.close()


def test_connections_past_the_pool_and_its_queue_are_answered_busy_and_the_pool_recovers(served: Served) -> None:
    held = [connect(served) for _ in range(2 * WORKERS)]  # every worker and queue slot, idle
    try:
        for sock in held:
            sock.sendall(b"GET")
        extra = connect(served)
        try:
            status, _, body = wait_for(lambda: answer(extra), 10, "a busy answer")
            assert status == 503 and error_code(body) == "busy"
        finally:
            extra.close()
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: _reads_ok(served), 30, "reads to work once the held connections are gone")


def _reads_ok(s: Served) -> bool:
    try:
        valid_reads(s)
        return True
    except (AssertionError, OSError):
        return False
