"""Region snapshots in columns (binlog format 2, ``RegionSnapshot.batch``): capture builds the
same snapshot from the feed's columns as the per-row path builds from its messages, and the
store applied either form holds the same rows, versions and locks. Old binlogs (format 1)
are read; a newer format is refused with what to do."""
from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from pyspark_theflash.binlog import BinlogVersionError
from pyspark_theflash.binlog.rows import MalformedRowBatchError, pack_columns
from pyspark_theflash.binlog.segment import HEADER_BYTES, MAGIC, READ_VERSIONS, check_header
from pyspark_theflash.binlog.snapshot_batch import snapshot_columns
from pyspark_theflash.capture.captured_tables import record_table_id
from pyspark_theflash.capture.feed_columns import decode_change_data, scan_events
from pyspark_theflash.capture.region_feed import RegionFeed
from pyspark_theflash.codec.keys import index_prefix
from pyspark_theflash.proto import binlog_pb2, cdcpb_pb2
from pyspark_theflash.store import Store
import feed_reference
from store_events import DB, codes_table, commit, common_key, event, items_table, key, region, row

Ev = cdcpb_pb2.Event
T, C = items_table(), codes_table()


def is_record(k: bytes) -> bool:
    return record_table_id(k) is not None


def value_of(k: bytes, ts: int) -> bytes:
    if k.startswith(key(T, 0)[:9]):
        h = int.from_bytes(k[-8:], "big") ^ (1 << 63)
        return row(T, id=h, name=f"n{ts}")
    return row(C, code=f"c{ts % 7}", qty=ts)


def initial_scan(rng: random.Random) -> tuple[list[list[Ev.Row]], list[tuple[bytes, int, int]]]:
    """A registration's events up to and after INITIALIZED, as TiKV sends them: the scan's
    versions in key order (newest first per key: Puts, Deletes, a Lock record) and its open
    locks (PREWRITE), live rows of the same time interleaved (2PC pairs, a COMMIT before its
    PREWRITE, rollbacks, 1PC writes, versions the scan gives too), index keys, then
    INITIALIZED and live rows. Returns the events and the locks left open (key, start, op)."""
    keys = sorted({key(T, rng.randrange(60)) for _ in range(25)} | {common_key(C, f"k{rng.randrange(40)}")
                                                                      for _ in range(15)})
    ts = 1000
    scan: list[Ev.Row] = []
    for k in keys:
        versions = []
        for _ in range(rng.randint(1, 4)):  # history: several versions of a key
            ts += 2
            versions.append(ts)
        for c in reversed(versions):
            op = rng.choice([Ev.Row.PUT, Ev.Row.PUT, Ev.Row.PUT, Ev.Row.DELETE, Ev.Row.UNKNOWN])
            scan.append(Ev.Row(type=Ev.COMMITTED, op_type=op, start_ts=c - 1, commit_ts=c, key=k,
                               value=value_of(k, c) if op == Ev.Row.PUT else b""))
        if rng.random() < 0.2:  # an open lock found by the scan
            ts += 2
            op = rng.choice([Ev.Row.PUT, Ev.Row.DELETE])
            scan.append(Ev.Row(type=Ev.PREWRITE, op_type=op, start_ts=ts, key=k,
                               value=value_of(k, ts) if op == Ev.Row.PUT else b""))
    index_key = index_prefix(T.id, 1) + b"\x01idx"
    scan.insert(rng.randrange(len(scan) + 1), Ev.Row(type=Ev.COMMITTED, op_type=Ev.Row.PUT, start_ts=5, commit_ts=6,
                                                     key=index_key, value=b"0"))
    live: list[Ev.Row] = []
    opened: list[tuple[bytes, int, int]] = []
    for _ in range(rng.randint(0, 12)):
        ts += 2
        k = rng.choice(keys)
        roll = rng.random()
        op = rng.choice([Ev.Row.PUT, Ev.Row.DELETE])
        pw = Ev.Row(type=Ev.PREWRITE, op_type=op, start_ts=ts, key=k, value=value_of(k, ts) if op == Ev.Row.PUT else b"")
        cm = Ev.Row(type=Ev.COMMIT, op_type=op, start_ts=ts, commit_ts=ts + 1, key=k)
        if roll < 0.3:  # prewrite, commit; the scan may give the version too
            live += [pw, cm]
            if rng.random() < 0.5:
                scan.append(Ev.Row(type=Ev.COMMITTED, op_type=op, start_ts=ts, commit_ts=ts + 1, key=k, value=pw.value))
        elif roll < 0.45:  # the COMMIT comes first, its PREWRITE later
            live += [cm, pw]
        elif roll < 0.6:
            live += [pw, Ev.Row(type=Ev.ROLLBACK, start_ts=ts, key=k)]
        elif roll < 0.8:  # a 1PC write the scan gives too (out of key order)
            row1pc = Ev.Row(type=Ev.COMMITTED, op_type=op, start_ts=ts, commit_ts=ts + 1, key=k, value=pw.value)
            live.append(row1pc)
            if rng.random() < 0.5:
                scan.append(row1pc)
        else:
            live.append(pw)
            opened.append((k, ts, op))
    rows = list(scan)
    for r in live:  # interleaved with the scan
        rows.insert(rng.randrange(len(rows) + 1), r)
    rows.append(Ev.Row(type=Ev.INITIALIZED))
    ts += 2
    k = rng.choice(keys)
    rows.append(Ev.Row(type=Ev.COMMITTED, op_type=Ev.Row.PUT, start_ts=ts, commit_ts=ts + 1, key=k,
                       value=value_of(k, ts)))
    events, at = [], 0
    while at < len(rows):
        n = rng.randint(1, 12)
        events.append(rows[at:at + n])
        at += n
    return events, opened


