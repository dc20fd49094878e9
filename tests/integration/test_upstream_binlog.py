"""The mini cluster's binlog: every state change is there, per region in raft order with
increasing indexes; a region starts with a snapshot or the split that made it; resolved_ts
never passes an open lock nor a later commit; and replaying the log (decoded with the codec)
gives exactly the rows the cluster holds."""
from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pyspark_theflash.binlog import open_source
from pyspark_theflash.binlog.rows import iter_rows
from pyspark_theflash.codec import Lock, Write, encode_region_key
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.tidb import record_range
from pyspark_theflash.upstream_client.records import decode_value
from pyspark_theflash.upstream.workloads import BankWorkload, Faults, OrdersWorkload

Row = binlog_pb2.Row


def read_log(binlog_dir: Path) -> list[binlog_pb2.Event]:
    events: list[binlog_pb2.Event] = []
    with open_source(str(binlog_dir)) as source:
        while True:
            batch = source.read(10_000, 0.2)
            if not batch:
                return events
            events.extend(pe.event for pe in batch)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One cluster running bank and orders with every fault, its log, and its final rows."""
    root = tmp_path_factory.mktemp("upstream-binlog")
    cluster = MiniCluster(root / "data", root / "binlog", segment_bytes=256 << 10,
                          resolved_ts_interval=0.02, region_split_keys=25)
    try:
        faults = Faults(dying=0.05, rollback=0.05, large=0.03, split_merge=0.1, schema=0.05,
                        large_keys=15, dying_ttl_ms=100)
        bank = BankWorkload(cluster, accounts=30, initial=50, seed=1, count=200, threads=2, faults=faults)
        orders = OrdersWorkload(cluster, seed=2, count=80, threads=2, faults=faults)
        bank.setup()
        orders.setup()
        bank.start()
        orders.start()
        bank.join()
        orders.join()
        assert bank.stats.errors == [] and orders.stats.errors == []
        final_ts = cluster.get_ts()
        tables = {q: cluster.scan_table(q, final_ts) for q in ("bank.accounts", "shop.customers", "shop.orders", "shop.order_items")}
        infos = {q: cluster.table_info(*q.split(".")) for q in tables}
        cluster.advance_resolved_ts()
        regions = cluster.regions()
        read_indexes = {r.id: cluster.read_index(r.id) for r in regions}
    finally:
        cluster.close()
    return {"events": read_log(root / "binlog"), "final_ts": final_ts, "tables": tables, "infos": infos,
            "regions": regions, "read_indexes": read_indexes, "bank": bank, "orders": orders}


def test_every_region_log_is_in_raft_order_and_starts_with_a_snapshot_or_its_split(run: dict[str, Any]) -> None:
    last: dict[int, int] = {}
    born_by_split: set[int] = set()
    kinds = defaultdict(int)
    for e in run["events"]:
        kind = e.WhichOneof("payload")
        kinds[kind] += 1
        if kind in ("ddl", "resolved"):
            assert e.region_id == 0 and e.index == 0  # a DDL, or many regions' resolved ts: no region's log
            if kind == "resolved":
                assert len(e.resolved.regions) == len(set(e.resolved.regions)) > 0
                assert all(r in last or r in born_by_split for r in e.resolved.regions), "a resolved ts of an unborn region"
            continue
        if e.region_id not in last:
            assert kind == "snapshot" or e.region_id in born_by_split, f"region {e.region_id} starts with {kind}"
            if kind == "snapshot":
                last[e.region_id] = e.index
                continue
            last[e.region_id] = 5  # a split-born region's log starts after RAFT_INIT_LOG_INDEX
        if kind in ("entries", "admin"):
            assert e.index == last[e.region_id] + 1, f"region {e.region_id}: index {e.index} after {last[e.region_id]}"
        else:
            raise AssertionError(f"region {e.region_id}: a {kind} event (resolved ts travels per store, in batches)")
        last[e.region_id] = e.index
        if kind == "admin" and e.admin.HasField("split"):
            born_by_split.update(r.id for r in e.admin.split.regions if r.id != e.region_id)
    assert kinds["entries"] > 100 and kinds["admin"] > 0 and kinds["resolved"] > 0
    # The log ends at each live region's read index: every state change is in it.
    for region_id, index in run["read_indexes"].items():
        assert last.get(region_id, 5) == index  # 5: split-born, no entry yet


def test_no_event_stamped_after_a_schema_change_comes_before_it_in_the_log(run: dict[str, Any]) -> None:
    """A DDL event precedes every commit and every resolved ts stamped after its commit ts, so
    a replica that applied a resolved ts R knows every schema change committed at or below R."""
    latest = 0  # the highest commit ts or resolved ts logged so far
    ddl = 0
    for e in run["events"]:
        kind = e.WhichOneof("payload")
        if kind == "ddl":
            assert e.ddl.commit_ts > latest, f"a {e.ddl.Type.Name(e.ddl.type)} at {e.ddl.commit_ts} follows ts {latest}"
            ddl += 1
        elif kind == "resolved":
            latest = max(latest, e.resolved.ts)
        elif kind == "entries":
            for row in iter_rows(e.entries):
                if row.type in (Row.COMMIT, Row.COMMITTED):
                    latest = max(latest, row.commit_ts)
    assert ddl > 3 and latest > 0


def test_resolved_ts_never_passes_an_open_lock_or_a_later_commit(run: dict[str, Any]) -> None:
    ranges: dict[int, tuple[bytes, bytes]] = {}
    open_locks: dict[bytes, int] = {}  # raw key -> start_ts of its open prewrite
    resolved: dict[int, int] = defaultdict(int)
    checked = 0
    for e in run["events"]:
        kind = e.WhichOneof("payload")
        if kind == "snapshot":
            ranges[e.region_id] = (e.snapshot.region.start_key, e.snapshot.region.end_key)
        elif kind == "admin" and e.admin.HasField("split"):
            for r in e.admin.split.regions:
                ranges[r.id] = (r.start_key, r.end_key)
                resolved[r.id] = resolved[e.region_id]
        elif kind == "admin" and e.admin.HasField("merge"):
            m = e.admin.merge
            ranges.pop(m.source.id)
            ranges[m.target.id] = (m.target.start_key, m.target.end_key)
            resolved[m.target.id] = min(resolved[m.target.id], resolved.pop(m.source.id, 0))
        elif kind == "entries":
            for row in iter_rows(e.entries):
                if row.type == Row.PREWRITE:
                    open_locks[row.key] = row.start_ts
                elif row.type in (Row.COMMIT, Row.ROLLBACK):
                    if open_locks.get(row.key) == row.start_ts:
                        del open_locks[row.key]
                if row.type in (Row.COMMIT, Row.COMMITTED):
                    assert row.commit_ts > resolved[e.region_id], "a commit at or below a resolved_ts already sent"
        elif kind == "resolved":
            for region_id in e.resolved.regions:
                lo, hi = ranges[region_id]
                for key, start_ts in open_locks.items():
                    enc = encode_region_key(key)
                    if enc >= lo and (not hi or enc < hi):
                        assert e.resolved.ts < start_ts, f"region {region_id}: resolved_ts {e.resolved.ts} >= lock {start_ts}"
                        checked += 1
                assert e.resolved.ts > resolved[region_id], "a region's resolved ts only moves forward"
                resolved[region_id] = e.resolved.ts
    assert checked > 0  # some resolved_ts was computed while locks were open


def replay_log(events: list[binlog_pb2.Event]) -> tuple[dict[bytes, list[tuple[int, bytes | None]]], dict[tuple[bytes, int], tuple[int, bytes]]]:
    """(committed versions per key, open prewrites by (key, start_ts)) as a replica rebuilds
    them from the log alone."""
    versions: dict[bytes, list[tuple[int, bytes | None]]] = defaultdict(list)
    pending: dict[tuple[bytes, int], tuple[int, bytes]] = {}
    for e in events:
        if e.HasField("snapshot"):
            for w in e.snapshot.writes:
                write = Write.parse(w.write)
                value = None if write.write_type == "D" else (write.short_value if write.short_value is not None else w.value)
                versions[w.key].append((w.commit_ts, value))
            assert not e.snapshot.locks, "the bootstrap snapshot of an empty cluster has no locks"
        elif e.HasField("entries"):
            for row in iter_rows(e.entries):
                if row.type == Row.PREWRITE:
                    pending[(row.key, row.start_ts)] = (row.op, row.value)
                elif row.type == Row.ROLLBACK:
                    pending.pop((row.key, row.start_ts), None)
                elif row.type == Row.COMMIT:
                    op, value = pending.pop((row.key, row.start_ts))
                    if op != binlog_pb2.LOCK:
                        versions[row.key].append((row.commit_ts, value if op == binlog_pb2.PUT else None))
                elif row.type == Row.COMMITTED and row.op != binlog_pb2.LOCK:
                    versions[row.key].append((row.commit_ts, row.value if row.op == binlog_pb2.PUT else None))
    return versions, pending


def replay(events: list[binlog_pb2.Event]) -> dict[bytes, list[tuple[int, bytes | None]]]:
    return replay_log(events)[0]


def test_the_log_decoded_with_the_codec_gives_the_rows_the_cluster_holds(run: dict[str, Any]) -> None:
    versions = replay(run["events"])
    ts = run["final_ts"]
    for qualified, expected in run["tables"].items():
        info = run["infos"][qualified]
        lo, hi = record_range(info["id"])
        rows = []
        for key in sorted(k for k in versions if lo <= k < hi):
            visible = [v for v in versions[key] if v[0] <= ts]
            if visible and max(visible)[1] is not None:
                rows.append(decode_value(info, key, max(visible)[1]))
        assert rows == expected, qualified
        assert len(rows) > 0
    assert sum(r["balance"] for r in run["tables"]["bank.accounts"]) == 30 * 50


def test_a_cluster_killed_mid_workload_comes_back_as_its_log_describes(tmp_path: Path) -> None:
    """kill -9 during the bank workload: the restarted cluster replays its log (its WAL),
    holds exactly the versions and locks the log gives, and continues every raft index."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from pyspark_theflash.binlog.segment import list_segments, segment_path

    root = Path(__file__).resolve().parents[2]
    data, binlog = tmp_path / "data", tmp_path / "binlog"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyspark_theflash", "upstream", "--data", str(data), "--binlog", str(binlog),
         "--workload", "bank", "--accounts", "30", "--faults", "dying=0.1,split_merge=0.05", "--region-split-keys", "10"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root, env=dict(os.environ, PYTHONPATH=str(root)),
    )
    try:
        deadline = time.monotonic() + 60

        def log_bytes() -> int:
            return sum(segment_path(binlog, n).stat().st_size for n in list_segments(binlog)) if binlog.exists() else 0

        while log_bytes() < 30_000:
            assert proc.poll() is None and time.monotonic() < deadline, "the workload did not get going"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    logged = read_log(binlog)
    last_index = {e.region_id: e.index for e in logged}
    versions, pending = replay_log(logged)

    cluster = MiniCluster(data, binlog, resolved_ts_interval=0)
    try:
        assert cluster.replayed_events == len(logged) - 1  # all but the bootstrap snapshot: the first checkpoint has it
        for region in cluster.regions():
            assert cluster.read_index(region.id) == last_index.get(region.id, 5)  # 5: split-born, no entry yet
        held_versions: dict[bytes, list[tuple[int, bytes | None]]] = defaultdict(list)
        held_locks = set()
        for region in cluster.regions():
            snap = cluster.region_snapshot(region.id).snapshot
            for w in snap.writes:
                write = Write.parse(w.write)
                value = None if write.write_type == "D" else (write.short_value if write.short_value is not None else w.value)
                held_versions[w.key].append((w.commit_ts, value))
            held_locks.update((lk.key, Lock.parse(lk.lock).start_ts) for lk in snap.locks)
        assert {k: sorted(v) for k, v in held_versions.items()} == {k: sorted(v) for k, v in versions.items()}
        assert held_locks == set(pending)
        # The dead process's locks are resolved by a read, as any reader would; the bank holds.
        balances = [r["balance"] for r in cluster.scan_table("bank.accounts")]
        assert len(balances) == 30 and sum(balances) == 30 * 1000
        # New changes (the read's rollbacks, this transaction) continue each region's raft index.
        with cluster.txn(one_pc=False) as t:
            for i in range(30):
                t.update("bank.accounts", {"id": i, "balance": 1000})
        new_entries: dict[int, int] = {}
        for e in read_log(binlog)[len(logged):]:
            if e.WhichOneof("payload") in ("entries", "admin"):
                new_entries.setdefault(e.region_id, e.index)
        assert new_entries
        assert all(index == last_index.get(rid, 5) + 1 for rid, index in new_entries.items())
    finally:
        cluster.close()


