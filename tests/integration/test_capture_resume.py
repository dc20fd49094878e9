"""A restarted `theflash capture` resumes each key range from what its binlog is proved to hold
(capture/resume.py: the resolved ts written after the range's snapshot) instead of copying the
tables' history again: the rules on events, then capture killed with SIGKILL and restarted
during a live workload, against the mini cluster on the wire."""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from capture_rig import Running, apply, assert_equal_at, binlog_events, binlog_versions, options, \
    region_indexes_in_log_order, upstream_versions

from pyspark_theflash.binlog import Position, open_source
from pyspark_theflash.capture.capture import _RECORD_SPAN
from pyspark_theflash.capture.coverage import inherit
from pyspark_theflash.capture.resume import ResumePoints
from pyspark_theflash.codec import encode_region_key
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream_client.pd_client import PDClient
from pyspark_theflash.upstream.tidb import make_column
from pyspark_theflash.upstream.workloads import BankWorkload, Faults


def k(raw: bytes) -> bytes:
    return bytes(encode_region_key(raw))


def region(rid: int, start: bytes, end: bytes, version: int = 1) -> binlog_pb2.Region:
    return binlog_pb2.Region(id=rid, start_key=start, end_key=end, epoch=binlog_pb2.RegionEpoch(version=version))


def snapshot(rid: int, start: bytes, end: bytes, since_ts: int = 0) -> binlog_pb2.Event:
    return binlog_pb2.Event(region_id=rid, index=1, snapshot=binlog_pb2.RegionSnapshot(
        region=region(rid, start, end), since_ts=since_ts))


def resolved(ts: int, *rids: int) -> binlog_pb2.Event:
    return binlog_pb2.Event(resolved=binlog_pb2.ResolvedTs(regions=list(rids), ts=ts))


def absorbed(*events: binlog_pb2.Event) -> ResumePoints:
    points = ResumePoints()
    for ev in events:
        points.absorb(ev)
    return points


# ---------------------------------------------------------------------- the rules


def test_a_resolved_ts_proves_its_regions_range_only_after_the_regions_snapshot() -> None:
    points = absorbed(resolved(50, 1), snapshot(1, k(b"a"), k(b"m")))
    assert points.floors() == []  # a whole snapshot: nothing proved until the next resolved ts
    points.absorb(resolved(100, 1, 2))  # region 2 has no snapshot in this binlog: nothing of it
    assert points.floors() == [(k(b"a"), k(b"m"), 100)]
    points.absorb(resolved(90, 1))  # never lower
    assert points.floors() == [(k(b"a"), k(b"m"), 100)]


def test_an_incremental_snapshot_proves_its_since_ts_and_takes_its_range_from_other_regions() -> None:
    points = absorbed(snapshot(1, k(b"a"), k(b"z")), resolved(100, 1),
                      snapshot(2, k(b"f"), k(b"m"), since_ts=80))
    assert points.floors() == [(k(b"a"), k(b"f"), 100), (k(b"f"), k(b"m"), 80), (k(b"m"), k(b"z"), 100)]
    points.absorb(resolved(200, 1, 2))  # region 1 was retired by the snapshot: only region 2 rises
    assert points.floors() == [(k(b"a"), k(b"f"), 100), (k(b"f"), k(b"m"), 200), (k(b"m"), k(b"z"), 100)]
    points.absorb(snapshot(3, k(b"c"), k(b"g")))  # whole: its range is proved again from its resolved ts
    assert points.floors() == [(k(b"a"), k(b"c"), 100), (k(b"g"), k(b"m"), 200), (k(b"m"), k(b"z"), 100)]


def test_a_split_or_merge_ends_the_registrations_it_names_keeping_what_they_proved() -> None:
    split = binlog_pb2.Event(region_id=1, index=2, admin=binlog_pb2.Admin(split=binlog_pb2.Split(
        regions=[region(1, k(b"a"), k(b"m"), 2), region(2, k(b"m"), k(b"z"), 2)])))
    points = absorbed(snapshot(1, k(b"a"), k(b"z")), resolved(100, 1), split, resolved(300, 1))
    assert points.floors() == [(k(b"a"), k(b"z"), 100)]  # a resolved ts of region 1 before its next snapshot proves nothing
    merge = binlog_pb2.Event(region_id=4, index=2, admin=binlog_pb2.Admin(merge=binlog_pb2.Merge(
        source=region(3, k(b"z"), b"", 1), target=region(4, k(b"y"), b"", 2))))
    points = absorbed(snapshot(3, k(b"z"), b""), resolved(100, 3), snapshot(4, k(b"t"), k(b"z")), resolved(150, 4),
                      merge, resolved(180, 3, 4))
    # the source ended at 100; the target's old registration speaks for its old range only
    assert points.floors() == [(k(b"t"), k(b"z"), 180), (k(b"z"), b"", 100)]