def per_row_snapshot(events: list[list[Ev.Row]]) -> tuple[RegionFeed, binlog_pb2.RegionSnapshot, int]:
    feed = RegionFeed(1, b"", b"", 1, 1, 1, 1)
    for rows in events:
        if feed.initialized:
            break
        _, initialized = feed_reference.take(feed, rows, is_record)
        if initialized:
            cts = feed.max_commit_ts()
            return feed, feed_reference.snapshot(feed), cts
    raise AssertionError("no INITIALIZED")


def columnar_snapshot(events: list[list[Ev.Row]]) -> tuple[RegionFeed, binlog_pb2.RegionSnapshot, int]:
    feed = RegionFeed(1, b"", b"", 1, 1, 1, 1)
    msg = decode_change_data(cdcpb_pb2.ChangeDataEvent(
        events=[Ev(region_id=1, request_id=1, entries=Ev.Entries(entries=rows)) for rows in events]).SerializeToString())
    scan = scan_events(msg)  # as capture takes a message's events (Capture._on_each_event)
    for i, (lo, hi) in enumerate(msg.events[:, 4:6].tolist()):
        after = feed.take_initial_event(msg.rows, scan, i, lo, hi)
        if after is not None:
            cts = feed.max_commit_ts()
            cols = feed.snapshot_columns()
            return feed, binlog_pb2.RegionSnapshot(region=feed.region_proto(), batch=cols.pack()), cts
    raise AssertionError("no INITIALIZED")


def contents(snap: binlog_pb2.RegionSnapshot) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    c = snapshot_columns(snap)
    v, lk = c.versions, c.locks
    versions = sorted(zip(v.keys.to_pylist(), v.commit_ts.tolist(), v.ops.tolist(), v.start_ts.tolist(),
                          v.values.to_pylist()))
    locks = sorted(zip(lk.keys.to_pylist(), lk.start_ts.tolist(), lk.ops.tolist(), lk.values.to_pylist()))
    return versions, locks


def open_store(path: Path) -> Store:
    s = Store.open(path)
    s.put_schema(DB, T.to_json())
    s.put_schema(DB, C.to_json())
    return s


