"""The writer job end to end, each part in its own process: a mini cluster running the bank
workload (tests/support/bank_cluster.py), `theflash writer ...` applying its binlog (file and gRPC
forms) to a store, and readers in this process reading the store at many snapshot ts."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import ROOT
from pyspark_theflash import latch as latch_mod
from pyspark_theflash.latch.local import process_is_gone

from polling import wait_for

PY = sys.executable
TABLE = "bank.accounts"



class BankCluster:
    """tests/support/bank_cluster.py in its own process."""

    def __init__(self, root: Path, accounts: int = 20) -> None:
        self.ready = root / "cluster.ready"
        self.binlog_dir = root / "binlog"
        self.proc = subprocess.Popen(
            [PY, str(ROOT / "tests" / "support" / "bank_cluster.py"), "--data", str(root / "cluster"), "--binlog", str(self.binlog_dir),
             "--ready", str(self.ready), "--accounts", str(accounts)],
            stdout=subprocess.DEVNULL, stderr=open(root / "cluster.err", "wb"),
        )
        wait_for(lambda: self.ready.exists() or self.proc.poll() is not None, 60, "the mini cluster to serve")
        if not self.ready.exists():
            raise AssertionError(f"mini cluster failed: {(root / 'cluster.err').read_text()}")
        self.info = json.loads(self.ready.read_text())
        from pyspark_theflash.upstream_client.client import connect as connect_upstream

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


def table_regions(cluster: BankCluster, qualified: str) -> list[int]:
    """Ids of the upstream regions over a table's record range: those a reader of it waits
    for (every table has regions of its own; a table the writer does not replicate is in
    regions the store never holds)."""
    from pyspark_theflash.codec import encode_region_key
    from pyspark_theflash.upstream.tidb import record_range

    info = cluster.client.table_info(*qualified.split("."))
    lo, hi = (encode_region_key(k) for k in record_range(info["id"]))
    return [int(r.id) for r in cluster.client.regions()
            if (not r.end_key or r.end_key > lo) and r.start_key < hi]


def learner_read_total(store: Path, cluster: BankCluster, ts: int | None = None) -> tuple[int, int, dict[int, int]]:
    """What a reader does: a ts, the read index of every region, a flush request that the
    writer completes once those are applied, then every region's resolved ts past ts; then
    Store.scan at ts. Returns (ts, total, balances)."""
    from pyspark_theflash.store import Store

    ts = ts or cluster.client.get_ts()
    regions = table_regions(cluster, TABLE)
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
            stdout=slave, stderr=slave,  # log lines and the progress line share the terminal
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
    assert "events/s" in text and "rows/s" in text
    stamp = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
    logged = [m.start() for m in stamp.finditer(text)]
    assert logged, text  # the writer logs (caught up, stopping ...)
    # every log line starts a line of its own: the progress line was cleared before it
    assert all(i == 0 or text[i - 1] in "\r\n" for i in logged), text
    progress = [line for line in re.split(r"[\r\n]", text) if "events/s" in line]
    assert progress and all(not stamp.match(line) for line in progress)  # rewritten in place, not logged


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
    # TSOs as their exact halves (a whole TSO is past float64's 53 bits of integer precision)
    physical = [int(v) for v in re.findall(r'theflash_writer_resolved_ts_physical_ms\{region="\d+"\} (\d+)\n', metrics)]
    assert physical and all(1_600_000_000_000 < v < 4_000_000_000_000 for v in physical), metrics
    assert re.search(r'theflash_writer_resolved_ts_logical\{region="\d+"\} \d+\n', metrics)
    assert "theflash_writer_resolved_ts{" not in metrics
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
    assert process_is_gone(pid)
    text = log.read_text()
    assert "signal 15" in text and "events/s" in text
    again = _cli("writer", "stop", "--store", str(store))
    assert again.returncode == 2 and "no running writer" in again.stderr


def test_daemon_start_fails_when_its_serve_port_is_taken_and_leaves_no_writer(cluster: BankCluster,
                                                                             tmp_path: Path) -> None:
    """`writer start` returns once the writer is up, its read service listening: a port another
    process holds is the command's error (it once said "writer started" and the writer died)."""
    store, log = tmp_path / "store", tmp_path / "writer.log"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        started = _cli("writer", "start", "--daemon", "--binlog", cluster.binlog("grpc"), "--store", str(store),
                       "--upstream", cluster.info["upstream"], "--serve", "0", "--serve-http-port", str(taken),
                       "--log", str(log))
    assert started.returncode == 2, started.stdout
    assert "writer started" not in started.stdout
    assert f"127.0.0.1:{taken}" in started.stderr and "in use" in started.stderr, started.stderr
    assert "Traceback" not in started.stderr
    assert not store.exists()  # the run made it and failed before it was up: nothing is left
    stopped = _cli("writer", "stop", "--store", str(store))
    assert stopped.returncode == 2 and "no running writer" in stopped.stderr


