"""The mini cluster's incremental checkpoint: it writes only what changed since the last one,
its SQLite tables always equal the cluster's data, transactions commit while it writes, a
failed one leaves its changes to the next, and a restart (last checkpoint + binlog replay)
rebuilds exactly the state of a cluster that died without closing."""
from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from polling import wait_for
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.tidb import Abandoned, make_column
from upstream_checkpoint_child import region_state

ROOT = Path(__file__).resolve().parents[2]


def saved(cluster: MiniCluster) -> tuple[set[Any], set[Any], set[Any]]:
    """The data records in cluster.sqlite (read with a connection of its own)."""
    with sqlite3.connect(cluster.data_dir / "cluster.sqlite") as db:
        u64 = lambda v: v + (1 << 64) if v < 0 else v  # noqa: E731
        writes = {(bytes(k), u64(ts), bytes(w)) for k, ts, w in db.execute("SELECT key, commit_ts, write FROM cf_write")}
        defaults = {(bytes(k), u64(ts), bytes(v)) for k, ts, v in db.execute("SELECT key, start_ts, value FROM cf_default")}
        locks = {(bytes(k), bytes(lk), bytes(v)) for k, lk, v in db.execute("SELECT key, lock, value FROM cf_lock")}
    return writes, defaults, locks


def in_memory(cluster: MiniCluster) -> tuple[set[Any], set[Any], set[Any]]:
    writes, defaults, locks = cluster.store.dump()
    return set(writes), set(defaults), set(locks)


def abandon(_txn: object) -> None:
    raise Abandoned()


def random_changes(cluster: MiniCluster, rng: random.Random, live: set[int], next_id: list[int]) -> None:
    """One random change: a bulk insert, updates, deletes, an abandoned 2PC, lock resolution or GC."""
    roll = rng.random()
    if roll < 0.25 or not live:
        ids = list(range(next_id[0], next_id[0] + rng.randrange(1, 300)))
        next_id[0] = ids[-1] + 1
        cluster.bulk_insert("d.t", pa.table({"id": ids, "s": ["x" * rng.randrange(0, 400) for _ in ids]}),
                            txn_rows=rng.choice([7, 50, 1000]), one_pc=rng.random() < 0.7)
        live.update(ids)
    elif roll < 0.55:
        with cluster.txn() as t:
            for i in rng.sample(sorted(live), min(len(live), rng.randrange(1, 20))):
                t.update("d.t", {"id": i, "s": "u" * rng.randrange(0, 400)})
    elif roll < 0.7:
        with cluster.txn() as t:
            for i in rng.sample(sorted(live), min(len(live), rng.randrange(1, 5))):
                t.delete("d.t", i)
                live.discard(i)
    elif roll < 0.8:
        try:
            with cluster.txn(one_pc=False, after_prewrite=abandon, ttl_ms=1) as t:
                t.update("d.t", {"id": rng.choice(sorted(live)), "s": "L" * rng.randrange(0, 400)})
        except Abandoned:
            pass
    elif roll < 0.9:
        cluster.resolve_expired_locks(0)
    else:
        cluster.update_gc_safe_point(cluster.get_ts())


def test_each_checkpoint_saves_only_the_changes_and_sqlite_always_equals_the_data(tmp_path: Path) -> None:
    cluster = MiniCluster(tmp_path / "data", binlog_dir=tmp_path / "binlog", resolved_ts_interval=0,
                          checkpoint_interval_s=None)
    try:
        cluster.create_table("d.t", [make_column("id", "BIGINT"), make_column("s", "VARCHAR(400)")], primary_key=["id"])
        cluster.bulk_insert("d.t", pa.table({"id": list(range(1000)), "s": ["a" * (i % 300) for i in range(1000)]}))
        first = cluster.checkpoint()
        long_values = sum(1 for i in range(1000) if 9 + i % 300 > 255)  # row v2: 9 bytes + the string
        assert first.records == 1000 + long_values  # write records, and default records of long values
        assert saved(cluster) == in_memory(cluster)
        assert cluster.checkpoint().records == 0  # nothing changed
        with cluster.txn() as t:
            t.update("d.t", {"id": 1, "s": "b"})
            t.delete("d.t", 2)
        assert cluster.checkpoint().records == 2  # two new write records, nothing else rewritten
        assert saved(cluster) == in_memory(cluster)
        rng = random.Random(5)
        live, next_id = set(range(1000)) - {2}, [1000]
        for step in range(40):
            random_changes(cluster, rng, live, next_id)
            if rng.random() < 0.4:
                cluster.checkpoint()
                assert saved(cluster) == in_memory(cluster), step
        cluster.checkpoint()
        assert saved(cluster) == in_memory(cluster)
    finally:
        cluster.close()