def test_regions_that_split_while_capture_was_down_resume_from_the_floors_over_their_ranges() -> None:
    points = absorbed(snapshot(1, k(b"a"), k(b"m")), snapshot(2, k(b"m"), b""), resolved(100, 1), resolved(120, 2))
    saved = ResumePoints.from_state(points.state())
    assert saved.floors() == points.floors() and saved.speaks_for(None)
    pieces = saved.coverages(gc_safe_point=90)
    assert len(pieces) == 1  # adjacent floors: one run
    known = inherit(pieces, k(b"g"), k(b"p"))  # a region PD made of both halves
    assert known is not None and known.least_floor() == 100 and known.floor(k(b"n")) == 120
    # a floor below the GC safe point proves nothing of what TiKV still holds above it
    assert inherit(saved.coverages(gc_safe_point=110), k(b"g"), k(b"p")) is None
    assert inherit(saved.coverages(gc_safe_point=110), k(b"n"), k(b"p")) is not None


def test_floors_kept_for_other_tables_or_by_an_older_state_file_prove_nothing() -> None:
    points = absorbed(snapshot(1, b"", b""), resolved(100, 1))
    assert not ResumePoints.from_state(points.state()).speaks_for(["db.t"])
    assert not ResumePoints.from_state(None).speaks_for(None)


# ---------------------------------------------------------------------- capture killed and restarted


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[MiniCluster]:
    c = MiniCluster(tmp_path / "up", tmp_path / "upstream-log", resolved_ts_interval=0.05, region_split_keys=150,
                    expired_lock_grace_s=0.5, gc_run_interval_s=None)
    c.serve(stores=2)
    yield c
    c.close()


def binlog_bytes(binlog: Path) -> int:
    return sum(p.stat().st_size for p in binlog.glob("*.binlog"))


class LogTail:
    """The events a capture process writes, read from outside as they reach its binlog."""

    def __init__(self, binlog: Path) -> None:
        self.binlog = binlog
        self.position: Position | None = None

    def read(self) -> list[binlog_pb2.Event]:
        if not any(self.binlog.glob("*.binlog")):
            return []
        out: list[binlog_pb2.Event] = []
        with open_source(str(self.binlog), self.position) as source:
            while batch := source.read(10_000, 0):
                out.extend(pe.event for pe in batch)
            self.position = source.position
        return out


def wait_resolved(tail: LogTail, pd: PDClient, proc: subprocess.Popen, ts: int, log: Path,
                  timeout_s: float = 60) -> list[binlog_pb2.Event]:
    """Wait until the binlog holds, for every region PD has over the tables' keys, a resolved
    ts at or above ``ts`` written after ``tail``'s position; the events read meanwhile."""
    seen: list[binlog_pb2.Event] = []
    resolved_at: dict[int, int] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        for ev in tail.read():
            seen.append(ev)
            if ev.WhichOneof("payload") == "resolved":
                for rid in ev.resolved.regions:
                    resolved_at[int(rid)] = max(resolved_at.get(int(rid), 0), int(ev.resolved.ts))
        if all(resolved_at.get(r.id, 0) >= ts for r in pd.scan_regions(*_RECORD_SPAN)):
            return seen
        assert proc.poll() is None, f"capture exited with {proc.returncode}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"capture did not resolve every region past {ts}"
        time.sleep(0.05)


def snapshot_bytes(events: list[binlog_pb2.Event]) -> tuple[int, int]:
    """The bytes of the whole and the incremental snapshots among ``events``."""
    whole = sum(ev.ByteSize() for ev in events if ev.WhichOneof("payload") == "snapshot" and not ev.snapshot.since_ts)
    return whole, sum(ev.ByteSize() for ev in events if ev.WhichOneof("payload") == "snapshot" and ev.snapshot.since_ts)