@pytest.mark.spark
def test_spark_submit_entry_applies_the_binlog_with_executor_decode(cluster: BankCluster, tmp_path: Path) -> None:
    from pyspark_theflash.store import Store

    entry = _cli("writer", "--spark-entry").stdout.strip()
    assert entry.endswith("spark_entry.py") and Path(entry).is_file()
    # bank.accounts has regions of its own (the first region holds no rows): any of them will do
    wait_for(lambda: max(cluster.client.read_index(int(r.id)) for r in cluster.client.regions()) > 40, 30,
             "some transfers")
    final = cluster.stop_workload()
    store, log = tmp_path / "store", tmp_path / "spark-writer.log"
    # As the README runs it, from a shell that never activated the venv: PYSPARK_PYTHON is what
    # lets pip's spark-submit find SPARK_HOME and the executors import the package.
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_HOME", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env["PYSPARK_PYTHON"] = sys.executable
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
            position = _position_after_the_takeover(store, writer)
    finally:
        writer.send_signal(signal.SIGCONT)
    assert writer.wait(30) == 2
    assert "write latch" in err.read_text() and "intruder" in err.read_text()
    with latch_mod.connect(store) as latch:
        assert latch.holder().token == intruder.token  # type: ignore[union-attr]
    assert _persisted_position(store) == position  # no edit after the takeover committed


def _position_after_the_takeover(store: Path, writer: subprocess.Popen) -> tuple[int, int]:
    """The position a new writer finds once it holds the latch. Opening the store for writing
    takes the manifest's write lock before anything is read, so an edit the stalled writer
    began under its latch (it holds that lock; stopped inside it, it is let go on) commits
    first. The fence's contract: no edit that begins after the takeover commits."""
    conn = sqlite3.connect(str(store / "manifest.db"), isolation_level=None, timeout=0.2)
    try:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # stopped inside an edit: it holds the write lock
            writer.send_signal(signal.SIGCONT)
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    return _persisted_position(store)


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


def test_a_flush_request_naming_a_fresh_split_born_region_is_answered(tmp_path: Path) -> None:
    """A table's region of its own has no entries until its first row: upstream's read index is
    TiKV's RAFT_INIT_LOG_INDEX (5) for it; the writer answers a request for that index instead
    of leaving it pending forever (which also made every later batch flush synchronously)."""
    from flash_rig import FlashRig
    from pyspark_theflash.latch import connect
    from pyspark_theflash.upstream.tidb import make_column as column

    rig = FlashRig(tmp_path, via="binlog")  # flush requests carry raft read indexes: the mini cluster's own log
    try:
        rig.start_writer()
        rig.cluster.create_table("fresh.t", [column("id", "INT"), column("v", "INT")], primary_key=["id"])
        with rig.cluster.txn() as t:  # the writer learns the regions from the log
            t.insert("fresh.t", {"id": 1, "v": 1})
        rig.cluster.create_table("fresh.empty", [column("id", "INT"), column("v", "INT")], primary_key=["id"])
        read_index = {int(r.id): rig.cluster.read_index(int(r.id)) for r in rig.cluster.regions()}
        assert 5 in read_index.values()  # a split-born region without entries
        latch = connect(rig.store)
        rig.wait_replicated("fresh.t")
        answer = latch.wait_flush(latch.request_flush(list(read_index), read_index), timeout_s=30)
        assert set(answer) == set(read_index)
        assert not latch.pending_flushes()
    finally:
        rig.close()