def test_a_schema_change_is_stamped_above_a_commit_at_a_ts_the_tso_has_not_handed_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An async-commit (or 1PC) commit ts is max_ts + 1, which the TSO may not have handed out
    yet: a schema change logged after that commit must be stamped above it, not with the
    TSO's next ts (which is that very ts within one millisecond: a DROP TABLE was once logged
    at the ts of a commit before it). The clock is held still, as in that millisecond."""
    from pyspark_theflash.upstream import tso as tso_module
    from pyspark_theflash.upstream.tidb import make_column

    cluster = MiniCluster(tmp_path / "data", tmp_path / "binlog", resolved_ts_interval=0)  # no ticker takes a ts
    try:
        cluster.create_table("t.a", [make_column("id", "BIGINT", not_null=True), make_column("v", "BIGINT")],
                             primary_key=["id"])
        txn = cluster.txn(one_pc=False, async_commit=True)
        txn.insert("t.a", {"id": 1, "v": 1})
        frozen = time.time()
        monkeypatch.setattr(tso_module, "time", SimpleNamespace(time=lambda: frozen))  # the TSO's clock only
        cluster.store.refuse_commits_at_or_below(cluster.tso.current())  # a read at the TSO's last ts
        commit_ts = txn.commit()  # min_commit_ts = max_ts + 1: the TSO's next ts
        assert commit_ts == cluster.tso.current() + 1
        ddl_ts = cluster._ddl_ts()  # what a schema change logged now is stamped with
    finally:
        cluster.close()
    assert ddl_ts > commit_ts
