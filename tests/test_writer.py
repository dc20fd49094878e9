"""The writer job end to end, each part in its own process: a mini cluster running the bank
workload (tests/bank_cluster.py), `theflash writer ...` applying its binlog (file and gRPC
forms) to a store, and readers in this process reading the store at many snapshot ts."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import ROOT
from pyspark_theflash import latch as latch_mod
from pyspark_theflash.latch.local import _process_is_gone

from polling import wait_for

PY = sys.executable
TABLE = "bank.accounts"



class BankCluster:
    """tests/bank_cluster.py in its own process."""

    def __init__(self, root: Path, accounts: int = 20) -> None:
        self.ready = root / "cluster.ready"
        self.binlog_dir = root / "binlog"
        self.proc = subprocess.Popen(
            [PY, str(ROOT / "tests" / "bank_cluster.py"), "--data", str(root / "cluster"), "--binlog", str(self.binlog_dir),
             "--ready", str(self.ready), "--accounts", str(accounts)],
            stdout=subprocess.DEVNULL, stderr=open(root / "cluster.err", "wb"),
        )
        wait_for(lambda: self.ready.exists() or self.proc.poll() is not None, 60, "the mini cluster to serve")
        if not self.ready.exists():
            raise AssertionError(f"mini cluster failed: {(root / 'cluster.err').read_text()}")
        self.info = json.loads(self.ready.read_text())
        from pyspark_theflash.upstream.client import connect as connect_upstream

        self.client = connect_upstream(self.info["upstream"])

    def binlog(self, form: str) -> str:
        return self.info["binlog_file"] if form == "file" else self.info["binlog_grpc"]

    def stop_workload(self) -> dict[str, Any]:
        """Stop the transfers; returns {"ts", "balances"} of the table at a ts after the last one."""
        final = Path(str(self.ready) + ".final")
        self.proc.send_signal(signal.SIGUSR1)
        wait_for(final.exists, 30, "the cluster's final state")
        data = json.loads(final.read_text())
        return {"ts": int(data["ts"]), "balances": {int(k): int(v) for k, v in data["balances"].items()}}

    def close(self) -> None:
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[BankCluster]:
    c = BankCluster(tmp_path)
    yield c
    c.close()


def start_writer(store: Path, binlog: str, cluster: BankCluster, *extra: str, log: Path | None = None,
                 schemas_from: str = "upstream") -> subprocess.Popen:
    """`theflash writer run` on the cluster's binlog; schemas from the upstream's gRPC service or
    (``schemas_from="status port"``) from its TiDB-style HTTP status port, without --upstream."""
    out = open(log or store.parent / f"writer-{time.monotonic_ns()}.out", "ab")
    source = ["--upstream", cluster.info["upstream"]] if schemas_from == "upstream" else ["--schema-url", cluster.info["status"]]
    return subprocess.Popen(
        [PY, "-m", "pyspark_theflash", "writer", "run", "--binlog", binlog, "--store", str(store),
         *source, "--interval", "50ms", "--flush-interval", "200ms", "--latch-ttl", "3s", *extra],
        stdout=out, stderr=subprocess.STDOUT,
    )


def holds_latch(store: Path, proc: subprocess.Popen) -> bool:
    """The writer ``proc`` holds the store's latch and has published that it is running."""
    with latch_mod.connect(store) as latch:
        holder = latch.holder()
        status = latch.writer_status() or {}
    if proc.poll() is not None:
        raise AssertionError(f"writer exited with {proc.returncode}")
    return holder is not None and holder.pid == proc.pid and status.get("token") == holder.token and status.get("state") == "running"


