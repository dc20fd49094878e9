"""Every long-running command refuses a port another process holds, in one line naming the port
and its own option (pyspark_theflash/ports.py), and two mini clusters never share a port.

gRPC servers set SO_REUSEPORT by default, so a second process given the same port used to bind
it too and answer half the clients."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.tidb import make_column

THEFLASH = [sys.executable, "-m", "pyspark_theflash"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MiniCluster, Path]]:
    """A mini cluster serving PD and TiDB's status port, and a store its writer caught up."""
    root = tmp_path_factory.mktemp("ports")
    cluster = MiniCluster(root / "up", root / "binlog", resolved_ts_interval=0.05, gc_run_interval_s=None)
    cluster.serve(stores=1, binlog_port=None)
    cluster.create_table("t.p", [make_column("id", "BIGINT", not_null=True)], primary_key=["id"])
    cluster.run_txn(lambda t: t.insert("t.p", {"id": 1}))
    done = subprocess.run(THEFLASH + ["writer", "run", "--binlog", f"file://{root / 'binlog'}", "--store",
                                      str(root / "store"), "--until-caught-up"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    try:
        yield cluster, root
    finally:
        cluster.close()


@pytest.fixture
def taken() -> Iterator[int]:
    """A port a plain socket listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _refused(args: list[str], command: str, option: str, port: int) -> None:
    done = subprocess.run(THEFLASH + args, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode != 0, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr  # nothing else: no gRPC log line either
    assert lines[0].startswith(f"theflash {command}: "), done.stderr
    assert f"127.0.0.1:{port}" in lines[0] and f"{option} {port}" in lines[0] and "in use" in lines[0], lines[0]


@pytest.mark.parametrize("option", ["--serve", "--pd-port", "--status-port", "--binlog-port"])
def test_upstream_refuses_each_port_in_use(tmp_path: Path, taken: int, option: str) -> None:
    ports = {"--serve": "0", option: str(taken)}
    _refused(["upstream", "--data", str(tmp_path / "up"), *(w for kv in ports.items() for w in kv)],
             "upstream", option, taken)


@pytest.mark.parametrize("option", ["--serve-binlog", "--metrics-port"])
def test_capture_refuses_a_binlog_or_metrics_port_in_use(
        world: tuple[MiniCluster, Path], tmp_path: Path, taken: int, option: str) -> None:
    cluster, _ = world
    _refused(["capture", "--pd", cluster.pd_address.removeprefix("pd://"), "--tidb", f"http://{cluster.status_address}",
              "--binlog", str(tmp_path / "binlog"), option, str(taken)], "capture", option, taken)


@pytest.mark.parametrize("option", ["--serve", "--serve-http-port", "--metrics-port"])
def test_the_writer_refuses_a_service_or_metrics_port_in_use(
        world: tuple[MiniCluster, Path], tmp_path: Path, taken: int, option: str) -> None:
    _, root = world
    ports = {"--serve": "0", option: str(taken)} if option == "--serve-http-port" else {option: str(taken)}
    _refused(["writer", "run", "--binlog", f"file://{root / 'binlog'}", "--store", str(tmp_path / "store"),
              *(w for kv in ports.items() for w in kv)], "writer", option, taken)


@pytest.mark.parametrize("option", ["--port", "--http-port"])
def test_serve_refuses_a_flight_or_http_port_in_use(world: tuple[MiniCluster, Path], taken: int, option: str) -> None:
    _, root = world
    ports = {"--port": "0", option: str(taken)}
    _refused(["serve", "--store", str(root / "store"), *(w for kv in ports.items() for w in kv)],
             "serve", option, taken)


def test_binlog_serve_and_the_latch_refuse_a_port_in_use(world: tuple[MiniCluster, Path], taken: int) -> None:
    _, root = world
    _refused(["binlog", "serve", str(root / "binlog"), "--port", str(taken)], "binlog", "--port", taken)
    _refused(["latch", "serve", "--store", str(root / "store"), "--port", str(taken)], "latch", "--port", taken)


def test_two_mini_clusters_never_share_a_port(tmp_path: Path) -> None:
    with socket.socket() as a, socket.socket() as b:  # two free ports, let go for the first cluster
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        serve, pd = a.getsockname()[1], b.getsockname()[1]
    first = subprocess.Popen(THEFLASH + ["upstream", "--data", str(tmp_path / "one"), "--serve", str(serve),
                                         "--pd-port", str(pd)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True)
    try:
        assert first.stdout is not None
        for line in first.stdout:
            if "serving upstream" in line:
                break
        else:
            pytest.fail("the first mini cluster never served")
        _refused(["upstream", "--data", str(tmp_path / "two"), "--serve", str(serve), "--pd-port", "0"],
                 "upstream", "--serve", serve)
        _refused(["upstream", "--data", str(tmp_path / "three"), "--serve", "0", "--pd-port", str(pd)],
                 "upstream", "--pd-port", pd)
        assert first.poll() is None  # the first cluster serves on
    finally:
        first.terminate()
        first.wait(60)


@pytest.fixture(scope="module")
def flight_held(world: tuple[MiniCluster, Path]) -> Iterator[int]:
    """The Flight port of a running `theflash serve` (pyarrow's Flight server turns SO_REUSEPORT
    on for itself, so a second listener that also asked for it would share the port)."""
    _, root = world
    serving = subprocess.Popen(THEFLASH + ["serve", "--store", str(root / "store"), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert serving.stdout is not None
        line = serving.stdout.readline()
        assert "flight grpc://127.0.0.1:" in line, line
        yield int(line.split("flight grpc://127.0.0.1:")[1].split()[0])
        assert serving.poll() is None  # the first one serves on
    finally:
        serving.terminate()
        serving.wait(60)


@pytest.mark.parametrize("command, option", [
    ("upstream", "--serve"), ("upstream", "--status-port"), ("serve", "--port"), ("serve", "--http-port"),
    ("upstream", "--pd-port"), ("upstream", "--binlog-port"), ("writer", "--serve"), ("writer", "--serve-http-port"),
    ("writer", "--metrics-port"), ("binlog", "--port"), ("latch", "--port"), ("capture", "--serve-binlog"),
    ("capture", "--metrics-port")])
def test_every_long_running_command_refuses_a_port_a_theflash_serve_holds(
        world: tuple[MiniCluster, Path], flight_held: int, tmp_path: Path, command: str, option: str) -> None:
    cluster, root = world
    port = str(flight_held)
    args = {
        "upstream": ["upstream", "--data", str(tmp_path / "up"), "--serve", "0", option, port],  # the last --serve counts
        "serve": ["serve", "--store", str(root / "store"), "--port", "0", option, port],
        "writer": ["writer", "run", "--binlog", f"file://{root / 'binlog'}", "--store", str(tmp_path / "store"),
                   *(["--serve", "0"] if option == "--serve-http-port" else []), option, port],
        "binlog": ["binlog", "serve", str(root / "binlog"), "--port", port],
        "latch": ["latch", "serve", "--store", str(root / "store"), "--port", port],
        "capture": ["capture", "--pd", cluster.pd_address.removeprefix("pd://"), "--tidb",
                    f"http://{cluster.status_address}", "--binlog", str(tmp_path / "binlog"), option, port],
    }[command]
    _refused(args, command, option, flight_held)


def test_a_flight_server_refuses_the_port_of_the_mini_clusters_pd(world: tuple[MiniCluster, Path]) -> None:
    cluster, root = world
    pd = int(cluster.pd_address.rsplit(":", 1)[1])
    _refused(["serve", "--store", str(root / "store"), "--port", str(pd)], "serve", "--port", pd)