def test_until_caught_up_means_the_logs_head_over_files_and_grpc_and_damage_fails_it(tmp_path: Path) -> None:
    """A one-shot run applies everything up to the head the log had when it started, whatever
    the binlog's form; a damaged record with records after it stops it with an error naming
    the segment file and offset (it used to stop there and say "caught up", rc 0)."""
    import shutil

    from pyspark_theflash.binlog import SegmentReader, serve_binlog
    from pyspark_theflash.binlog.segment import list_segments, segment_path
    from pyspark_theflash.store import Store
    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.tidb import make_column

    binlog_dir = tmp_path / "binlog"
    with MiniCluster(tmp_path / "cluster", binlog_dir=binlog_dir, resolved_ts_interval=0) as up:
        addresses = up.serve()
        up.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("balance", "BIGINT")],
                        primary_key=["id"])
        for i in range(300):
            up.run_txn(lambda t, i=i: t.insert(TABLE, {"id": i, "balance": i}))
        ts = up.get_ts()

        def writer(binlog: str, store: Path) -> subprocess.CompletedProcess[str]:
            return subprocess.run([PY, "-m", "pyspark_theflash", "writer", "run", "--binlog", binlog, "--store",
                                   str(store), "--upstream", addresses["upstream"], "--until-caught-up",
                                   "--batch-events", "16"], capture_output=True, text=True, timeout=120)

        def applied(store: Path) -> int:
            with Store.open(str(store), readonly=True) as s:
                return len(s.scan_table(TABLE, ts).to_pylist())

        server = serve_binlog(binlog_dir, "127.0.0.1", 0)
        try:
            for form, url in (("file", binlog_dir.as_uri()), ("grpc", server.url)):
                done = writer(url, tmp_path / f"store-{form}")
                assert done.returncode == 0, done.stderr
                assert applied(tmp_path / f"store-{form}") == 300, form
        finally:
            server.stop()

        damaged = tmp_path / "damaged"
        shutil.copytree(binlog_dir, damaged, ignore=shutil.ignore_patterns("LOCK"))
        newest = list_segments(damaged)[-1]
        with SegmentReader(damaged) as reader:
            records = [r for r in reader if r.position.segment == newest]
        victim = records[len(records) // 2]
        path = segment_path(damaged, newest)
        data = bytearray(path.read_bytes())
        data[victim.position.offset + 9] ^= 0x01
        path.write_bytes(bytes(data))
        failed = writer(damaged.as_uri(), tmp_path / "store-damaged")
        assert failed.returncode != 0
        assert str(path) in failed.stderr and f"offset {victim.position.offset}" in failed.stderr, failed.stderr[-2000:]
        assert "Traceback" not in failed.stderr


def test_a_long_poll_interval_never_throttles_a_writer_behind_a_grpc_stream(tmp_path: Path) -> None:
    """The binlog service streams each commit as soon as it is written, a few events a message;
    a writer polling every interval used to drain only its 64-message buffer per poll and fall
    ever further behind. The interval bounds an idle writer's latency, nothing more.

    COMMITS one-row commits arrive at a steady pace (so each is its own small message). A
    writer throttled by its interval applies at most 64 commits an interval; one that reads
    while anything is buffered keeps up and is done at most an interval after the last
    commit. What is bounded is a count of intervals, not a speed: the check holds on a
    machine many times slower than the pace."""
    import threading

    from pyspark_theflash.store import Store
    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.tidb import make_column
    from pyspark_theflash.writer.loop import Writer
    from pyspark_theflash.writer.options import WriterOptions

    commits, pace_per_s, interval_s = 1500, 500.0, 3.0
    with MiniCluster(tmp_path / "cluster", binlog_dir=tmp_path / "binlog", resolved_ts_interval=0.02) as up:
        addresses = up.serve()
        up.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("balance", "BIGINT")],
                        primary_key=["id"])
        stop = threading.Event()
        writer = Writer(WriterOptions(binlog=addresses["binlog"], store=str(tmp_path / "store"),
                                      upstream=addresses["upstream"], interval_s=interval_s,
                                      flush_interval_s=0.1), stop=stop)
        thread = threading.Thread(target=writer.run, daemon=True)
        thread.start()
        try:
            started = time.monotonic()
            for i in range(commits):
                time.sleep(max(0.0, started + i / pace_per_s - time.monotonic()))
                up.run_txn(lambda t, i=i: t.insert(TABLE, {"id": i, "balance": i}))
            ts = up.get_ts()
            produced_s = time.monotonic() - started

            def applied() -> int:
                from pyspark_theflash.store.errors import StoreNotFoundError, UnknownTableNameError

                try:
                    with Store.open(str(tmp_path / "store"), readonly=True) as s:
                        return len(s.scan_table(TABLE, ts).to_pylist())
                except (StoreNotFoundError, UnknownTableNameError):  # not started / not at the table yet
                    return 0

            # A throttled writer has applied at most 64 commits an interval by the deadline.
            intervals = 5
            throttled_at_most = 64 * int((produced_s + intervals * interval_s) / interval_s + 1)
            assert throttled_at_most < commits
            wait_for(lambda: applied() == commits, intervals * interval_s, f"the writer to apply {commits} commits")
        finally:
            stop.set()
            thread.join(30)