def learner_read_total(store: Path, cluster: BankCluster, ts: int | None = None) -> tuple[int, int, dict[int, int]]:
    """What a reader does: a ts, the read index of every region, a flush request that the
    writer completes once those are applied, then every region's resolved ts past ts; then
    Store.scan at ts. Returns (ts, total, balances)."""
    from pyspark_theflash.store import Store

    ts = ts or cluster.client.get_ts()
    regions = [int(r.id) for r in cluster.client.regions()]
    read_index = {r: cluster.client.read_index(r) for r in regions}
    with latch_mod.connect(store) as latch:
        applied = latch.wait_flush(latch.request_flush(regions, read_index), timeout_s=30)
        assert all(applied[r] >= read_index[r] for r in regions), (applied, read_index)
        s = Store.open(str(store), readonly=True)
        # the answer comes from durable state: the manifest already holds what it names
        with s.snapshot() as view:
            durable = {int(x.id): int(x.applied_index) for x in view.regions(True)}
        assert all(durable.get(r, 0) >= applied[r] for r in regions), (durable, applied)

        def resolved_past_ts() -> bool:
            with s.snapshot() as view:
                states = {int(x.id): int(x.resolved_ts) for x in view.regions()}
            if all(states.get(r, 0) >= ts for r in regions):
                return True
            latch.wait_flush(latch.request_flush(regions), timeout_s=30)
            return False

        wait_for(resolved_past_ts, 30, f"resolved ts >= {ts} in every region")
        balances: dict[int, int] = {}
        for batch in s.scan(TABLE, ts):
            d = batch.to_pydict()
            balances.update(zip(d["id"], d["balance"]))
    return ts, sum(balances.values()), balances


@pytest.mark.parametrize("form,schemas_from", [("file", "status port"), ("grpc", "upstream")])
def test_readers_at_many_ts_see_the_bank_invariant_while_the_writer_applies(
    form: str, schemas_from: str, cluster: BankCluster, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    writer = start_writer(store, cluster.binlog(form), cluster, "--tables", "bank.*", schemas_from=schemas_from)
    wait_for(lambda: holds_latch(store, writer), 30, "the writer to take the latch")
    seen_ts = []
    for _ in range(8):
        ts, total, balances = learner_read_total(store, cluster)
        assert total == cluster.info["total"] and len(balances) == cluster.info["accounts"], (ts, balances)
        seen_ts.append(ts)
    assert len(set(seen_ts)) == len(seen_ts)
    final = cluster.stop_workload()
    _, total, balances = learner_read_total(store, cluster, final["ts"])
    assert balances == final["balances"] and total == cluster.info["total"]
    writer.send_signal(signal.SIGTERM)
    assert writer.wait(30) == 0
    with latch_mod.connect(store) as latch:
        assert latch.holder() is None
        status = latch.status()["writer_status"]
    assert status["state"] == "stopped" and status["events_total"] > 0 and status["regions"]
    from pyspark_theflash.store import Store

    with Store.open(str(store), readonly=True) as s, s.snapshot() as view:
        assert {(t.db, t.name) for t in view.tables()} == {("bank", "accounts")}
        assert [(db, name) for _, db, name in view.ignored_tables()] == [("shop", "items")]


def sigkill_rounds(cluster: BankCluster, store: Path, kills: int, forms: tuple[str, ...], batch_events: str) -> None:
    """SIGKILL the writer ``kills`` times right after it persisted new progress, restart, and
    check the store at the cluster's final ts equals the cluster's table."""
    for round_ in range(kills):
        writer = start_writer(store, cluster.binlog(forms[round_ % len(forms)]), cluster, "--batch-events", batch_events)
        wait_for(lambda: holds_latch(store, writer), 30, "the writer to take the latch")
        before = _persisted_position(store)
        wait_for(lambda: _persisted_position(store) > before, 30, "the writer to persist progress")
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
    writer = start_writer(store, cluster.binlog(forms[0]), cluster)
    wait_for(lambda: holds_latch(store, writer), 30, "the restarted writer to take over the latch")
    final = cluster.stop_workload()
    _, total, balances = learner_read_total(store, cluster, final["ts"])
    assert balances == final["balances"] and total == cluster.info["total"]
    writer.send_signal(signal.SIGTERM)
    assert writer.wait(30) == 0


def test_sigkill_mid_run_loses_and_doubles_nothing(cluster: BankCluster, tmp_path: Path) -> None:
    sigkill_rounds(cluster, tmp_path / "store", kills=2, forms=("file",), batch_events="50")


@pytest.mark.slow
def test_sigkill_soak_over_both_binlog_forms(cluster: BankCluster, tmp_path: Path) -> None:
    sigkill_rounds(cluster, tmp_path / "store", kills=12, forms=("file", "grpc"), batch_events="7")


def test_progress_line_is_rewritten_in_place_on_a_terminal(tmp_path: Path) -> None:
    import pty

    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.tidb import make_column

    with MiniCluster(tmp_path / "cluster", binlog_dir=tmp_path / "binlog", resolved_ts_interval=0) as up:
        addresses = up.serve()
        up.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("balance", "BIGINT")], primary_key=["id"])
        up.run_txn(lambda t: t.insert(TABLE, {"id": 1, "balance": 1}))
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [PY, "-m", "pyspark_theflash", "writer", "run", "--binlog", str(tmp_path / "binlog"), "--store",
             str(tmp_path / "store"), "--upstream", addresses["upstream"], "--until-caught-up"],
            stdout=slave, stderr=subprocess.DEVNULL,
        )
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal closed: the writer exited
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        assert proc.wait(30) == 0
    text = out.decode()
    assert text.startswith("\r") and text.count("\r") >= 2 and "events/s" in text and "rows/s" in text
    assert text.rstrip("\r\n").count("\n") == 0  # one line, rewritten in place