def store_state(s: Store, stamps: list[int]) -> list[Any]:
    out: list[Any] = []
    for ts in stamps:
        for table in ("shop.items", "shop.codes"):
            t = s.scan_table(table, ts, hidden=["_tidb_rowid", "_tidb_commit_ts"])
            out.append(sorted(map(repr, t.to_pylist())))
    with s.snapshot() as view:
        out.append(sorted((bytes(lk.key), int(lk.start_ts), int(lk.op)) for lk in view.locks()))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_the_columnar_snapshot_equals_the_per_row_one_and_the_store_applies_both_alike(
        seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    events, opened = initial_scan(rng)
    feed_a, old, cts_a = per_row_snapshot(events)
    feed_b, new, cts_b = columnar_snapshot(events)
    assert len(old.writes) and not old.HasField("batch") and new.HasField("batch") and not len(new.writes)
    assert contents(old) == contents(new)
    assert cts_a == cts_b and feed_a._open == feed_b._open  # the locks live rows will commit

    # Both stores hold rows of an earlier life of the range, which a whole snapshot replaces;
    # after it, the open locks commit and a COMMIT of a version the snapshot holds is an orphan.
    before = [event(1, 1, [binlog_pb2.Row(type=binlog_pb2.Row.COMMITTED, op=binlog_pb2.PUT, start_ts=10, commit_ts=11,
                                          key=key(T, h), value=row(T, id=h, name="old")) for h in range(0, 80, 3)])]
    later = [event(1, 3, [commit(k, s, s + 100_000) for k, s, _ in opened])]
    versions, _ = contents(new)
    if versions:
        k, c, _, s, _ = versions[-1]
        later.append(event(1, 4, [commit(k, s, c)]))
    reg = region(1)
    states = []
    for name, snap in (("old", old), ("new", new)):
        snap.region.CopyFrom(reg)
        s = open_store(tmp_path / name)
        try:
            s.write(before, (0, 1))
            s.write([binlog_pb2.Event(region_id=1, index=2, epoch=reg.epoch, snapshot=snap)] + later, (0, 2))
            s.flush()
            states.append(store_state(s, [11, 1050, cts_a, 10**9]))
        finally:
            s.close()
    assert states[0] == states[1]
    assert any(states[0][:-1])


def copy_events(rng: random.Random, dup: str) -> list[list[Ev.Row]]:
    """An initial copy as TiKV's scan sends it: events of COMMITTED Puts and Deletes only (what
    capture keeps as it comes), keys ascending, a key's versions newest first; ``dup``: "none",
    a key of several versions ("history"), or a 1PC write the scan gives too, in an event after
    the scan's ("twice")."""
    keys = sorted({key(T, rng.randrange(500)) for _ in range(120)})
    rows, ts = [], 1000
    for k in keys:
        ts += 2
        commits = [ts]
        if dup == "history" and rng.random() < 0.3:
            ts += 2
            commits = [ts, ts - 2]
        for c in commits:
            op = Ev.Row.DELETE if rng.random() < 0.1 else Ev.Row.PUT
            rows.append(Ev.Row(type=Ev.COMMITTED, op_type=op, start_ts=c - 1, commit_ts=c, key=k,
                               value=value_of(k, c) if op == Ev.Row.PUT else b""))
    events, at = [], 0
    while at < len(rows):
        n = rng.randint(1, 40)
        events.append(rows[at:at + n])
        at += n
    if dup == "twice":
        events.append([rows[len(rows) // 2]])  # a live 1PC write of a version the scan gave
    events.append([Ev.Row(type=Ev.INITIALIZED)])
    return events


@pytest.mark.parametrize("dup", ["none", "history", "twice"])
@pytest.mark.parametrize("seed", range(4))
def test_an_initial_copy_of_plain_versions_gives_the_per_row_snapshot(seed: int, dup: str) -> None:
    events = copy_events(random.Random(seed), dup)
    _, old, cts_a = per_row_snapshot(events)
    _, new, cts_b = columnar_snapshot(events)
    assert contents(old) == contents(new) and cts_a == cts_b
    versions, locks = contents(new)
    assert not locks and len(versions) == sum(map(len, events)) - 1 - (dup == "twice")


def test_an_incremental_snapshot_in_columns_adds_versions_and_deletes_nothing(tmp_path: Path) -> None:
    s = open_store(tmp_path / "store")
    try:
        reg = region(1)
        s.write([event(1, 1, [binlog_pb2.Row(type=binlog_pb2.Row.COMMITTED, op=binlog_pb2.PUT, start_ts=10,
                                             commit_ts=11, key=key(T, 1), value=row(T, id=1, name="kept"))])])
        batch = pack_columns(types=binlog_pb2.Row.COMMITTED, ops=binlog_pb2.PUT, start_ts=[20], commit_ts=[21],
                             keys=[key(T, 2)], values=[row(T, id=2, name="added")])
        s.write([binlog_pb2.Event(region_id=1, index=2, epoch=reg.epoch, snapshot=binlog_pb2.RegionSnapshot(
            region=reg, batch=batch, since_ts=15))])
        s.flush()
        t = s.scan_table("shop.items", 100)
        assert sorted(t.column("name").to_pylist()) == ["added", "kept"]
    finally:
        s.close()


def test_a_snapshot_with_both_forms_or_a_row_not_a_version_or_lock_is_refused() -> None:
    batch = pack_columns(types=binlog_pb2.Row.COMMITTED, ops=binlog_pb2.PUT, start_ts=[1], commit_ts=[2],
                         keys=[key(T, 1)], values=[b"v"])
    both = binlog_pb2.RegionSnapshot(batch=batch, writes=[binlog_pb2.SnapshotWrite(key=key(T, 2))])
    with pytest.raises(MalformedRowBatchError, match="one form"):
        snapshot_columns(both, "region 1 snapshot at index 2")
    commits = pack_columns(types=binlog_pb2.Row.COMMIT, ops=0, start_ts=[1], commit_ts=[2], keys=[key(T, 1)])
    with pytest.raises(MalformedRowBatchError, match="COMMITTED .* and PREWRITE"):
        snapshot_columns(binlog_pb2.RegionSnapshot(batch=commits), "region 1 snapshot at index 2")


def _header(version: int, number: int = 1) -> bytes:
    body = struct.pack("<8sIQ", MAGIC, version, number)
    return body + struct.pack("<I", zlib.crc32(body))


def test_segments_of_format_1_are_read_and_a_newer_format_is_refused_saying_to_upgrade(tmp_path: Path) -> None:
    assert len(_header(1)) == HEADER_BYTES
    check_header(tmp_path / "000000000001.binlog", _header(1), 1)  # snapshots as records: still read
    check_header(tmp_path / "000000000001.binlog", _header(2), 1)
    check_header(tmp_path / "000000000001.binlog", _header(3), 1)  # events of many regions (RegionRuns)
    newer = max(READ_VERSIONS) + 1
    with pytest.raises(BinlogVersionError, match=f"format version {newer}.*upgrade TheFlash"):
        check_header(tmp_path / "000000000001.binlog", _header(newer), 1)
