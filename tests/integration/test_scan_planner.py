"""The scan planner without Spark: partitions per region, the read lease's life, lock
handling under SI and RC, pruning, and reading a partition after its lease expired."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pytest

from flash_rig import FlashRig, wait_for
from pyspark_theflash.latch import connect as connect_latch
from pyspark_theflash.scan import LockResolveTimeoutError, plan
from pyspark_theflash.engine.partition import RangeScan
from pyspark_theflash.scan.partitions import group_ranges
from pyspark_theflash.scan.read import read_partition
from pyspark_theflash.store import Store, StoreOptions
from pyspark_theflash.store.predicate import col
from pyspark_theflash.upstream.tidb import Abandoned, make_column, record_key

TABLE = "plan.accounts"
ROWS = 60
REGIONS = 6


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashRig]:
    r = FlashRig(tmp_path_factory.mktemp("planner"))
    table = r.cluster.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("balance", "BIGINT")],
                                   primary_key=["id"])
    for region in range(1, REGIONS):
        r.cluster.split_at(record_key(table, region * ROWS // REGIONS))
    r.start_writer(interval_s=0.05)
    for region in range(REGIONS):  # one flush per region: parts with disjoint id ranges
        with r.cluster.txn() as t:
            for i in range(region * ROWS // REGIONS, (region + 1) * ROWS // REGIONS):
                t.insert(TABLE, {"id": i, "balance": 10})
        r.wait_replicated(TABLE)
        with plan(r.store, TABLE, r.options()) as p:
            pass  # a learner read: the rows are flushed before the next batch
    yield r
    r.close()


def rows_of(p) -> pa.Table:
    return pa.Table.from_batches([b for part in p.partitions for b in read_partition(part)]).sort_by("id")


def test_one_partition_per_region_or_grouped_up_to_the_target_size(rig: FlashRig) -> None:
    with plan(rig.store, TABLE, rig.options(partition_target_bytes=1)) as p:
        assert p.stats.regions == REGIONS and len(p.partitions) == REGIONS
        assert sorted(r for part in p.partitions for r in part.region_ids) == sorted(
            {r for part in p.partitions for r in part.region_ids})
        assert all(part.size_bytes > 0 for part in p.partitions)
        assert rows_of(p).column("id").to_pylist() == list(range(ROWS))
    with plan(rig.store, TABLE, rig.options(min_partitions=1)) as p:  # 128 MiB target: neighbours grouped
        assert len(p.partitions) == 1 and len(p.partitions[0].region_ids) == REGIONS
        assert sum(rows_of(p).column("balance").to_pylist()) == 10 * ROWS
        assert rig.cluster.scan_table(TABLE, p.ts) == rows_of(p).to_pylist()
    with plan(rig.store, TABLE, rig.options(min_partitions=3)) as p:  # as many as cores, while regions last
        assert len(p.partitions) == 3 and sorted(len(part.region_ids) for part in p.partitions) == [2, 2, 2]


def test_ranges_of_nearly_equal_size_group_into_equal_partitions() -> None:
    # 16 regions whose prorated estimates differ by a few bytes, as they do for one compacted
    # part: packing up to the target made 500k/500k/375k/375k/250k-row partitions for 4 cores
    # (and 1M/875k/125k for 2), the small last one running alone after the others.
    sizes = [3_245_520 if i % 3 else 3_246_011 for i in range(16)]
    ranges = [RangeScan((i,), i * 10, (i + 1) * 10, (), size) for i, size in enumerate(sizes)]
    for cores in (1, 2, 3, 4, 8, 16):
        groups = group_ranges(ranges, -(-sum(sizes) // cores))
        assert len(groups) == cores, cores
        assert [r for g in groups for r in g] == ranges
        counts = sorted(len(g) for g in groups)
        assert counts[-1] - counts[0] <= 1, (cores, counts)
    # not contiguous: never grouped with a neighbour
    gap = [RangeScan((1,), 0, 10, (), 5), RangeScan((2,), 20, 30, (), 5), RangeScan((3,), 30, 40, (), 5)]
    assert [len(g) for g in group_ranges(gap, 1_000)] == [1, 2]
    # one range over the target stands alone; its small neighbours group beside it
    big = [RangeScan((i,), i, i + 1, (), size) for i, size in enumerate([10, 10, 100, 10, 10])]
    assert [[r.size_bytes for r in g] for g in group_ranges(big, 40)] == [[10, 10], [100], [10, 10]]


def test_a_filter_prunes_regions_whose_statistics_rule_it_out(rig: FlashRig) -> None:
    with plan(rig.store, TABLE, rig.options(min_partitions=1), predicate=col("id") == 15) as p:
        assert len(p.partitions) == 1 and p.stats.regions_pruned == REGIONS - 1
        assert rows_of(p).to_pylist() == [{"id": 15, "balance": 10}]


def test_the_read_lease_lives_while_the_plan_does_and_is_released_with_it(rig: FlashRig) -> None:
    latch = connect_latch(rig.store)
    p = plan(rig.store, TABLE, rig.options(lease_ttl="300ms"))
    lease = next(lease for lease in latch.leases() if lease.lease_id == p.lease_id)
    assert lease.ts == p.ts
    # renewed by the plan's daemon thread: still alive well past its first expiry
    wait_for(lambda: any(x.lease_id == p.lease_id and x.expires_at > lease.expires_at + 0.5 for x in latch.leases()),
             10, "the lease to be renewed")
    p.close()
    assert p.lease_id not in [x.lease_id for x in latch.leases()]


def test_a_partition_read_after_its_lease_expired_renews_it_late_while_its_files_are_kept(rig: FlashRig) -> None:
    latch = connect_latch(rig.store)
    p = plan(rig.store, TABLE, rig.options(lease_ttl="200ms"))
    expected = rows_of(p)
    p.detach()  # as in Spark: the planner hands over to the partition readers
    wait_for(lambda: p.lease_id not in [x.lease_id for x in latch.leases()], 10, "the lease to expire")
    assert rows_of(p) == expected
    assert [x.ts for x in latch.leases() if x.lease_id == p.lease_id] == [p.ts]  # the same lease, back


@pytest.fixture()
def own_rig(tmp_path: Path) -> Iterator[FlashRig]:
    """A rig of its own (TABLE, 20 rows of balance 10, the writer running) for tests that
    change rows and delete files: the module's rig keeps its rows and files as they are."""
    yield from _rig_with_rows(tmp_path)


