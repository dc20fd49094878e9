"""Every long-running process that speaks only gRPC answers gRPC's health checking protocol
(grpc/grpc doc/health-checking.md; pyspark_theflash/grpc_health.py), as the writer, capture and
the read service answer /healthz: `theflash latch serve`, `theflash binlog serve` and the mini
cluster's PD, TiKV and Upstream servers.

The calls are made with bytes written from the protocol's definition (``grpc.health.v1.Health``,
field 1 of each message, ServingStatus SERVING = 1, SERVICE_UNKNOWN = 3), not with the project's
generated stubs, so a wrong package, method or field number fails here."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import grpc
import pytest

from pyspark_theflash.upstream.cluster import MiniCluster

THEFLASH = [sys.executable, "-m", "pyspark_theflash"]
CHECK, WATCH = "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"
SERVING, SERVICE_UNKNOWN = 1, 3


def _request(service: str) -> bytes:
    """HealthCheckRequest{service}: field 1, a length-delimited string (empty: no field)."""
    raw = service.encode()
    assert len(raw) < 128
    return b"\x0a" + bytes([len(raw)]) + raw if raw else b""


def _status(response: bytes) -> int:
    """HealthCheckResponse's status (field 1, a varint; absent: UNKNOWN = 0)."""
    if not response:
        return 0
    assert response[0] == 0x08 and len(response) == 2, response
    return response[1]


def check(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(CHECK, request_serializer=None, response_deserializer=None)
        return _status(call(_request(service), timeout=10))


def watch_first(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        stream = channel.unary_stream(WATCH, request_serializer=None, response_deserializer=None)(
            _request(service), timeout=10)
        first = next(iter(stream))
        stream.cancel()
        return _status(first)


def _assert_healthy(address: str, services: list[str]) -> None:
    assert check(address) == SERVING
    for service in services:
        assert check(address, service) == SERVING, service
    with pytest.raises(grpc.RpcError) as unknown:
        check(address, "no.such.Service")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert services[0] in (unknown.value.details() or "")  # it says what it does serve
    assert watch_first(address, services[0]) == SERVING
    assert watch_first(address, "no.such.Service") == SERVICE_UNKNOWN


@pytest.fixture
def process() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _start(args: list[str], started: list[subprocess.Popen[str]]) -> str:
    """A command in its own process; the host:port its first line of output names."""
    proc = subprocess.Popen(THEFLASH + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    started.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"127\.0\.0\.1:\d+", line)
    assert match, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
    return match.group(0)


def test_the_latch_and_binlog_servers_answer_grpc_health_checks(
        tmp_path: Path, process: list[subprocess.Popen[str]]) -> None:
    from pyspark_theflash.store import Store

    store, binlog = tmp_path / "store", tmp_path / "binlog"
    Store.open(store).close()
    binlog.mkdir()
    latch = _start(["latch", "serve", "--store", str(store), "--port", "0"], process)
    _assert_healthy(latch, ["theflash.latch.Latch", "grpc.health.v1.Health"])
    served = _start(["binlog", "serve", str(binlog), "--port", "0"], process)
    _assert_healthy(served, ["theflash.binlog.BinlogService"])
    # a stopped server refuses the call: a prober reads that as unhealthy
    proc = process.pop()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    with pytest.raises(grpc.RpcError) as gone:
        check(served)
    assert gone.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_mini_clusters_pd_tikv_and_upstream_answer_grpc_health_checks(tmp_path: Path) -> None:
    cluster = MiniCluster(tmp_path / "up", tmp_path / "binlog", gc_run_interval_s=None)
    cluster.serve(stores=2, binlog_port=None)
    try:
        _assert_healthy(cluster.pd_address.removeprefix("pd://").split(",")[0], ["pdpb.PD"])
        for server in cluster.store_servers:
            _assert_healthy(server.address, ["tikvpb.Tikv", "cdcpb.ChangeData"])
        _assert_healthy(cluster.upstream_address.removeprefix("grpc://"), ["theflash.upstream.Upstream"])
    finally:
        cluster.close()
