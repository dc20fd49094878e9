"""Capture run as the writer is (issue 52, item 8): in the background (`capture start`), found
and stopped by its binlog (`capture status`, `capture stop`), a stop line on SIGINT/SIGTERM,
its log in --log, and /metrics, /status and /healthz at --metrics-port."""
from __future__ import annotations

import json
import signal
import socket
import socketserver
import threading
import time
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from polling import wait_for

from pyspark_theflash.processes import process_is_gone
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.tidb import make_column

THEFLASH = [sys.executable, "-m", "pyspark_theflash"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[MiniCluster]:
    c = MiniCluster(tmp_path / "up", tmp_path / "upstream-log", resolved_ts_interval=0.05, gc_run_interval_s=None)
    c.serve(stores=1)
    try:
        yield c
    finally:
        c.close()


def _upstream(cluster: MiniCluster) -> list[str]:
    return ["--pd", cluster.pd_address.removeprefix("pd://"), "--tidb", f"http://{cluster.status_address}"]


def _status(binlog: Path) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(THEFLASH + ["capture", "status", "--binlog", str(binlog), "--json"],
                          capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_capture_starts_in_the_background_reports_its_status_and_metrics_and_stops(
        cluster: MiniCluster, tmp_path: Path) -> None:
    cluster.create_table("shop.items", [make_column("id", "BIGINT", not_null=True), make_column("v", "VARCHAR(20)")],
                         primary_key=["id"])
    cluster.run_txn(lambda t: [t.insert("shop.items", {"id": i, "v": f"v{i}"}) for i in range(50)])
    binlog, log = tmp_path / "binlog", tmp_path / "logs" / "capture.log"
    started = subprocess.run(THEFLASH + ["capture", "start", *_upstream(cluster), "--binlog", str(binlog),
                                         "--metrics-port", "0", "--log", str(log)],
                             capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    assert "capture started (pid" in started.stdout and str(log) in started.stdout
    pid = int((binlog / "capture.pid").read_text())
    try:
        # its status file: running, every region registered and resolved
        wait_for(lambda: _status(binlog)[1].get("least_resolved_ts", 0) > 0, 60, "capture's status to say resolved")
        code, status = _status(binlog)
        assert code == 0 and status["running"] and status["pid"] == pid and status["state"] == "running"
        assert status["regions"] >= 1 and status["initialised"] == status["regions"] and status["healthy"]
        assert status["rows_written"] >= 50  # the table's rows, in the initial snapshots
        text = subprocess.run(THEFLASH + ["capture", "status", "--binlog", str(binlog)], capture_output=True,
                              text=True, timeout=60).stdout
        assert f"capture running (pid {pid})" in text and "least resolved ts" in text

        port = status["metrics_port"]
        code, metrics = _get(f"http://127.0.0.1:{port}/metrics")
        assert code == 200
        samples = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if line and not line.startswith("#"))
        assert int(samples["theflash_capture_regions"]) == status["regions"]
        assert int(samples["theflash_capture_up"]) == 1
        assert float(samples["theflash_capture_rows_written_total"]) >= 50
        # as the writer's: resolved ts, lag and rate gauges, errors counted by kind
        assert int(samples["theflash_capture_least_resolved_ts_physical_ms"]) > 0
        assert float(samples["theflash_capture_lag_seconds"]) >= 0 and "theflash_capture_rows_per_second" in samples
        assert "# TYPE theflash_capture_errors_total counter" in metrics
        assert _get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
        code, body = _get(f"http://127.0.0.1:{port}/status")
        assert code == 200 and json.loads(body)["pid"] == pid

        # a second start on the same binlog: one line, nothing started
        again = subprocess.run(THEFLASH + ["capture", "start", *_upstream(cluster), "--binlog", str(binlog)],
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 2 and again.stderr.count("\n") == 1 and "Traceback" not in again.stderr
        assert f"a capture (pid {pid}) already writes --binlog" in again.stderr

        stopped = subprocess.run(THEFLASH + ["capture", "stop", "--binlog", str(binlog)], capture_output=True,
                                 text=True, timeout=120)
        assert stopped.returncode == 0 and f"capture (pid {pid}) stopped" in stopped.stdout
    finally:
        subprocess.run(THEFLASH + ["capture", "stop", "--binlog", str(binlog)], capture_output=True, timeout=120)
    logged = log.read_text()
    assert "signal 15: stopping" in logged and "stopped: " in logged and "Traceback" not in logged
    assert not (binlog / "capture.pid").exists()
    code, status = _status(binlog)
    assert code == 3 and not status["running"] and status["state"] == "stopped" and not status["healthy"]
    nothing = subprocess.run(THEFLASH + ["capture", "stop", "--binlog", str(binlog)], capture_output=True, text=True,
                             timeout=60)
    assert nothing.returncode == 2 and "no capture is running for --binlog" in nothing.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_capture_with_a_stop_line_and_its_state_saved(
        cluster: MiniCluster, tmp_path: Path, signum: int) -> None:
    """The stop line, the state saved and the final line within a second of the signal, as the
    writer's (issue 52, item 8); the process ends right after."""
    import time

    binlog = tmp_path / "binlog"
    proc = subprocess.Popen(THEFLASH + ["capture", *_upstream(cluster), "--binlog", str(binlog)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []
    try:
        wait_for(lambda: (binlog / "capture-state.json").exists(), 60, "capture to run and save its state")
        assert proc.stdout is not None
        signalled = time.monotonic()
        proc.send_signal(signum)
        for line in proc.stdout:
            lines.append((time.monotonic() - signalled, line.rstrip()))
        proc.wait(60)
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    out = "\n".join(line for _, line in lines)
    assert proc.returncode == 0, err
    assert f"capture: signal {int(signum)}: stopping" in out
    assert out.rstrip().splitlines()[-1].startswith("capture: stopped: ")
    stopped_after = [at for at, line in lines if line.startswith("capture: stopped: ")][0]
    assert stopped_after < 1.0, (stopped_after, out)
    assert "Traceback" not in err
    assert json.loads((binlog / "capture-state.json").read_text())["cluster_id"]  # saved on the way out
    assert not (binlog / "capture.pid").exists()


def test_capture_run_daemon_detaches_as_start_does_its_log_in_the_binlog_directory(
        cluster: MiniCluster, tmp_path: Path) -> None:
    """`capture run --daemon`, the writer's `writer run --daemon`: detached, found by its pid
    file, its log in DIR/capture.log when --log is not given, stopped by `capture stop`."""
    binlog = tmp_path / "binlog"
    started = subprocess.run(THEFLASH + ["capture", "run", "--daemon", *_upstream(cluster), "--binlog", str(binlog)],
                             capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    pid = int((binlog / "capture.pid").read_text())
    assert f"capture started (pid {pid})" in started.stdout and str(binlog / "capture.log") in started.stdout
    try:
        wait_for(lambda: _status(binlog)[1].get("state") == "running", 60, "the detached capture to run")
        assert _status(binlog)[1]["pid"] == pid
    finally:
        stopped = subprocess.run(THEFLASH + ["capture", "stop", "--binlog", str(binlog)], capture_output=True,
                                 text=True, timeout=120)
    assert stopped.returncode == 0 and f"capture (pid {pid}) stopped" in stopped.stdout, stopped.stderr
    logged = (binlog / "capture.log").read_text()
    assert "signal 15: stopping" in logged and "stopped: " in logged and "Traceback" not in logged



class SlowProxy(socketserver.ThreadingTCPServer):
    """A TCP proxy on 127.0.0.1 that holds each connection ``delay_s`` before it forwards it to
    ``target``: an upstream across a slow network."""
    daemon_threads = True

    def __init__(self, target: tuple[str, int], delay_s: float) -> None:
        self.target, self.delay_s = target, delay_s
        super().__init__(("127.0.0.1", 0), _SlowlyForwarded)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _SlowlyForwarded(socketserver.BaseRequestHandler):
    server: SlowProxy

    def handle(self) -> None:
        time.sleep(self.server.delay_s)
        with socket.create_connection(self.server.target) as upstream:
            def pipe(src: socket.socket, dst: socket.socket) -> None:
                while chunk := src.recv(65536):
                    dst.sendall(chunk)
                dst.shutdown(socket.SHUT_WR)

            back = threading.Thread(target=pipe, args=(upstream, self.request), daemon=True)
            back.start()
            pipe(self.request, upstream)
            back.join(30)


def test_capture_start_fails_when_the_tables_it_names_are_not_there_and_leaves_no_capture(
        cluster: MiniCluster, tmp_path: Path) -> None:
    """`capture start` returns once capture is up, the tables it names checked: one TiDB does not
    have is the command's error, even where TiDB answers slowly (here half a second a request;
    it once said "capture started" and the capture exited a moment later)."""
    binlog = tmp_path / "binlog"
    host, port = cluster.status_address.rsplit(":", 1)
    proxy = SlowProxy((host, int(port)), delay_s=0.5)
    try:
        started = subprocess.run(THEFLASH + ["capture", "start", "--pd", cluster.pd_address.removeprefix("pd://"),
                                             "--tidb", f"http://{proxy.address}", "--binlog", str(binlog),
                                             "--tables", "shop.nosuch"], capture_output=True, text=True, timeout=120)
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert started.returncode == 2, started.stdout
    assert "capture started" not in started.stdout
    assert "--tables names shop.nosuch" in started.stderr and "Traceback" not in started.stderr, started.stderr
    assert not (binlog / "capture.pid").exists()


def test_capture_start_fails_when_its_metrics_port_is_taken_and_leaves_no_capture(
        cluster: MiniCluster, tmp_path: Path) -> None:
    """`capture start` returns once capture is up, its ports listening: a port another process
    holds is the command's error (it once said "capture started" and the capture died)."""
    binlog = tmp_path / "binlog"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        started = subprocess.run(THEFLASH + ["capture", "start", *_upstream(cluster), "--binlog", str(binlog),
                                             "--metrics-port", str(taken)], capture_output=True, text=True, timeout=120)
    assert started.returncode == 2, started.stdout
    assert "capture started" not in started.stdout
    assert f"127.0.0.1:{taken}" in started.stderr and "in use" in started.stderr, started.stderr
    assert "--metrics-port" in started.stderr and "Traceback" not in started.stderr
    pid = int((binlog / "capture.pid").read_text()) if (binlog / "capture.pid").exists() else None
    assert pid is None or process_is_gone(pid)
    stopped = subprocess.run(THEFLASH + ["capture", "stop", "--binlog", str(binlog)], capture_output=True, text=True,
                             timeout=60)
    assert stopped.returncode == 2 and "no capture is running" in stopped.stderr, stopped.stderr