def _persisted_position(store: Path) -> tuple[int, int]:
    from pyspark_theflash.store import Store

    if not (store / "manifest.db").exists():
        return (0, 0)
    s = Store.open(str(store), readonly=True)
    with s.snapshot() as view:
        position = view.position()
    s.close()
    return (0, 0) if position is None else (int(position[0]), int(position[1]))


def test_second_writer_is_refused_naming_the_first(cluster: BankCluster, tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = start_writer(store, cluster.binlog("file"), cluster)
    wait_for(lambda: holds_latch(store, first), 30, "the first writer to take the latch")
    second = subprocess.run(
        [PY, "-m", "pyspark_theflash", "writer", "run", "--binlog", cluster.binlog("grpc"), "--store", str(store)],
        capture_output=True, text=True, timeout=60,
    )
    assert second.returncode == 2
    assert f"pid {first.pid}" in second.stderr and "already has a writer" in second.stderr
    assert int((store / "writer.pid").read_text()) == first.pid
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "pyspark_theflash", *args], capture_output=True, text=True, timeout=timeout)


def test_interval_change_and_flush_request_take_effect_without_restart(cluster: BankCluster, tmp_path: Path) -> None:
    store = tmp_path / "store"
    writer = start_writer(store, cluster.binlog("file"), cluster, "--interval", "60s", "--flush-interval", "60s",
                          "--metrics-port", "0")
    wait_for(lambda: holds_latch(store, writer), 30, "the writer to take the latch")
    # A flush request is answered at once although the writer polls once a minute.
    regions = [int(r.id) for r in cluster.client.regions()]
    read_index = {r: cluster.client.read_index(r) for r in regions}
    with latch_mod.connect(store) as latch:
        applied = latch.wait_flush(latch.request_flush(regions, read_index), timeout_s=20)
    assert all(applied[r] >= read_index[r] for r in regions)
    # The interval changes at runtime: the writer polls again well before its minute is up.
    with latch_mod.connect(store) as latch:
        wait_for(lambda: (latch.writer_status() or {}).get("interval_s") == 60.0, 30, "the first status")
    ctl = _cli("writer", "ctl", "--store", str(store), "--interval", "50ms")
    assert ctl.returncode == 0, ctl.stderr
    with latch_mod.connect(store) as latch:
        status = wait_for(lambda: (s := latch.writer_status()) and s.get("interval_s") == 0.05 and s, 20, "the new interval")
        read_position = status["read_position"]
        wait_for(lambda: latch.writer_status()["read_position"] != read_position, 20, "polls at the new interval")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{status['metrics_port']}/metrics", timeout=10).read().decode()
    assert re.search(r'theflash_writer_applied_index\{region="\d+"\} [1-9]', metrics)
    assert "theflash_writer_rows_per_second" in metrics and "theflash_writer_last_flush_seconds" in metrics
    shown = _cli("writer", "status", "--store", str(store))
    assert shown.returncode == 0 and f"pid {writer.pid}" in shown.stdout and "interval: 0.05s" in shown.stdout
    writer.send_signal(signal.SIGINT)
    assert writer.wait(30) == 0


