"""``theflash store history`` prints a readable range a read is served at: it starts at or above
the upstream's GC safe point (which a read checks), not only the store's own, and says whose
safe point it is; without the upstream it says the upstream's is not known (issue 52, item 9)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from pyspark_theflash.scan.session import open_read_session
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.tidb import make_column

THEFLASH = [sys.executable, "-m", "pyspark_theflash"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MiniCluster, Path]]:
    root = tmp_path_factory.mktemp("history")
    cluster = MiniCluster(root / "up", root / "binlog", resolved_ts_interval=0.05, gc_run_interval_s=None)
    cluster.serve(stores=1, binlog_port=None)
    cluster.create_table("h.t", [make_column("id", "BIGINT", not_null=True)], primary_key=["id"])
    for i in range(3):
        cluster.run_txn(lambda t, i=i: t.insert("h.t", {"id": i}))
    cluster.run_gc(cluster.get_ts())  # the upstream's safe point now lies above the table's CREATE
    cluster.run_txn(lambda t: t.insert("h.t", {"id": 10}))
    done = subprocess.run(THEFLASH + ["writer", "run", "--binlog", f"file://{root / 'binlog'}", "--store",
                                      str(root / "store"), "--upstream", cluster.pd_address, "--until-caught-up"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    try:
        yield cluster, root / "store"
    finally:
        cluster.close()


def history(store: Path, *flags: str) -> dict:
    done = subprocess.run(THEFLASH + ["store", "history", "--json", *flags, str(store), "h.t"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["h.t"]["history"][0]


def test_the_readable_range_starts_at_the_upstreams_gc_safe_point_and_a_read_there_is_served(world) -> None:
    cluster, store = world
    safe_point = cluster.gc_safe_point()
    h = history(store)
    assert h["gc_safe_point_of"] == "upstream" and h["gc_safe_point"] == safe_point
    assert h["readable_from"] == max(safe_point, h["created_ts"]) == safe_point > h["created_ts"]
    session = open_read_session(str(store), "h.t", snapshot_ts=h["readable_from"])
    try:
        assert session.ts == h["readable_from"]
    finally:
        session.close()
    with pytest.raises(Exception, match="below the GC safe point"):
        open_read_session(str(store), "h.t", snapshot_ts=h["readable_from"] - 1)


def test_without_the_upstream_the_range_is_the_stores_and_says_the_upstreams_is_unknown(world) -> None:
    _, store = world
    h = history(store, "--upstream", "grpc://127.0.0.1:1")
    assert h["gc_safe_point_of"] == "store" and h["readable_from"] == h["created_ts"]
    assert "grpc://127.0.0.1:1 did not answer" in h["upstream_unasked"]
    text = subprocess.run(THEFLASH + ["store", "history", "--no-upstream", str(store), "h.t"], capture_output=True,
                          text=True, timeout=120).stdout
    assert "the store's GC safe point" in text and "the upstream's GC safe point is not known" in text