@pytest.fixture
def raft_rig(tmp_path: Path) -> Iterator[FlashRig]:
    """``own_rig`` fed by the mini cluster's own binlog, whose indexes are raft indexes, read
    through its private service: the read-index learner read (tests of that path)."""
    yield from _rig_with_rows(tmp_path, via="binlog")


def _rig_with_rows(tmp_path: Path, via: str = "capture") -> Iterator[FlashRig]:
    r = FlashRig(tmp_path, via=via)
    try:
        r.cluster.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("balance", "BIGINT")],
                               primary_key=["id"])
        r.start_writer(interval_s=0.05)
        with r.cluster.txn() as t:
            for i in range(20):
                t.insert(TABLE, {"id": i, "balance": 10})
        r.wait_replicated(TABLE)
        yield r
    finally:
        r.close()


def expire_then_update(rig: FlashRig, p) -> None:
    """Hand the plan's lease to its readers and let it expire; then change a row, and wait
    until the store has the change (so a compaction replaces the plan's parts)."""
    latch = connect_latch(rig.store)
    p.detach()
    wait_for(lambda: p.lease_id not in [x.lease_id for x in latch.leases()], 10, "the lease to expire")
    with rig.cluster.txn() as t:
        t.update(TABLE, {"id": 7, "balance": 70})
    with plan(rig.store, TABLE, rig.options()) as q:
        assert rows_of(q).column("balance").to_pylist()[7] == 70


def test_a_partition_read_whose_files_were_deleted_after_its_lease_expired_repins_at_the_same_ts(
        own_rig: FlashRig) -> None:
    rig = own_rig
    p = plan(rig.store, TABLE, rig.options(lease_ttl="2s"))  # the new lease must outlive the read
    expected = rows_of(p)
    assert expected.num_rows == 20
    expire_then_update(rig, p)
    rig.stop_writer()
    with Store.open(rig.store, options=StoreOptions(removed_file_retention_s=0)) as store:
        store.compact(force=True)  # and deletes the files nothing pins, at once
    planned = [Path(rig.store, part.path) for q in p.partitions for r in q.ranges for part in r.parts]
    assert not all(f.exists() for f in planned)
    rig.start_writer(interval_s=0.05)
    assert rows_of(p) == expected  # the old ts, read from the parts that replaced the deleted ones
    assert any(x.ts == p.ts and x.lease_id != p.lease_id for x in connect_latch(rig.store).leases())