def test_daemon_start_and_stop(cluster: BankCluster, tmp_path: Path) -> None:
    store, log = tmp_path / "store", tmp_path / "writer.log"
    started = _cli("writer", "start", "--daemon", "--binlog", cluster.binlog("grpc"), "--store", str(store),
                   "--upstream", cluster.info["upstream"], "--interval", "50ms", "--log", str(log))
    assert started.returncode == 0, started.stderr
    pid = int((store / "writer.pid").read_text())
    assert f"pid {pid}" in started.stdout
    with latch_mod.connect(store) as latch:
        assert latch.holder().pid == pid  # type: ignore[union-attr]
        wait_for(lambda: (latch.writer_status() or {}).get("events_total", 0) > 0, 30, "the daemon to apply events")
    stopped = _cli("writer", "stop", "--store", str(store))
    assert stopped.returncode == 0, stopped.stderr
    assert not (store / "writer.pid").exists()
    assert _process_is_gone(pid)
    text = log.read_text()
    assert "signal 15" in text and "events/s" in text
    again = _cli("writer", "stop", "--store", str(store))
    assert again.returncode == 2 and "no running writer" in again.stderr


@pytest.mark.spark
def test_spark_submit_entry_applies_the_binlog_with_executor_decode(cluster: BankCluster, tmp_path: Path) -> None:
    from pyspark_theflash.store import Store

    entry = _cli("writer", "--spark-entry").stdout.strip()
    assert entry.endswith("spark_entry.py") and Path(entry).is_file()
    wait_for(lambda: cluster.client.read_index(int(cluster.client.regions()[0].id)) > 40, 30, "some transfers")
    final = cluster.stop_workload()
    store, log = tmp_path / "store", tmp_path / "spark-writer.log"
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    job = subprocess.run(
        [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[2]", "--conf", "spark.ui.enabled=false",
         entry, "--binlog", cluster.binlog("file"), "--store", str(store), "--upstream", cluster.info["upstream"],
         "--tables", "bank.accounts", "--until-caught-up", "--executor-decode-rows", "1", "--log", str(log)],
        capture_output=True, text=True, timeout=150, env=env,
    )
    assert job.returncode == 0, job.stderr[-3000:]
    text = log.read_text()
    decoded = re.search(r"executor decode: (\d+) table batches, (\d+) rows", text)
    assert decoded and int(decoded.group(1)) > 0 and int(decoded.group(2)) >= cluster.info["accounts"], text[-2000:]
    with Store.open(str(store), readonly=True) as s:
        balances = {r["id"]: r["balance"] for r in s.scan_table(TABLE, final["ts"]).to_pylist()}
    assert balances == final["balances"]


