"""`theflash writer run` checks its `--upstream` before it records it (the cluster answers, and is
the cluster the store replicates) and its `--binlog` before it says it is up, and a run that fails
before its first apply leaves no store directory behind."""
from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

from pyspark_theflash.store import Store
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.tidb import make_column

PY = sys.executable
TABLE = "bank.accounts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def writer(binlog: Path, store: Path, upstream: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "pyspark_theflash", "writer", "run", "--binlog", str(binlog), "--store", str(store),
                           "--upstream", upstream, "--until-caught-up"], capture_output=True, text=True, timeout=120)


def test_an_unreachable_upstream_is_refused_and_leaves_no_store_directory(tmp_path: Path) -> None:
    with MiniCluster(tmp_path / "cluster", binlog_dir=tmp_path / "binlog", resolved_ts_interval=0) as up:
        up.serve()
        up.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("balance", "BIGINT")],
                        primary_key=["id"])
        up.run_txn(lambda t: t.insert(TABLE, {"id": 1, "balance": 1}))
        wrong = f"grpc://127.0.0.1:{free_port()}"  # nothing listens there
        store = tmp_path / "store"
        done = writer(tmp_path / "binlog", store, wrong)
        assert done.returncode == 2, done.stderr
        assert f"--upstream {wrong} does not answer" in done.stderr and "nothing was recorded" in done.stderr
        assert "Traceback" not in done.stderr
        assert not store.exists(), sorted(p.name for p in store.iterdir())


def test_an_upstream_of_another_cluster_is_refused_and_the_recorded_one_kept(tmp_path: Path) -> None:
    with MiniCluster(tmp_path / "cluster", binlog_dir=tmp_path / "binlog", resolved_ts_interval=0) as up:
        addresses = up.serve()
        up.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("balance", "BIGINT")],
                        primary_key=["id"])
        up.run_txn(lambda t: t.insert(TABLE, {"id": 1, "balance": 1}))
        store = tmp_path / "store"
        first = writer(tmp_path / "binlog", store, addresses["upstream"])
        assert first.returncode == 0, first.stderr
        with Store.open(str(store), readonly=True) as s, s.snapshot() as view:
            recorded_id = view.upstream_cluster_id()
            assert view.upstream() == addresses["upstream"] and recorded_id is not None
        # the store as one filled from another cluster would be: another id recorded
        conn = sqlite3.connect(str(store / "manifest.db"))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'upstream_cluster_id'", (recorded_id + 1,))
        conn.commit()
        conn.close()
        again = writer(tmp_path / "binlog", store, addresses["upstream"])
        assert again.returncode == 2, again.stderr
        assert f"replicates cluster {recorded_id + 1}" in again.stderr and "Traceback" not in again.stderr
        assert store.exists()  # a store with applied batches is never removed
        with Store.open(str(store), readonly=True) as s, s.snapshot() as view:
            assert view.upstream_cluster_id() == recorded_id + 1  # nothing recorded over it
            assert s.scan_table(TABLE, up.get_ts()).num_rows == 1


def test_a_binlog_that_is_not_there_is_writer_starts_error_not_a_line_in_its_log(tmp_path: Path) -> None:
    """`writer start` returns once the writer is up: the binlog answered before that, so a wrong
    `--binlog` is the command's error (it once said "writer started" and the writer died)."""
    store, log, missing = tmp_path / "store", tmp_path / "writer.log", tmp_path / "no-binlog"
    started = subprocess.run([PY, "-m", "pyspark_theflash", "writer", "start", "--daemon", "--binlog", str(missing),
                              "--store", str(store), "--log", str(log)], capture_output=True, text=True, timeout=120)
    assert started.returncode == 2, started.stdout
    assert "writer started" not in started.stdout
    assert f"binlog directory {missing} does not exist" in started.stderr, started.stderr
    assert "Traceback" not in started.stderr
    assert not store.exists()
