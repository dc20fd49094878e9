"""Change reads against the upstream's history: the bank, orders (with schema changes) and types
workloads run with splits and merges, dying and rolled-back transactions, while the writer
applies the binlog, compacts and collects garbage behind the upstream's GC; then for random ts
pairs above the safe point the change read of each table equals the mini cluster's own history
(every version in its write CF), both as every version and as net changes, and applying the
changes to the snapshot at from_ts gives the snapshot at to_ts."""
from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from change_reference import apply_changes, changes_as_tuples, upstream_changes, upstream_snapshot
from flash_rig import FlashRig, wait_for
from pyspark_theflash.scan.errors import ChangesBelowSafePointError
from pyspark_theflash.scan.session import open_change_session, read_stream
from pyspark_theflash.schema import TableInfo
from pyspark_theflash.store import Store
from pyspark_theflash.upstream_client.errors import SchemaError
from pyspark_theflash.upstream.workloads import (BANK_TABLE, TYPES_TABLE, BankWorkload, Faults, OrdersWorkload,
                                                 TypesWorkload)

# shop.audit is truncated, renamed and recreated by the schema fault: a new table id each time,
# whose changes start from nothing (the pairs below skip a range across a new id)
TABLES = ("shop.orders", "shop.customers", "shop.order_items", "shop.audit", BANK_TABLE, TYPES_TABLE)
KIND_ORDER = {"delete": 0, "update_preimage": 1, "update_postimage": 2, "insert": 3}


def _faults(**kw: float) -> Faults:
    return Faults(split_merge=0.05, dying=0.02, rollback=0.02, dying_ttl_ms=200, **kw)


def _key(change: tuple[Any, int, str, dict[str, Any]]) -> tuple[Any, ...]:
    handle, ts, kind, _ = change
    return (ts, KIND_ORDER[kind], repr(handle))


def _read(rig: FlashRig, table: str, from_ts: int, to_ts: int, net: bool) -> pa.Table:
    with open_change_session(rig.store, table, from_ts, to_ts, net=net,
                             options={"upstream": rig.upstream, "region_wait_timeout": "120s",
                                      "partition_target_bytes": 1 << 16}) as s:
        batches = [b for n in range(len(s.streams)) for b in read_stream(s, n)]
        return pa.Table.from_batches(batches, schema=s.schema)


def _store_safe_point(rig: FlashRig) -> int:
    with Store.open(rig.store, readonly=True) as store, store.snapshot() as view:
        return int(view.gc_safe_point())


def _check_pair(rig: FlashRig, table: str, from_ts: int, to_ts: int) -> int:
    """Compare one table's changes in (from_ts, to_ts]; the number of changes compared."""
    cluster = rig.cluster
    info = TableInfo.from_json(cluster.table_info_at(table, to_ts))
    columns = [c.name for c in info.columns]
    compared = 0
    # The replica is read first: the read resolves the locks at or below to_ts, and so can commit
    # an abandoned async-commit transaction (commit ts <= to_ts) in the upstream. Only then is
    # the upstream's history up to to_ts final; a reference taken before the read missed those
    # commits, and the replica, right, had a change more.
    replica = {net: sorted(changes_as_tuples(_read(rig, table, from_ts, to_ts, net), columns), key=_key)
               for net in (False, True)}
    for net in (False, True):
        got = replica[net]
        want = sorted(upstream_changes(cluster, table, from_ts, to_ts, net=net), key=_key)
        if len(got) != len(want):  # name the changes one side has and the other has not
            extra = list((Counter(map(repr, got)) - Counter(map(repr, want))).elements())  # repeats count
            missing = list((Counter(map(repr, want)) - Counter(map(repr, got))).elements())
            raise AssertionError(f"{table} ({from_ts}, {to_ts}] net={net}: {len(got)} changes, upstream {len(want)}; "
                                 f"only in the replica: {extra!r:.1500}; only upstream: {missing!r:.1500}")
        for g, w in zip(got, want):
            assert g == w, f"{table} ({from_ts}, {to_ts}] net={net}: replica {g!r:.600} upstream {w!r:.600}"
        before = upstream_snapshot(cluster, table, from_ts, to_ts)
        assert apply_changes(before, got) == upstream_snapshot(cluster, table, to_ts, to_ts), \
            f"{table}: snapshot at {from_ts} + changes != snapshot at {to_ts} (net={net})"
        compared += len(got)
    return compared


def test_changes_between_random_ts_pairs_equal_the_upstream_history_through_schema_changes_splits_and_gc(
        tmp_path: Path) -> None:
    rig = FlashRig(tmp_path, expired_lock_grace_s=0.5, gc_life_time_s=3600, gc_run_interval_s=None)
    try:
        common = dict(seed=31, duration_s=10)
        workloads = [
            OrdersWorkload(rig.cluster, rate=25, threads=2, faults=_faults(schema=0.05), **common),
            BankWorkload(rig.cluster, rate=15, faults=_faults(large=0.05), **common),
            TypesWorkload(rig.cluster, rate=10, rows=40, faults=_faults(), **common),
        ]
        for w in workloads:
            w.setup()
        rig.start_writer(compact_interval_s=0.5)
        for w in workloads:
            w.start()
        rng = random.Random(31)
        seen: list[int] = []
        gc_runs = 0
        while any(w.running() for w in workloads):
            seen.append(rig.cluster.get_ts())
            if len(seen) in (15, 30):  # GC while the workloads run: the writer compacts behind it
                rig.cluster.gc_worker.run(seen[len(seen) // 3])
                gc_runs += 1
            time.sleep(0.2)
        for w in workloads:
            w.join()
            assert w.stats.errors == [], (w.name, w.stats.errors[:5])
        assert workloads[0].stats.schema_changes >= 1, workloads[0].stats.summary()
        assert sum(w.stats.splits + w.stats.merges for w in workloads) > 0
        seen.append(rig.cluster.get_ts())
        safe_point = seen[len(seen) // 3]
        rig.cluster.gc_worker.run(safe_point)
        wait_for(lambda: _store_safe_point(rig) >= safe_point, 60, "the writer to collect up to the safe point")
        assert rig.writer_running, "the writer died"
        # the reads below go over stable Parquet parts that compaction wrote and Arrow IPC deltas
        with Store.open(rig.store, readonly=True) as store, store.snapshot() as view:
            kinds = {p.kind for p in view.parts(int(view.table(BANK_TABLE).id))}
        assert "stable" in kinds, kinds

        later = [ts for ts in seen if ts >= safe_point]
        compared = 0
        pairs = 0
        for i in range(12):
            table = TABLES[i % len(TABLES)]
            from_ts, to_ts = sorted(rng.sample(later, 2))
            try:
                if rig.cluster.table_info_at(table, from_ts)["id"] != rig.cluster.table_info_at(table, to_ts)["id"]:
                    continue  # a TRUNCATE or DROP + CREATE between: another table
            except SchemaError:
                continue  # no table of that name at one end (renamed away, not yet created again)
            compared += _check_pair(rig, table, from_ts, to_ts)
            pairs += 1
        assert pairs >= 8 and compared > 100, (pairs, compared)
        # a range starting below the safe point is refused, naming both ts
        with pytest.raises(ChangesBelowSafePointError) as err:
            _read(rig, BANK_TABLE, seen[1], seen[-1], net=False)
        assert str(seen[1]) in str(err.value) and str(seen[-1]) in str(err.value)
        assert rig.writer_running, "the writer died"
        rig.stop_writer()
    finally:
        rig.close()