def test_rows_with_a_new_column_decode_with_the_version_its_ddl_event_brings(tmp_path: Path) -> None:
    from pyspark_theflash.store import Store
    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.tidb import make_column

    with MiniCluster(tmp_path / "cluster", binlog_dir=tmp_path / "binlog", resolved_ts_interval=0) as up:
        addresses = up.serve()
        up.create_table("shop.items", [make_column("id", "BIGINT", not_null=True), make_column("name", "VARCHAR(20)")],
                        primary_key=["id"])
        up.run_txn(lambda t: t.insert("shop.items", {"id": 1, "name": "old"}))
        run = [PY, "-m", "pyspark_theflash", "writer", "run", "--binlog", str(tmp_path / "binlog"), "--store",
               str(tmp_path / "store"), "--upstream", addresses["upstream"], "--until-caught-up"]
        first = subprocess.run(run, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stderr
        up.add_column("shop.items", make_column("price", "BIGINT"), default=7)
        up.run_txn(lambda t: t.insert("shop.items", {"id": 2, "name": "new", "price": 5}))
        ts = up.get_ts()
        second = subprocess.run(run, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0, second.stderr
    with Store.open(str(tmp_path / "store"), readonly=True) as s:
        rows = sorted(s.scan_table("shop.items", ts).to_pylist(), key=lambda r: r["id"])
    assert rows == [{"id": 1, "name": "old", "price": 7}, {"id": 2, "name": "new", "price": 5}]
    # the binlog's DDL event brought the new version: no schema fetch was needed
    assert "schema change ADD_COLUMN" in second.stderr and "unknown column ids" not in second.stderr


@pytest.mark.parametrize("why", ["binlog pruned", "--bootstrap-snapshot"])
def test_empty_store_starts_from_region_snapshots_then_follows_the_binlog(why: str, tmp_path: Path) -> None:
    from pyspark_theflash.binlog import prune
    from pyspark_theflash.binlog.segment import head, list_segments
    from pyspark_theflash.store import Store
    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.tidb import make_column

    binlog_dir = tmp_path / "binlog"
    with MiniCluster(tmp_path / "cluster", binlog_dir=binlog_dir, resolved_ts_interval=0, segment_bytes=2048) as up:
        addresses = up.serve()
        up.create_table("bank.accounts", [make_column("id", "BIGINT", not_null=True), make_column("balance", "BIGINT")],
                        primary_key=["id"])
        for i in range(40):
            up.run_txn(lambda t, i=i: t.insert(TABLE, {"id": i, "balance": i * 10}))
        if why == "binlog pruned":
            prune(binlog_dir, head(binlog_dir))
            assert list_segments(binlog_dir)[0] > 1
        run = [PY, "-m", "pyspark_theflash", "writer", "run", "--binlog", binlog_dir.as_uri(), "--store",
               str(tmp_path / "store"), "--upstream", addresses["upstream"], "--until-caught-up"]
        if why == "--bootstrap-snapshot":
            run.append("--bootstrap-snapshot")
        first = subprocess.run(run, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stderr
        assert "bootstrapping" in first.stderr
        for i in range(40, 50):  # after the snapshot: followed from the binlog
            up.run_txn(lambda t, i=i: t.insert(TABLE, {"id": i, "balance": i * 10}))
        up.run_txn(lambda t: t.update(TABLE, {"id": 0, "balance": 999}))
        ts = up.get_ts()
        second = subprocess.run(run[:-1] if why == "--bootstrap-snapshot" else run, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0, second.stderr
        assert "bootstrapping" not in second.stderr
        expected = {r["id"]: r["balance"] for r in up.scan_table(TABLE, ts)}
    with Store.open(str(tmp_path / "store"), readonly=True) as s:
        got = {r["id"]: r["balance"] for r in s.scan_table(TABLE, ts).to_pylist()}
    assert got == expected and len(got) == 50 and got[0] == 999


def test_gc_follows_the_upstream_safe_point_but_never_passes_a_live_lease(tmp_path: Path) -> None:
    from pyspark_theflash.store import Store
    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.tidb import make_column

    store = tmp_path / "store"
    with MiniCluster(tmp_path / "cluster", binlog_dir=tmp_path / "binlog", resolved_ts_interval=0.05) as up:
        addresses = up.serve()
        up.create_table("bank.accounts", [make_column("id", "BIGINT", not_null=True), make_column("balance", "BIGINT")],
                        primary_key=["id"])
        up.run_txn(lambda t: t.insert(TABLE, {"id": 1, "balance": 10}))
        writer = subprocess.Popen(
            [PY, "-m", "pyspark_theflash", "writer", "run", "--binlog", str(tmp_path / "binlog"), "--store", str(store),
             "--upstream", addresses["upstream"], "--interval", "50ms", "--compact-interval", "100ms"],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "writer.err", "wb"),
        )
        wait_for(lambda: holds_latch(store, writer), 30, "the writer to start")
        pinned = up.get_ts()
        with latch_mod.connect(store) as latch:

            def caught_up() -> None:  # every region applied and flushed up to its read index now
                read_index = {int(r.id): up.read_index(int(r.id)) for r in up.regions()}
                latch.wait_flush(latch.request_flush(list(read_index), read_index), timeout_s=30)

            caught_up()
            lease = latch.acquire_lease(pinned, ttl_s=60, holder="long query")
            up.run_txn(lambda t: t.update(TABLE, {"id": 1, "balance": 20}))
            caught_up()
            safe_point = up.update_gc_safe_point(up.get_ts())
            status_gc = lambda: (latch.writer_status() or {}).get("gc_safe_point", 0)  # noqa: E731
            wait_for(lambda: status_gc() == pinned, 30, "GC to stop at the lease")
            with Store.open(str(store), readonly=True) as s:
                assert s.scan_table(TABLE, pinned).to_pylist() == [{"id": 1, "balance": 10}]
                assert s.scan_table(TABLE, safe_point).to_pylist() == [{"id": 1, "balance": 20}]
            latch.release_lease(lease.lease_id)
            wait_for(lambda: status_gc() == safe_point, 30, "GC to reach the upstream's safe point")
        writer.send_signal(signal.SIGTERM)
        assert writer.wait(30) == 0
    with Store.open(str(store), readonly=True) as s, s.snapshot() as view:
        assert view.gc_safe_point() == safe_point


def test_a_writer_that_lost_its_latch_stops_without_touching_the_store(cluster: BankCluster, tmp_path: Path) -> None:
    store = tmp_path / "store"
    err = tmp_path / "writer.out"
    writer = start_writer(store, cluster.binlog("file"), cluster, "--latch-ttl", "1s", log=err)
    wait_for(lambda: holds_latch(store, writer), 30, "the writer to start")
    writer.send_signal(signal.SIGSTOP)  # a stalled writer (VM pause, swap storm) misses its renewals
    try:
        with latch_mod.connect(store) as latch:
            wait_for(lambda: latch.holder() is None, 30, "the stalled writer's latch to expire")
            intruder = latch.acquire_write_latch("intruder", ttl_s=60)
            position = _persisted_position(store)
    finally:
        writer.send_signal(signal.SIGCONT)
    assert writer.wait(30) == 2
    assert "write latch" in err.read_text() and "intruder" in err.read_text()
    with latch_mod.connect(store) as latch:
        assert latch.holder().token == intruder.token  # type: ignore[union-attr]
    assert _persisted_position(store) == position


def test_a_failed_pipelined_flush_stops_the_writer_and_a_restart_replays_from_the_persisted_position(
        tmp_path: Path) -> None:
    """The writer flushes by deadline in the pipelined form; when that flush's manifest edit
    fails (here: another connection holds the manifest's write lock past the busy timeout),
    nothing of it is visible, the writer stops with the error, and a restart replays."""
    import sqlite3
    from dataclasses import replace

    from pyspark_theflash.store import FlushFailedError, Store
    from pyspark_theflash.store.manifest import manifest_path
    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.tidb import make_column
    from pyspark_theflash.writer.loop import Writer
    from pyspark_theflash.writer.options import WriterOptions

    store_dir = tmp_path / "store"
    with MiniCluster(tmp_path / "cluster", binlog_dir=tmp_path / "binlog", resolved_ts_interval=0) as up:
        addresses = up.serve()
        up.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("balance", "BIGINT")],
                        primary_key=["id"])
        up.run_txn(lambda t: t.insert(TABLE, {"id": 1, "balance": 10}))
        run = [PY, "-m", "pyspark_theflash", "writer", "run", "--binlog", str(tmp_path / "binlog"), "--store",
               str(store_dir), "--upstream", addresses["upstream"], "--until-caught-up"]
        first = subprocess.run(run, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stderr
        with Store.open(str(store_dir), readonly=True) as s, s.snapshot() as view:
            persisted = view.position()
        for i in range(2, 6):
            up.run_txn(lambda t, i=i: t.insert(TABLE, {"id": i, "balance": i * 10}))
        ts = up.get_ts()

        blocker: list[sqlite3.Connection] = []

        def hold_the_manifest(store: Any) -> None:
            # the pipelined edit gives up after 200 ms of waiting for the manifest's write lock
            store.options = replace(store.options, busy_timeout_ms=200)
            conn = sqlite3.connect(str(manifest_path(store_dir)), isolation_level=None, check_same_thread=False)
            conn.execute("BEGIN IMMEDIATE")
            blocker.append(conn)

        writer = Writer(WriterOptions(binlog=str(tmp_path / "binlog"), store=str(store_dir),
                                      schema_url=addresses["status"], flush_interval_s=0.0, until_caught_up=True),
                        configure_store=hold_the_manifest)
        try:
            with pytest.raises(FlushFailedError, match="database is locked"):
                writer.run()
            assert writer.progress.flushes == 0
        finally:
            for conn in blocker:
                conn.execute("COMMIT")
                conn.close()
        with Store.open(str(store_dir), readonly=True) as s:
            with s.snapshot() as view:
                assert view.position() == persisted  # nothing of the failed flush is visible
            assert {r["id"] for r in s.scan_table(TABLE, ts).to_pylist()} == {1}
        restart = subprocess.run(run, capture_output=True, text=True, timeout=60)
        assert restart.returncode == 0, restart.stderr
        expected = {r["id"]: r["balance"] for r in up.scan_table(TABLE, ts)}
    with Store.open(str(store_dir), readonly=True) as s:
        got = {r["id"]: r["balance"] for r in s.scan_table(TABLE, ts).to_pylist()}
    assert got == expected and len(got) == 5
