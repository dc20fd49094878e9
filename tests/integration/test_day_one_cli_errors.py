"""CLI errors a user meets on day one (issue 41, item 8): one line naming what to do, a non-zero
exit, no traceback."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

from pyspark_theflash.upstream.cluster import MiniCluster

if TYPE_CHECKING:
    from flash_rig import FlashRig


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[MiniCluster]:
    c = MiniCluster(tmp_path / "up", tmp_path / "upstream-log", resolved_ts_interval=0.05, gc_run_interval_s=None)
    c.serve(stores=1)
    try:
        yield c
    finally:
        c.close()


def test_a_second_capture_on_the_same_binlog_says_so_in_one_line(cluster: MiniCluster, tmp_path: Path) -> None:
    capture = [sys.executable, "-m", "pyspark_theflash", "capture", "--pd", cluster.pd_address.removeprefix("pd://"),
               "--tidb", f"http://{cluster.status_address}", "--binlog", str(tmp_path / "binlog")]
    first = subprocess.Popen(capture, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert first.stdout is not None
        from polling import wait_for
        from pyspark_theflash.binlog.segment import writer_active

        # the first capture holds the binlog (its SegmentWriter's LOCK) before the second starts
        wait_for(lambda: (tmp_path / "binlog").is_dir() and writer_active(tmp_path / "binlog"), 60,
                 "the first capture to hold its binlog")
        second = subprocess.run(capture, capture_output=True, text=True, timeout=120)
        assert second.returncode != 0
        assert "Traceback" not in second.stderr, second.stderr
        assert "another `theflash capture`" in second.stderr and "another --binlog" in second.stderr, second.stderr
        lines = [line for line in second.stderr.splitlines() if line.startswith("theflash capture:")]
        assert len(lines) == 1, second.stderr
    finally:
        first.terminate()
        first.wait(timeout=60)


def _capture(pd: str, tidb: str, binlog: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyspark_theflash", "capture", "--pd", pd, "--tidb", tidb,
                           "--binlog", str(binlog)], capture_output=True, text=True, timeout=120)


def _one_line(stderr: str, command: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith(f"theflash {command}:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_capture_given_the_status_port_as_pd_names_the_mix_up_at_once(cluster: MiniCluster, tmp_path: Path) -> None:
    started = time.monotonic()
    done = _capture(cluster.status_address, f"http://{cluster.status_address}", tmp_path / "binlog")
    took = time.monotonic() - started
    assert done.returncode != 0
    line = _one_line(done.stderr, "capture")
    assert cluster.status_address in line and "HTTP/1" in line and "status port" in line and "2379" in line, line
    assert "SETTINGS frame" not in line, line
    assert took < 15, took  # no 30 s of retries against a port that will never speak gRPC


def test_capture_with_nothing_at_pd_names_the_address_within_seconds(cluster: MiniCluster, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        free = f"127.0.0.1:{s.getsockname()[1]}"
    started = time.monotonic()
    done = _capture(free, f"http://{cluster.status_address}", tmp_path / "binlog")
    took = time.monotonic() - started
    assert done.returncode != 0
    line = _one_line(done.stderr, "capture")
    assert f"could not reach PD at {free} (connection refused)" in line and "2379" in line, line
    assert took < 20, took


def test_scan_against_a_stopped_writer_names_the_flags_it_takes(tmp_path: Path) -> None:
    from flash_rig import FlashRig
    from pyspark_theflash.upstream.tidb import make_column

    rig = FlashRig(tmp_path / "rig", via="binlog")
    try:
        rig.cluster.create_database("day1")
        rig.cluster.create_table("day1.t", [make_column("id", "BIGINT", not_null=True)], ["id"])
        with rig.cluster.txn() as t:
            t.insert("day1.t", {"id": 1})
        written = rig.cluster.get_ts()
        rig.start_writer()
        rig.wait_replicated("day1.t")
        # the store resolves the table past its first row before the writer stops: the remedy
        # (--snapshot resolved) then has a ts to read at
        from flash_rig import wait_for
        from pyspark_theflash.scan.change_stream import ChangeStream

        wait_for(lambda: ChangeStream(rig.store, "day1.t", {"upstream": rig.upstream}).resolved_ts() >= written, 60,
                 "the store to resolve day1.t past its first row")
        rig.stop_writer()
        with rig.cluster.txn() as t:  # the upstream moves on without the writer
            t.insert("day1.t", {"id": 2})
        scan = [sys.executable, "-m", "pyspark_theflash", "scan", "day1.t", "--store", rig.store,
                "--upstream", rig.upstream, "--region-wait-timeout", "1s"]
        done = subprocess.run(scan, capture_output=True, text=True, timeout=120)
        assert done.returncode != 0
        line = _one_line(done.stderr, "scan")
        assert "--snapshot resolved" in line and "--max-staleness 5s" in line and "--region-wait-timeout" in line, line
        assert "snapshot=resolved" not in line and "max_staleness=" not in line, line
        stale = subprocess.run(scan + ["--max-staleness", "1s"], capture_output=True, text=True, timeout=120)
        if stale.returncode != 0:  # the store's resolved ts is older than 1 s by now
            line = _one_line(stale.stderr, "scan")
            assert "--snapshot resolved" in line, line
            assert "max_staleness=" not in line and "snapshot=resolved" not in line, line
        resolved = subprocess.run(scan + ["--snapshot", "resolved"], capture_output=True, text=True, timeout=120)
        assert resolved.returncode == 0, resolved.stderr  # the remedy works
    finally:
        rig.close()


def test_a_missing_store_names_the_writer_command_that_creates_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-store"
    done = subprocess.run([sys.executable, "-m", "pyspark_theflash", "scan", "db.t", "--store", str(missing)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    line = _one_line(done.stderr, "scan")
    assert f"no store at {missing}" in line and f"theflash writer run --binlog ... --store {missing}" in line, line
    assert "Store.open" not in line, line


def test_a_wrong_table_gets_the_closest_names_from_scan_and_the_python_source(tmp_path: Path) -> None:
    from flash_rig import FlashRig
    from pyspark_theflash.scan import plan
    from pyspark_theflash.scan.errors import TableNotReplicatedError
    from pyspark_theflash.store import Store, UnknownTableNameError
    from pyspark_theflash.upstream.tidb import make_column

    rig = FlashRig(tmp_path / "rig", via="binlog")
    try:
        rig.cluster.create_table("shop.orders", [make_column("id", "BIGINT", not_null=True)], ["id"])
        rig.start_writer()
        rig.wait_replicated("shop.orders")
        scan = [sys.executable, "-m", "pyspark_theflash", "scan", "shop.order", "--store", rig.store,
                "--upstream", rig.upstream]
        for extra in ([], ["--snapshot", "resolved"]):
            done = subprocess.run(scan + extra, capture_output=True, text=True, timeout=120)
            assert done.returncode != 0
            line = _one_line(done.stderr, "scan")
            assert "shop.order" in line and "did you mean shop.orders?" in line, (extra, line)
        with pytest.raises(TableNotReplicatedError, match=r"did you mean shop\.orders\?"):
            with plan(rig.store, "shop.order", {"upstream": rig.upstream}):
                pass
        with Store.open(rig.store, readonly=True) as store, store.snapshot() as view:
            with pytest.raises(UnknownTableNameError, match=r"did you mean shop\.orders\?"):
                view.table("shop.ordres")
    finally:
        rig.close()


def test_a_wrong_version_or_timestamp_as_of_is_reported_by_the_name_the_user_gave() -> None:
    from pyspark_theflash.scan.errors import ScanOptionError
    from pyspark_theflash.scan.options import ScanOptions

    for given, says in (({"versionAsOf": "yesterday"}, "option versionAsOf='yesterday' is not a TSO number"),
                        ({"versionAsOf": "-3"}, "option versionAsOf='-3' must be a positive"),
                        ({"versionAsOf": "5", "timestampAsOf": "2026-01-01"}, "give either versionAsOf or "
                                                                                 "timestampAsOf, not both"),
                        ({"snapshot_ts": "x"}, "option snapshot_ts='x' is not a TSO number"),
                        ({"timestampAsOf": "yesterday"}, "option timestampAsOf='yesterday' is not a time: write "
                                                         "ISO-8601"),
                        ({"as_of": "x"}, "option as_of='x' is not a time")):
        with pytest.raises(ScanOptionError) as err:
            ScanOptions.from_mapping({"store": "/nowhere", "table": "db.t", **given})
        assert says in str(err.value), str(err.value)


@pytest.fixture
def served_store(tmp_path: Path) -> Iterator[FlashRig]:
    """A store its writer filled from a mini cluster (which it records as the store's upstream)."""
    from flash_rig import FlashRig
    from pyspark_theflash.upstream.tidb import make_column

    rig = FlashRig(tmp_path / "rig", via="binlog")
    try:
        rig.cluster.create_table("day1.t", [make_column("id", "BIGINT", not_null=True)], ["id"])
        rig.start_writer()
        rig.wait_replicated("day1.t")
        yield rig
    finally:
        rig.close()


def _serve(store: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pyspark_theflash", "serve", "--store", store, "--port", "0", *extra]


def test_serve_refuses_an_upstream_that_does_not_answer_or_is_another_cluster_in_one_line(
        served_store: FlashRig, cluster: MiniCluster) -> None:
    import socket

    store = served_store.store
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        free = f"127.0.0.1:{s.getsockname()[1]}"
    started = time.monotonic()
    done = subprocess.run(_serve(store, "--upstream", f"pd://{free}", "--upstream-timeout", "2"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and time.monotonic() - started < 30
    line = _one_line(done.stderr, "serve")
    assert f"--upstream pd://{free}: could not reach PD at {free} (connection refused) within 2 s" in line, line
    # a PD that answers, of another cluster than the one the store replicates: its reads would take
    # that cluster's timestamps
    cluster.cluster_id = 4242
    done = subprocess.run(_serve(store, "--upstream", cluster.pd_address), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    line = _one_line(done.stderr, "serve")
    assert (f"--upstream {cluster.pd_address} is cluster 4242, but store {store} replicates cluster "
            f"{served_store.cluster.cluster_id} (its writer ran with --upstream {served_store.upstream}): give that "
            "cluster's address") in line, line


def test_serve_with_stop_on_stdin_close_stops_when_its_input_closes(served_store: FlashRig) -> None:
    rig = served_store
    served = subprocess.Popen(_serve(rig.store, "--upstream", rig.upstream, "--stop-on-stdin-close"),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert served.stdout is not None and served.stdin is not None
        line = served.stdout.readline()
        assert "http http://127.0.0.1:" in line
        import re
        import urllib.request

        url = re.search(r"http (http://127\.0\.0\.1:\d+)", line).group(1)
        with urllib.request.urlopen(f"{url}/v1/status", timeout=30) as resp:  # serving while its input is open
            assert resp.status == 200
        assert served.poll() is None
        served.stdin.close()
        assert served.wait(timeout=30) == 0
    finally:
        if served.poll() is None:
            served.kill()
            served.wait()