def test_an_engine_repins_a_partition_through_its_own_open_store(own_rig: FlashRig,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The same re-pin through the engine that reads for the service: it looks at the manifest
    through the store it holds open, not a second open of the store (one open per process)."""
    from pyspark_theflash.engine import TxnMergeTreeEngine
    from pyspark_theflash.scan.lease import LeaseKeeper

    rig = own_rig
    p = plan(rig.store, TABLE, rig.options(lease_ttl="2s"))
    expected = rows_of(p)
    expire_then_update(rig, p)
    rig.stop_writer()
    with Store.open(rig.store, options=StoreOptions(removed_file_retention_s=0)) as store:
        store.compact(force=True)
    rig.start_writer(interval_s=0.05)
    engine = TxnMergeTreeEngine.open(rig.store)
    opens: list[str] = []  # by this thread: the rig's writer thread opens its own store as it starts
    real_open = Store.open.__func__  # type: ignore[attr-defined]
    reader = threading.get_ident()

    def counted_open(cls: type[Store], *a: object, **k: object) -> Store:
        if threading.get_ident() == reader:
            opens.append(str(a[0]))
        return real_open(cls, *a, **k)

    monkeypatch.setattr(Store, "open", classmethod(counted_open))
    try:
        got = pa.Table.from_batches([b for q in p.partitions for b in engine.read_partition(q, LeaseKeeper(q))])
    finally:
        engine.close()
    assert got.sort_by("id") == expected
    assert opens == []


def test_rc_skips_a_live_lock_that_si_waits_for(rig: FlashRig) -> None:
    t = rig.cluster.txn(one_pc=False, ttl_ms=60_000, after_prewrite=lambda _: (_ for _ in ()).throw(Abandoned()))
    t.update(TABLE, {"id": 3, "balance": 99})
    t.update(TABLE, {"id": 33, "balance": 99})
    with pytest.raises(Abandoned):
        t.commit()
    try:
        with plan(rig.store, TABLE, rig.options(isolation="RC")) as p:
            assert p.stats.locks_seen == 0
            assert rows_of(p).column("balance").to_pylist() == [10] * ROWS
        with pytest.raises(LockResolveTimeoutError, match=rf"transaction started at {t.start_ts}.*isolation RC"):
            plan(rig.store, TABLE, rig.options(lock_wait_timeout="500ms"))
    finally:
        rig.cluster.resolve_lock(t.start_ts, 0)


def test_the_scan_command_prints_the_plan_and_reads(rig: FlashRig, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from pyspark_theflash.cli import main

    assert main(["scan", TABLE, "--store", rig.store, "--upstream", rig.upstream, "--read", "--sum", "balance",
                 "--partition-target-bytes", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["rows"], out["sum"], len(out["partitions"])) == (ROWS, str(10 * ROWS), REGIONS)
    future = str(rig.cluster.get_ts() + (3_600_000 << 18))
    assert main(["scan", TABLE, "--store", rig.store, "--upstream", rig.upstream, "--snapshot-ts", future]) == 2
    assert f"snapshot ts {future}" in capsys.readouterr().err


def test_a_partition_read_after_gc_passed_its_expired_snapshot_reads_while_its_files_stay_then_says_to_reload(
        own_rig: FlashRig) -> None:
    from pyspark_theflash.scan import SnapshotExpiredError

    rig = own_rig
    latch = connect_latch(rig.store)
    p = plan(rig.store, TABLE, rig.options(lease_ttl="200ms"))
    expected = rows_of(p)
    expire_then_update(rig, p)
    rig.stop_writer()
    with Store.open(rig.store) as store:
        store.gc(rig.cluster.get_ts())  # nothing pins p.ts any more; the retention keeps the files
    assert rows_of(p) == expected  # every file it planned is there: its lease comes back late
    wait_for(lambda: p.lease_id not in [x.lease_id for x in latch.leases()], 10, "the lease to expire again")
    with Store.open(rig.store, options=StoreOptions(removed_file_retention_s=0)) as store:
        assert store.delete_obsolete_files() > 0
    with pytest.raises(SnapshotExpiredError, match=rf"at ts {p.ts}: the query's read lease expired.*load the DataFrame again"):
        rows_of(p)


def test_region_pruning_maps_unsigned_bigint_handles_to_the_key_values() -> None:
    """An UNSIGNED BIGINT key keeps its bits in the int64 handle: ids >= 2**63 are negative
    handles, in the region below every small id. A region's handle range bounds the key
    column by the values it maps to, never by the signed handles themselves."""
    from pyspark_theflash.scan.planner import _might_match, key_value_ranges
    from pyspark_theflash.schema import column, table

    assert key_value_ranges(None, 100, unsigned=True) == [(2**63, 2**64 - 1), (0, 99)]
    assert key_value_ranges(100, None, unsigned=True) == [(100, 2**63 - 1)]
    assert key_value_ranges(-10, -2, unsigned=True) == [(2**64 - 10, 2**64 - 3)]
    assert key_value_ranges(None, 100, unsigned=False) == [(-(2**63), 99)]
    unsigned = table(60, "u", [column("id", "BIGINT UNSIGNED", primary_key=True), column("v", "INT")])
    signed = table(61, "s", [column("id", "BIGINT", primary_key=True), column("v", "INT")])
    above = col("id") > 2**63
    assert _might_match(above, [], unsigned, None, 100)        # holds 2**64 - 5 (handle -5)
    assert not _might_match(above, [], unsigned, 100, None)    # 100 .. 2**63 - 1 only
    assert not _might_match(col("id") == 150, [], unsigned, None, 100)
    assert _might_match(col("id") == 150, [], unsigned, 100, None)
    assert not _might_match(col("id") > 2**62, [], signed, None, 100)


# --- async commit (TiDB >= 5.0's default): the lock resolver decides through the secondaries ---------


def _abandon(*_: object) -> None:
    raise Abandoned()


def balances(p) -> dict[int, int]:
    t = rows_of(p)
    return dict(zip(t.column("id").to_pylist(), t.column("balance").to_pylist()))


def _restore(rig: FlashRig, ids: list[int]) -> None:
    def body(t) -> None:
        for i in ids:
            t.update(TABLE, {"id": i, "balance": 10})

    rig.cluster.run_txn(body)


def test_an_async_commit_transaction_whose_client_died_after_prewriting_reads_as_committed(rig: FlashRig) -> None:
    t = rig.cluster.txn(async_commit=True, ttl_ms=300, after_prewrite=_abandon)
    t.update(TABLE, {"id": 4, "balance": 5})    # primary, first region
    t.update(TABLE, {"id": 44, "balance": 15})  # secondary, fifth region
    with pytest.raises(Abandoned):
        t.commit()
    assert {lk.start_ts for lk in rig.cluster.store.locks()} == {t.start_ts}  # no commit record anywhere
    try:
        with plan(rig.store, TABLE, rig.options()) as p:
            assert p.ts >= t.commit_ts  # every lock written: committed at the greatest min_commit_ts
            got = balances(p)
            assert (got[4], got[44], sum(got.values())) == (5, 15, 10 * ROWS)
            assert p.stats.txns_committed_for_us == 1
        assert not [lk for lk in rig.cluster.store.locks() if lk.start_ts == t.start_ts]
        with plan(rig.store, TABLE, rig.options(snapshot_ts=t.commit_ts - 1)) as p:
            assert (balances(p)[4], balances(p)[44]) == (10, 10)
    finally:
        _restore(rig, [4, 44])


def test_an_async_commit_transaction_whose_client_died_between_prewrites_is_rolled_back(rig: FlashRig) -> None:
    t = rig.cluster.txn(async_commit=True, ttl_ms=300, after_prewrite_batch=_abandon)
    t.update(TABLE, {"id": 6, "balance": 0})    # primary: prewritten
    t.update(TABLE, {"id": 46, "balance": 20})  # secondary in another region: never prewritten
    with pytest.raises(Abandoned):
        t.commit()
    assert [lk.key for lk in rig.cluster.store.locks()] == [record_key(rig.cluster.table_info("plan", "accounts"), 6)]
    with plan(rig.store, TABLE, rig.options()) as p:
        got = balances(p)
        assert (got[6], got[46], sum(got.values())) == (10, 10, 10 * ROWS)
        assert p.stats.txns_rolled_back == 1
    assert rig.cluster.store.locks() == []


def test_a_lock_whose_min_commit_ts_is_above_the_read_ts_is_read_past_without_waiting(raft_rig: FlashRig) -> None:
    """On the read-index path only: through a change-data feed the lock holds TiKV's resolved ts
    below its start ts, and a read at or above that start ts waits for the transaction to end
    (docs/reading.md, "Reading through pd://")."""
    rig = raft_rig
    t = rig.cluster.txn(async_commit=True, ttl_ms=60_000, after_prewrite=_abandon)
    t.update(TABLE, {"id": 5, "balance": 0})
    t.update(TABLE, {"id": 15, "balance": 20})
    with pytest.raises(Abandoned):
        t.commit()
    try:
        # at its start_ts the locks are at or below the read ts, but it commits above it: no wait
        # for a TTL of a minute (the 1 s lock wait would time out)
        with plan(rig.store, TABLE, rig.options(snapshot_ts=t.start_ts, lock_wait_timeout="1s")) as p:
            assert p.stats.locks_seen == 2
            assert (balances(p)[5], balances(p)[15]) == (10, 10)
    finally:
        rig.cluster.resolve_lock(t.start_ts, t.commit_ts)  # it is committed: finish it


def test_a_region_split_off_with_no_entries_yet_does_not_hold_the_learner_read_back(tmp_path: Path) -> None:
    """A region the store got from a split has applied nothing of its own yet (index 0 in the
    store), while upstream's read index of it is TiKV's first log index: with no resolved ts
    to cover it (no ticker here), the read must still see it as caught up. (The read-index
    path: a change-data feed always has resolved ts.)"""
    r = FlashRig(tmp_path, resolved_ts_interval=0, via="binlog")
    try:
        table = r.cluster.create_table("plan.fresh", [make_column("id", "BIGINT", not_null=True)],
                                       primary_key=["id"])
        r.start_writer(interval_s=0.05)
        with r.cluster.txn() as t:
            for i in range(10):
                t.insert("plan.fresh", {"id": i})
        r.cluster.split_at(record_key(table, 1_000))  # the new region holds no row and no entry
        r.wait_replicated("plan.fresh")
        with plan(r.store, "plan.fresh", r.options(region_wait_timeout="5s")) as p:
            assert p.stats.regions == 2
            assert rows_of(p).column("id").to_pylist() == list(range(10))
    finally:
        r.close()


def test_a_read_waiting_on_a_stopped_writer_says_once_what_it_waits_for(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A fresh read of a store whose writer stopped waits its region_wait_timeout for regions
    that never catch up: after about 2 s it says, in one warning, which table, which region is
    furthest behind and what to check; then times out naming the regions (issue 52, item 7)."""
    from pyspark_theflash.scan.errors import ScanError

    r = FlashRig(tmp_path)
    try:
        r.cluster.create_table("plan.wait", [make_column("id", "BIGINT", not_null=True)], primary_key=["id"])
        r.start_writer(interval_s=0.05)
        with r.cluster.txn() as t:
            t.insert("plan.wait", {"id": 1})
        r.wait_replicated("plan.wait")
        with plan(r.store, "plan.wait", r.options()) as p:  # caught up: the store holds the table's regions
            assert rows_of(p).column("id").to_pylist() == [1]
        r.stop_writer()
        with r.cluster.txn() as t:
            t.insert("plan.wait", {"id": 2})
        with caplog.at_level("WARNING", logger="pyspark_theflash.scan.learner"), pytest.raises(ScanError) as got:
            plan(r.store, "plan.wait", r.options(region_wait_timeout="4s"))
        notes = [rec.getMessage() for rec in caplog.records if rec.name == "pyspark_theflash.scan.learner"]
        assert len(notes) == 1, notes
        assert notes[0].startswith("reading plan.wait at ts ") and "region(s) to reach it in the store" in notes[0]
        assert "is the writer applying the binlog?" in notes[0] and "(region_wait_timeout)" in notes[0]
        assert "plan.wait" in str(got.value)
    finally:
        r.close()