def test_status_and_ctl_on_a_mistyped_store_fail_and_create_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "flsh"
    for argv in (["status", "--store", str(typo)], ["ctl", "--store", str(typo), "--interval", "1s"]):
        done = subprocess.run([PY, "-m", "pyspark_theflash", "writer", *argv], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and f"no store at {typo}" in done.stderr, done.stderr
        assert not typo.exists()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MiB file system (tmpfs) for the store: ENOSPC the way an operator meets it."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True, text=True)
    assert done.returncode == 0, f"mounting a tmpfs needs root: {done.stderr}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_ends_the_writer_with_one_clear_error_and_it_resumes_once_space_is_back(
        small_disk: Path, tmp_path: Path) -> None:
    from pyspark_theflash.errors import StorageFailureError
    from pyspark_theflash.scan import plan
    from pyspark_theflash.store import Store
    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.tidb import make_column

    store = small_disk / "store"
    with MiniCluster(tmp_path / "cluster", binlog_dir=tmp_path / "binlog", resolved_ts_interval=0) as up:
        addresses = up.serve()
        up.create_table("big.rows", [make_column("id", "BIGINT", not_null=True), make_column("pad", "VARCHAR(2000)")],
                        primary_key=["id"])
        for start in range(0, 6000, 500):  # ~9 MiB of row values: three times the disk
            up.run_txn(lambda t, s=start: [t.insert("big.rows", {"id": i, "pad": f"{i:08d}" * 190})
                                           for i in range(s, s + 500)])
        ts = up.get_ts()
        run = [PY, "-m", "pyspark_theflash", "writer", "run", "--binlog", (tmp_path / "binlog").as_uri(), "--store",
               str(store), "--upstream", addresses["upstream"], "--until-caught-up", "--flush-rows", "500"]
        full = subprocess.run(run, capture_output=True, text=True, timeout=120)
        assert full.returncode == 2, full.stderr[-3000:]
        assert "the disk is full" in full.stderr and "Traceback" not in full.stderr, full.stderr[-3000:]
        shown = _cli("writer", "status", "--store", str(store))
        assert shown.returncode == 0, shown.stderr
        assert "state: failed" in shown.stdout and "last error (" in shown.stdout and "disk is full" in shown.stdout, shown.stdout
        # a read on the full disk works from the durable state or says the disk is full
        try:
            with plan(str(store), "big.rows", {"upstream": addresses["upstream"], "region_wait_timeout": "2s"}):
                pass
        except StorageFailureError as exc:
            assert "disk is full" in str(exc)
        except Exception as exc:  # e.g. the learner read timing out: the writer is not running
            assert "Traceback" not in str(exc) and "OperationalError" not in repr(exc), repr(exc)

        remount = subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], capture_output=True, text=True)
        assert remount.returncode == 0, remount.stderr
        again = subprocess.run(run, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr[-3000:]
        expected = {r["id"]: r["pad"] for r in up.scan_table("big.rows", ts)}
    with Store.open(str(store), readonly=True) as s:
        got = {r["id"]: r["pad"] for r in s.scan_table("big.rows", ts).to_pylist()}
    assert got == expected and len(got) == 6000
    shown = _cli("writer", "status", "--store", str(store))
    assert "state: not running" in shown.stdout and "last error (" in shown.stdout  # still says what happened


def test_a_writer_logging_to_a_file_timestamps_every_line_and_rate_limits_progress(tmp_path: Path) -> None:
    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.tidb import make_column

    log = tmp_path / "writer.log"
    with MiniCluster(tmp_path / "cluster", binlog_dir=tmp_path / "binlog", resolved_ts_interval=0) as up:
        addresses = up.serve()
        up.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("balance", "BIGINT")],
                        primary_key=["id"])
        for i in range(50):
            up.run_txn(lambda t, i=i: t.insert(TABLE, {"id": i, "balance": i}))
        done = _cli("writer", "run", "--binlog", str(tmp_path / "binlog"), "--store", str(tmp_path / "store"),
                    "--upstream", addresses["upstream"], "--until-caught-up", "--interval", "10ms", "--log", str(log))
        assert done.returncode == 0, done.stderr
    lines = log.read_text().splitlines()
    assert lines and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", line) for line in lines), lines
    progress = [line for line in lines if "events/s" in line]
    # a short run: one line per state it went through, not one a second
    assert 1 <= len(progress) <= 4, progress