def test_transactions_commit_while_a_checkpoint_writes_to_sqlite(tmp_path: Path) -> None:
    cluster = MiniCluster(tmp_path / "data", binlog_dir=tmp_path / "binlog", resolved_ts_interval=0,
                          checkpoint_interval_s=None)
    try:
        cluster.create_table("d.t", [make_column("id", "BIGINT"), make_column("s", "VARCHAR(8)")], primary_key=["id"])
        cluster.bulk_insert("d.t", pa.table({"id": list(range(20_000)), "s": ["x"] * 20_000}))
        writing, committed = threading.Event(), threading.Event()
        waited: list[bool] = []

        def inside_sqlite() -> int:  # SQLite calls this while it executes the checkpoint's statements
            if not waited:
                writing.set()
                waited.append(committed.wait(10))  # False: the transaction could not commit meanwhile
            return 0

        cluster._db.set_progress_handler(inside_sqlite, 1000)
        checkpoint = threading.Thread(target=cluster.checkpoint)
        checkpoint.start()
        wait_for(writing.is_set, 30, "the checkpoint to write")
        with cluster.txn() as t:  # would wait for the checkpoint if it held the store lock
            t.insert("d.t", {"id": -1, "s": "during"})
        committed.set()
        checkpoint.join(30)
        cluster._db.set_progress_handler(None, 0)
        assert not checkpoint.is_alive()
        assert waited == [True]  # the transaction committed while the checkpoint was inside SQLite
        assert (-1 in {r["id"] for r in cluster.scan_table("d.t")})
        assert cluster.checkpoint().records == 1  # the row committed meanwhile is the next one's
        assert saved(cluster) == in_memory(cluster)
    finally:
        cluster.close()


def test_a_checkpoint_that_fails_leaves_its_changes_to_the_next(tmp_path: Path) -> None:
    cluster = MiniCluster(tmp_path / "data", binlog_dir=tmp_path / "binlog", resolved_ts_interval=0,
                          checkpoint_interval_s=None)
    try:
        cluster.create_table("d.t", [make_column("id", "BIGINT"), make_column("s", "VARCHAR(8)")], primary_key=["id"])
        cluster.checkpoint()
        before = saved(cluster)
        cluster.bulk_insert("d.t", pa.table({"id": list(range(5000)), "s": ["x"] * 5000}))
        cluster._db.set_progress_handler(lambda: 1, 1000)  # interrupts the statement: the transaction rolls back
        with pytest.raises(sqlite3.OperationalError):
            cluster.checkpoint()
        cluster._db.set_progress_handler(None, 0)
        assert saved(cluster) == before
        with cluster.txn() as t:
            t.update("d.t", {"id": 7, "s": "y"})
        assert cluster.checkpoint().records == 5001
        assert saved(cluster) == in_memory(cluster)
    finally:
        cluster.close()


def test_a_cluster_that_died_after_incremental_checkpoints_comes_back_with_the_same_data(tmp_path: Path) -> None:
    data, binlog, out = tmp_path / "data", tmp_path / "binlog", tmp_path / "state.json"
    subprocess.run([sys.executable, str(ROOT / "tests" / "support" / "upstream_checkpoint_child.py"), str(data), str(binlog),
                    str(out)], check=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    expected = json.loads(out.read_text())
    assert expected["locks"]  # the abandoned transaction's locks are part of the state
    cluster = MiniCluster(data, binlog, resolved_ts_interval=0)
    try:
        assert cluster.replayed_events > 0  # the changes after the last checkpoint came from the log
        assert json.loads(json.dumps(region_state(cluster))) == expected
        assert {r["id"]: r["s"] for r in cluster.scan_table("d.t")}[2] == "after the last checkpoint"
    finally:
        cluster.close()
