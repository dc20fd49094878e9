"""The mini cluster over the wire: the Upstream gRPC service and the HTTP status port answer
as the in-process cluster does, and `theflash upstream` writes a binlog a source can read."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pyspark_theflash.binlog import open_source
from pyspark_theflash.binlog.rows import iter_rows
from pyspark_theflash.codec import encode_record_key
from pyspark_theflash.txn.status import TxnAction, TxnFate
from pyspark_theflash.upstream_client.client import UpstreamClient, connect
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream_client.errors import SchemaError
from pyspark_theflash.upstream.percolator import PUT, Mutation
from pyspark_theflash.upstream.tidb import make_column
from pyspark_theflash.codec.tso import compose_ts, physical_ms

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("upstream-service")
    cluster = MiniCluster(root / "data", root / "binlog", resolved_ts_interval=0)
    cluster.create_table("bank.accounts", [make_column("id", "BIGINT"), make_column("balance", "BIGINT")], primary_key=["id"])
    cluster.create_table("shop.tags", [make_column("name", "VARCHAR(20)"), make_column("n", "INT")], primary_key=["name"])
    with cluster.txn() as t:
        for i in range(5):
            t.insert("bank.accounts", {"id": i, "balance": 10})
    addresses = cluster.serve()
    client = connect(addresses["upstream"])
    yield cluster, client, addresses
    client.close()
    cluster.close()


def test_both_forms_implement_the_upstream_client_protocol(served) -> None:
    cluster, client, _ = served
    assert isinstance(cluster, UpstreamClient) and isinstance(client, UpstreamClient)


def test_tso_over_grpc_is_strictly_increasing_and_shared_with_the_cluster(served) -> None:
    cluster, client, _ = served
    a = client.get_ts()
    b = cluster.get_ts()
    c = client.get_ts()
    assert a < b < c
    assert abs(physical_ms(c) - physical_ms(a)) < 60_000


def test_regions_read_index_and_snapshot_match_in_process(served) -> None:
    cluster, client, _ = served
    assert client.regions() == cluster.regions()
    for r in client.regions():
        assert client.read_index(r.id) == cluster.read_index(r.id)
        assert client.region_snapshot(r.id) == cluster.region_snapshot(r.id)
    with pytest.raises(Exception, match="region 999"):
        client.read_index(999)


def test_read_indexes_asks_every_region_at_once_with_the_answers_of_one_by_one(served) -> None:
    from pyspark_theflash.upstream_client.errors import RegionNotFoundError

    cluster, client, _ = served
    ids = [int(r.id) for r in client.regions()]
    assert client.read_indexes(ids) == cluster.read_indexes(ids) == {rid: client.read_index(rid) for rid in ids}
    assert client.read_indexes([]) == {}
    with pytest.raises(RegionNotFoundError, match="999"):
        client.read_indexes(ids + [999])


def test_check_txn_status_and_resolve_lock_over_grpc(served) -> None:
    cluster, client, _ = served
    k1, k2 = encode_record_key(9999, 1), encode_record_key(9999, 2)
    start = client.get_ts()
    cluster.store.prewrite([Mutation(PUT, k1, b"a"), Mutation(PUT, k2, b"b")], k1, start, 100)
    now = compose_ts(physical_ms(start) + 1, 0)
    status = client.check_txn_status(k1, start, now, now)
    assert (status.fate, status.ttl_ms) == (TxnFate.LOCKED, 100)
    later = compose_ts(physical_ms(start) + 101, 0)
    status = client.check_txn_status(k1, start, later, later)
    assert (status.fate, status.action) == (TxnFate.ROLLED_BACK, TxnAction.TTL_EXPIRE_ROLLBACK)
    assert client.resolve_lock(start, 0) == 1
    assert cluster.store.locks() == []


def test_async_commit_status_over_grpc_carries_the_primary_lock_and_check_secondary_locks_decides(served) -> None:
    cluster, client, _ = served
    k1, k2, k3 = (encode_record_key(9998, h) for h in (1, 2, 3))
    start = client.get_ts()
    mc1 = cluster.store.prewrite([Mutation(PUT, k1, b"a")], k1, start, 1, async_commit=True, secondaries=[k2, k3])
    mc2 = cluster.store.prewrite([Mutation(PUT, k2, b"b")], k1, start, 1, async_commit=True)
    later = compose_ts(physical_ms(start) + 100, 0)
    status = client.check_txn_status(k1, start, later, later)  # past its TTL: still locked
    assert status == cluster.check_txn_status(k1, start, later, later)
    assert status.fate == TxnFate.LOCKED and status.lock is not None
    assert (status.lock.use_async_commit, status.lock.min_commit_ts, status.lock.secondaries) == (True, mc1, (k2, k3))
    checked = client.check_secondary_locks([k2], start)
    assert [(lk.key, lk.min_commit_ts, lk.use_async_commit) for lk in checked.locks] == [(k2, mc2, True)]
    # k3 was never prewritten: CheckSecondaryLocks rolls it back for good
    assert client.check_secondary_locks([k2, k3], start) == type(checked)((), 0)
    forced = client.check_txn_status(k1, start, later, later, force_sync_commit=True)
    assert (forced.fate, forced.action) == (TxnFate.ROLLED_BACK, TxnAction.TTL_EXPIRE_ROLLBACK)
    assert client.resolve_lock(start, 0) == 1 and cluster.store.locks() == []


def test_a_read_index_over_grpc_carries_the_read_ts(served) -> None:
    cluster, client, _ = served
    start = cluster.get_ts()  # a transaction that prewrites after the read below
    ts = client.get_ts()
    client.read_index(1, ts)
    assert cluster.store.max_ts == ts
    k = encode_record_key(9997, 1)
    assert cluster.store.prewrite([Mutation(PUT, k, b"x")], k, start, 3000, async_commit=True) == ts + 1
    assert cluster.resolve_lock(start, 0) == 1


def test_committed_status_carries_commit_ts(served) -> None:
    cluster, client, _ = served
    t = cluster.txn(one_pc=False)
    t.update("bank.accounts", {"id": 1, "balance": 11})
    t.update("bank.accounts", {"id": 2, "balance": 9})
    commit_ts = t.commit()
    now = client.get_ts()
    key = encode_record_key(cluster.table_info("bank", "accounts")["id"], 1)
    status = client.check_txn_status(key, t.start_ts, now, now)
    assert (status.fate, status.commit_ts) == (TxnFate.COMMITTED, commit_ts)


def test_gc_safe_point_only_moves_forward(served) -> None:
    _, client, _ = served
    ts = client.get_ts()
    assert client.update_gc_safe_point(ts) == ts
    assert client.update_gc_safe_point(ts - 100) == ts
    assert client.gc_safe_point() == ts


def test_schema_over_http_matches_the_catalog(served) -> None:
    cluster, client, addresses = served
    assert sorted(client.list_tables()) == sorted(cluster.list_tables()) == [("bank", "accounts"), ("shop", "tags")]
    info = client.table_info("bank", "accounts")
    assert info == cluster.table_info("bank", "accounts")
    assert info["pk_is_handle"] and info["schema_version"] > 0
    assert client.table_info_by_id(info["id"]) == ("bank", info)
    tags = client.table_info("shop", "tags")
    assert tags["is_common_handle"] and not tags["pk_is_handle"]
    base = f"http://{addresses['status']}"
    dbs = json.loads(urllib.request.urlopen(f"{base}/schema").read())
    assert sorted(d["db_name"]["L"] for d in dbs) == ["bank", "shop"]
    listed = json.loads(urllib.request.urlopen(f"{base}/schema/shop").read())
    assert [t["name"]["O"] for t in listed] == ["tags"]
    body = json.loads(urllib.request.urlopen(f"{base}/db-table/{info['id']}").read())
    assert body["db_info"]["db_name"] == {"O": "bank", "L": "bank"} and body["table_info"]["id"] == info["id"]
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base}/schema/bank/nope")
    assert err.value.code == 404 and "unknown table bank.nope" in err.value.read().decode()
    with pytest.raises(SchemaError):
        client.table_info("nope", "nope")


def test_schema_version_increases_with_add_and_drop_column(served) -> None:
    cluster, client, _ = served
    before = client.table_info("shop", "tags")
    added = cluster.add_column("shop.tags", make_column("color", "VARCHAR(10)"), default="red")
    assert added["schema_version"] > before["schema_version"]
    after = client.table_info("shop", "tags")
    color = [c for c in after["cols"] if c["name"]["L"] == "color"][0]
    assert color["origin_default"] == "red" and color["id"] == before["max_col_id"] + 1
    dropped = cluster.drop_column("shop.tags", "color")
    assert dropped["schema_version"] > after["schema_version"]
    assert [c["name"]["L"] for c in client.table_info("shop", "tags")["cols"]] == ["name", "n"]


def test_cluster_info_names_the_status_and_binlog_addresses(served) -> None:
    _, client, addresses = served
    info = client.cluster_info()
    assert info.status_address == addresses["status"]
    assert info.binlog_address == addresses["binlog"] and info.binlog_address.startswith("grpc://127.0.0.1:")


def test_theflash_upstream_command_writes_a_binlog_open_source_reads(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "pyspark_theflash", "upstream", "--data", str(tmp_path / "d"),
         "--binlog", str(tmp_path / "b"), "--workload", "bank", "--duration", "2", "--accounts", "20"],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "stopped cleanly" in proc.stdout and "committed=" in proc.stdout
    with open_source(str(tmp_path / "b")) as source:
        events = [pe.event for pe in source.read(100_000, 1.0)]
    assert events[0].HasField("snapshot") and events[0].region_id == 1
    rows = [r for e in events if e.HasField("entries") for r in iter_rows(e.entries)]
    assert len(rows) > 20
    assert any(e.HasField("resolved") for e in events)


@pytest.mark.parametrize("mode", ["async", "2pc"])
def test_theflash_upstream_commits_with_async_commit_by_default_and_runs_gc_by_its_life_time(
    tmp_path: Path, mode: str,
) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = [sys.executable, "-m", "pyspark_theflash", "upstream", "--data", str(tmp_path / "d"),
            "--binlog", str(tmp_path / "b"), "--workload", "bank", "--duration", "2", "--accounts", "20",
            "--region-split-keys", "6", "--gc-life-time", "300ms", "--gc-run-interval", "200ms"]
    started = time.time()
    proc = subprocess.run(args + ([] if mode == "async" else ["--txn-mode", "2pc"]),
                          capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    with open_source(str(tmp_path / "b")) as source:
        events = [pe.event for pe in source.read(100_000, 1.0)]
    prewrites = [r for e in events if e.HasField("entries") for r in iter_rows(e.entries) if r.type == 0]
    assert prewrites and all(r.use_async_commit == (mode == "async") for r in prewrites)
    if mode == "async":  # a transfer spanning regions (one region: 1PC): its primary lists the other key
        assert all(len(r.secondaries) == 1 for r in prewrites if r.key == r.primary)
    cluster = MiniCluster(tmp_path / "d", tmp_path / "b", resolved_ts_interval=0)
    try:  # GC ran every 200 ms at now - 300 ms, and the safe point was saved
        assert physical_ms(cluster.gc_safe_point()) >= int(started * 1000)
    finally:
        cluster.close()


def test_theflash_upstream_refuses_a_gc_life_time_that_is_not_a_duration(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pyspark_theflash", "upstream", "--data", str(tmp_path / "d"),
         "--binlog", str(tmp_path / "b"), "--gc-life-time", "ten minutes"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT,
    )
    assert proc.returncode == 2 and "'ten minutes' is not a duration" in proc.stderr


def test_theflash_upstream_serve_answers_over_grpc_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    import signal

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyspark_theflash", "upstream", "--data", str(tmp_path / "d"), "--serve", "0",
         "--workload", "bank", "--accounts", "10", "--rate", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        serving = ""
        for line in proc.stdout:  # blocks until the cluster prints its addresses
            if "serving upstream" in line:
                serving = line
                break
        assert serving, proc.stderr.read() if proc.stderr else ""
        address = serving.split("serving upstream ")[1].split()[0]
        client = connect(address)
        try:
            assert client.get_ts() > 0
            deadline = time.monotonic() + 30  # the workload creates its table after serving starts
            while ("bank", "accounts") not in client.list_tables():
                assert time.monotonic() < deadline, "bank.accounts never appeared"
            binlog_url = client.binlog_address
        finally:
            client.close()
        with open_source(binlog_url) as source:
            first = source.read(1, 10.0)
        assert first and first[0].event.HasField("snapshot")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped cleanly" in out


def test_scan_table_over_grpc_reads_what_the_cluster_reads_at_each_ts_with_the_schema_then(tmp_path: Path) -> None:
    with MiniCluster(tmp_path / "data", tmp_path / "binlog", resolved_ts_interval=0) as cluster:
        client = connect(cluster.serve(binlog_port=None)["upstream"])
        try:
            cluster.create_table("shop.notes", [make_column("id", "BIGINT"), make_column("body", "TEXT"),
                                                make_column("n", "INT")], primary_key=["id"])
            with cluster.txn() as t:  # more rows than one response chunk carries
                for i in range(5000):
                    t.insert("shop.notes", {"id": i, "body": f"note {i}" * (i % 7), "n": i % 100})
            before = cluster.get_ts()
            cluster.modify_column("shop.notes", "n", make_column("n", "BIGINT"))
            cluster.add_column("shop.notes", make_column("tag", "VARCHAR(8)"), default="t")
            cluster.run_txn(lambda t: t.update("shop.notes", {"id": 7, "n": 1 << 40, "tag": "big"}))
            after = cluster.get_ts()
            cluster.truncate_table("shop.notes")
            for ts in (before, after, None):
                scan = client.read_table("shop.notes", ts)
                assert scan.rows == cluster.scan_table("shop.notes", scan.ts)
                assert scan.table_info == cluster.table_info_at("shop.notes", scan.ts)
            assert len(client.scan_table("shop.notes", before)) == 5000
            assert sorted(client.scan_table("shop.notes", before)[7]) == ["body", "id", "n"]  # the schema at ts
            assert client.scan_table("shop.notes", after)[7]["n"] == 1 << 40
            assert client.scan_table("shop.notes") == []  # truncated: the name is an empty table now
            with pytest.raises(SchemaError, match="no table shop.nothing"):
                client.scan_table("shop.nothing", after)
        finally:
            client.close()