def test_progress_lists_only_the_stores_live_regions() -> None:
    """A region merged away (or removed) leaves the progress line and the status."""
    from types import SimpleNamespace

    from pyspark_theflash.writer.progress import Progress, progress_line

    progress = Progress()
    progress.note_batch(3, 3, {1: 10, 2: 7})
    progress.note_regions([SimpleNamespace(id=1, applied_index=10, resolved_ts=0),
                           SimpleNamespace(id=2, applied_index=7, resolved_ts=0)])
    assert set(progress.regions) == {1, 2}
    progress.note_regions([SimpleNamespace(id=1, applied_index=12, resolved_ts=0)])  # 2 merged into 1
    status = progress.to_status()
    assert [r["region_id"] for r in status["regions"]] == [1]
    assert "r2 " not in progress_line(status)


# How a storage failure is injected into a writer process (ENOSPC/EIO without a small file
# system): os.fsync failing from its n-th call on (part files, the manifest, the pid file, ...),
# or the latch's renewal meeting SQLite's "database or disk is full" (what a full disk did to
# the latch database: a raw OperationalError traceback, 4 times out of 4).
_INJECTED_FAILURES = {
    "fsync_enospc": ("import errno, os\n"
                     "real, calls = os.fsync, [0]\n"
                     "def fsync(fd):\n"
                     "    calls[0] += 1\n"
                     "    if calls[0] >= 6:\n"
                     "        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
                     "    return real(fd)\n"
                     "os.fsync = fsync\n", "the disk is full"),
    "fsync_eio": ("import errno, os\n"
                  "real, calls = os.fsync, [0]\n"
                  "def fsync(fd):\n"
                  "    calls[0] += 1\n"
                  "    if calls[0] >= 6:\n"
                  "        raise OSError(errno.EIO, os.strerror(errno.EIO))\n"
                  "    return real(fd)\n"
                  "os.fsync = fsync\n", "I/O error"),
    "latch_renewal_sqlite_full": ("import sqlite3\n"
                                  "from pyspark_theflash.latch.local import LocalLatch\n"
                                  "real, calls = LocalLatch.renew, [0]\n"
                                  "def renew(self, *a, **k):\n"
                                  "    calls[0] += 1\n"
                                  "    if calls[0] >= 3:\n"
                                  "        raise sqlite3.OperationalError('database or disk is full')\n"
                                  "    return real(self, *a, **k)\n"
                                  "LocalLatch.renew = renew\n", "the disk is full"),
}