def kill_and_restart_capture(cluster: MiniCluster, tmp_path: Path, restarts: int) -> None:
    history = "t.history"
    cluster.create_table(history, [make_column("id", "BIGINT", not_null=True), make_column("v", "VARCHAR(400)")],
                         primary_key=["id"])
    for version in range(2):  # two versions of each row: the history a full copy carries
        for lo in range(0, 1500, 250):
            cluster.run_txn(lambda t, lo=lo, version=version: [
                (t.update if version else t.insert)(history, {"id": i, "v": f"{version}-{i}-" + "x" * 300})
                for i in range(lo, lo + 250)])
    bank = BankWorkload(cluster, accounts=40, initial=50, seed=4, count=None, threads=2, rate=40,
                        faults=Faults(rollback=0.05, dying=0.02, large=0.02, large_keys=8, split_merge=0.05,
                                      dying_ttl_ms=200))
    bank.setup()
    began = cluster.get_ts()
    binlog, store = tmp_path / "binlog", tmp_path / "store"
    theflash = [sys.executable, "-m", "pyspark_theflash"]
    capture = theflash + ["capture", "--pd", cluster.pd_address.removeprefix("pd://"),
                          "--tidb", f"http://{cluster.status_address}", "--binlog", str(binlog)]
    pd = PDClient(cluster.pd_address)
    tail = LogTail(binlog)
    rng = random.Random(11)
    bank.start()
    added: list[int] = []
    whole_after_first = 0
    try:
        for n in range(restarts + 1):
            before, ts = binlog_bytes(binlog), cluster.get_ts()
            log = tmp_path / f"capture-{n}.log"
            with log.open("w") as out:
                proc = subprocess.Popen(capture, stdout=out, stderr=subprocess.STDOUT)
            try:
                events = wait_resolved(tail, pd, proc, ts, log)
                caught_up = binlog_bytes(binlog) - before
                whole, incremental = snapshot_bytes(events)
                if n == 0:
                    first = caught_up
                else:
                    added.append(caught_up)
                    whole_after_first += whole
                print(f"run {n}: {caught_up} bytes until every region resolved past its start "
                      f"(snapshots {whole} whole, {incremental} incremental)")
                time.sleep(rng.uniform(0.2, 1.0))
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                if n % 3 == 1:  # regions split and merge while capture is down
                    for _ in range(4):
                        bank.split_or_merge(rng)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(10)
    finally:
        bank.stop()
        pd.close()
    assert bank.stats.errors == []
    final = cluster.get_ts()
    done = subprocess.run(capture + ["--until-ts", str(final)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    per_restart = sorted(added)
    print(f"first copy {first} bytes; per restart {per_restart} (median {per_restart[len(per_restart) // 2]})")
    # each restart writes what changed since the resolved ts it had reached, not the history again
    assert whole_after_first < first / 10, (whole_after_first, first)
    assert per_restart[len(per_restart) // 2] < first / 10 and per_restart[-1] < first / 3, (per_restart, first)
    # and the replica is the upstream's: every version once, at every ts since capture began
    for rid, seen in region_indexes_in_log_order(binlog).items():
        assert all(a < b for a, b in zip(seen, seen[1:])), f"region {rid}'s events are numbered {seen}"
    held, again = binlog_versions(binlog_events(binlog))
    # the versions written above a region's last resolved ts before a kill come again in the
    # restart's incremental scan (the store keeps one copy of a version)
    print(f"{len(again)} versions written again by restarts, of {len(held)}")
    upstream = upstream_versions(cluster, final)
    assert held == upstream, (f"{len(held - upstream)} versions the upstream lacks, "
                              f"{len(upstream - held)} versions the binlog lost")
    applied = subprocess.run(theflash + ["writer", "run", "--binlog", f"file://{binlog}", "--store", str(store),
                                         "--until-caught-up"], capture_output=True, text=True, timeout=120)
    assert applied.returncode == 0, applied.stderr[-2000:]
    stamps = [began] + sorted(rng.randrange(began, final) for _ in range(3)) + [final]
    for ts in stamps:
        assert assert_equal_at(cluster, store, (history, "bank.accounts"), ts) > 0


def test_a_capture_killed_and_restarted_during_a_live_workload_resumes_from_its_resolved_ts(
        cluster: MiniCluster, tmp_path: Path) -> None:
    """`theflash capture` killed with SIGKILL and restarted 10 times while a bank workload
    writes, splits and merges (and regions split and merge while it is down): each restart
    writes the changes since the resolved ts its binlog held, a small part of the first copy
    of the tables' history; the versions in the binlog are the upstream's, and the replica
    equals the upstream at every ts since capture began."""
    kill_and_restart_capture(cluster, tmp_path, restarts=10)


def test_a_range_whose_resolved_ts_gc_has_passed_is_copied_whole_again(cluster: MiniCluster, tmp_path: Path) -> None:
    """While capture is down its PD service safe point expires and GC collects past the resolved
    ts its binlog holds: rows deleted and versions replaced in between are gone from TiKV, so
    an incremental scan from there would leave deleted rows in the replica. The restarted
    capture copies such ranges whole, and the replica equals the upstream."""
    table = "t.collected"
    cluster.create_table(table, [make_column("id", "BIGINT", not_null=True), make_column("v", "INT")],
                         primary_key=["id"])
    cluster.run_txn(lambda t: [t.insert(table, {"id": i, "v": i}) for i in range(60)])
    binlog, store = tmp_path / "binlog", tmp_path / "store"
    first = Running(options(cluster, binlog, gc_ttl_s=1))
    first.wait_caught_up(cluster.get_ts())
    first.stop()
    written = len(binlog_events(binlog))
    cluster.run_txn(lambda t: [t.delete(table, i) for i in range(20)])
    cluster.run_txn(lambda t: [t.update(table, {"id": i, "v": -i}) for i in range(20, 40)])
    time.sleep(1.5)  # capture's service safe point expires
    run = cluster.run_gc(cluster.get_ts())
    assert run.versions_dropped >= 40, run
    final = cluster.get_ts()
    second = Running(options(cluster, binlog))
    second.wait_caught_up(final)
    second.stop()
    restarted = binlog_events(binlog)[written:]
    assert any(ev.WhichOneof("payload") == "snapshot" and not ev.snapshot.since_ts for ev in restarted)
    apply(binlog, store)
    assert_equal_at(cluster, store, (table,), final)