@pytest.mark.parametrize("failure", sorted(_INJECTED_FAILURES))
def test_an_injected_storage_failure_ends_the_writer_cleanly_and_a_restart_loses_nothing(
        failure: str, tmp_path: Path) -> None:
    """ENOSPC or EIO from the OS (or SQLite's "disk is full") at any point of a run: exit status
    2 with one line naming the store and what to do, no traceback; the next run resumes from the
    last durable batch and the store ends with every row."""
    from pyspark_theflash.store import Store
    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.tidb import make_column

    inject, said = _INJECTED_FAILURES[failure]
    store = tmp_path / "store"
    with MiniCluster(tmp_path / "cluster", binlog_dir=tmp_path / "binlog", resolved_ts_interval=0) as up:
        addresses = up.serve()
        up.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("balance", "BIGINT")],
                        primary_key=["id"])
        for start in range(0, 2000, 100):
            up.run_txn(lambda t, s=start: [t.insert(TABLE, {"id": i, "balance": i}) for i in range(s, s + 100)])
        ts = up.get_ts()
        argv = ["writer", "run", "--binlog", (tmp_path / "binlog").as_uri(), "--store", str(store), "--upstream",
                addresses["upstream"], "--until-caught-up", "--flush-rows", "100", "--batch-events", "4",
                "--latch-ttl", "0.3s"]
        script = inject + f"import sys\nfrom pyspark_theflash.cli import main\nsys.exit(main({argv!r}))\n"
        failed = subprocess.run([PY, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert failed.returncode == 2, failed.stderr[-3000:]
        assert said in failed.stderr and str(store) in failed.stderr, failed.stderr[-3000:]
        assert "Traceback" not in failed.stderr, failed.stderr[-3000:]
        again = _cli(*argv, timeout=120)
        assert again.returncode == 0, again.stderr[-3000:]
        expected = {r["id"]: r["balance"] for r in up.scan_table(TABLE, ts)}
    with Store.open(str(store), readonly=True) as s:
        got = {r["id"]: r["balance"] for r in s.scan_table(TABLE, ts).to_pylist()}
    assert got == expected and len(got) == 2000


def test_writer_run_takes_where_to_publish_delta_and_passes_it_to_a_daemon() -> None:
    from pyspark_theflash.cli import build_parser
    from pyspark_theflash.writer.cli import _run_argv, options_from_args

    parser = build_parser()
    args = parser.parse_args(["writer", "run", "--binlog", "file:///b", "--store", "/s",
                              "--delta-publish-interval", "30s", "--delta-to", "s3://lake/flash"])
    assert options_from_args(args).delta_to == "s3://lake/flash"
    argv = _run_argv(args)
    assert argv[argv.index("--delta-to") + 1] == "s3://lake/flash"
    args = parser.parse_args(["writer", "run", "--binlog", "file:///b", "--store", "/s"])
    assert options_from_args(args).delta_to is None and "--delta-to" not in _run_argv(args)


def test_writer_run_takes_the_stable_parts_codec_and_defaults_to_lz4() -> None:
    from pyspark_theflash.cli import build_parser
    from pyspark_theflash.store import StoreOptions
    from pyspark_theflash.writer.cli import _run_argv, options_from_args

    parser = build_parser()
    args = parser.parse_args(["writer", "run", "--binlog", "file:///b", "--store", "/s", "--part-compression", "zstd"])
    assert options_from_args(args).part_compression == "zstd"
    argv = _run_argv(args)  # a daemon gets it too
    assert argv[argv.index("--part-compression") + 1] == "zstd"
    args = parser.parse_args(["writer", "run", "--binlog", "file:///b", "--store", "/s"])
    assert options_from_args(args).part_compression == "lz4" == StoreOptions().part_compression
    with pytest.raises(SystemExit):
        parser.parse_args(["writer", "run", "--binlog", "file:///b", "--store", "/s", "--part-compression", "gzip"])
