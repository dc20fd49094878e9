"""Readers in other processes see only whole batches while the writer applies and compacts.

A bank: accounts with balances that only whole batches keep summing to the same total. Each
batch holds complete transfers — 2PC transactions across regions (prewrite and commit of
both accounts), 1PC transfers, and "moves" that delete an account and insert its balance under
a new handle — plus, now and then, a region split. The writer flushes after every batch and
compacts (or GCs up to the last commit) every few; reader processes (spawned, ``Store.open(readonly=True)``) scan at the
latest ts over and over and check that the total and the number of accounts never change.
"""
from __future__ import annotations

import json
import multiprocessing
import random
from pathlib import Path
from typing import Any

import pytest

from mvcc_model import DB, TABLE_ID, TABLE_NAME, handle_region_key, record_key, table_info
from pyspark_theflash.binlog.position import Position
from pyspark_theflash.proto import binlog_pb2
from polling import wait_for

Row = binlog_pb2.Row
ACCOUNTS = 24
OPENING_BALANCE = 1000
TOTAL = ACCOUNTS * OPENING_BALANCE
LATEST = (1 << 63) - 1
QUALIFIED = f"{DB}.{TABLE_NAME}"


class Bank:
    """Builds the event batches: balances live in column ``i``; ``k`` echoes the handle."""

    def __init__(self, seed: int) -> None:
        from pyspark_theflash.codec.row_v2 import encode_row_for_table
        from pyspark_theflash.schema import TableInfo

        self.encode = encode_row_for_table
        self.table = TableInfo.from_json(table_info(), db=DB)
        self.rng = random.Random(seed)
        self.ts = 1_700_000_000_000 << 18
        self.balances = {h: OPENING_BALANCE for h in range(ACCOUNTS)}
        self.next_handle = ACCOUNTS
        # region id -> [start handle or None, end handle or None, epoch version, index]
        self.regions: dict[int, list[Any]] = {1: [None, None, 1, 5]}
        self.next_region = 2

    def tso(self) -> int:
        self.ts += 1
        return self.ts

    def value(self, handle: int) -> bytes:
        return self.encode(self.table, {"k": handle, "i": self.balances[handle], "f": None, "s": "acct", "d": None})

    def region_of(self, handle: int) -> int:
        for rid, (lo, hi, _v, _i) in self.regions.items():
            if (lo is None or handle >= lo) and (hi is None or handle < hi):
                return rid
        raise AssertionError(handle)

    def region_proto(self, rid: int) -> binlog_pb2.Region:
        lo, hi, version, _ = self.regions[rid]
        return binlog_pb2.Region(
            id=rid, start_key=b"" if lo is None else handle_region_key(TABLE_ID, lo),
            end_key=b"" if hi is None else handle_region_key(TABLE_ID, hi),
            epoch=binlog_pb2.RegionEpoch(version=version, conf_version=1))

    def event(self, rid: int, **payload: Any) -> binlog_pb2.Event:
        self.regions[rid][3] += 1
        return binlog_pb2.Event(region_id=rid, index=self.regions[rid][3],
                                epoch=binlog_pb2.RegionEpoch(version=self.regions[rid][2], conf_version=1), **payload)

    def opening(self) -> list[binlog_pb2.Event]:
        first = self.event(1, snapshot=binlog_pb2.RegionSnapshot(region=self.region_proto(1)))
        start, commit = self.tso(), self.tso()
        rows = [Row(type=Row.COMMITTED, op=binlog_pb2.PUT, start_ts=start, commit_ts=commit,
                    key=record_key(TABLE_ID, h), value=self.value(h)) for h in sorted(self.balances)]
        return [first, self.event(1, entries=binlog_pb2.Entries(rows=rows))]

    def two_phase(self, changes: dict[int, bytes | None]) -> list[binlog_pb2.Event]:
        """One 2PC transaction: ``changes`` handle -> new value (None = delete), across regions."""
        start = self.tso()
        primary = record_key(TABLE_ID, min(changes))
        by_region: dict[int, list[int]] = {}
        for h in changes:
            by_region.setdefault(self.region_of(h), []).append(h)
        events = [self.event(rid, entries=binlog_pb2.Entries(rows=[
            Row(type=Row.PREWRITE, op=binlog_pb2.PUT if changes[h] is not None else binlog_pb2.DELETE,
                start_ts=start, key=record_key(TABLE_ID, h), value=changes[h] or b"", primary=primary, ttl=3000)
            for h in hs])) for rid, hs in by_region.items()]
        commit = self.tso()
        events += [self.event(rid, entries=binlog_pb2.Entries(rows=[
            Row(type=Row.COMMIT, start_ts=start, commit_ts=commit, key=record_key(TABLE_ID, h)) for h in hs]))
            for rid, hs in by_region.items()]
        return events

    def transfer(self) -> list[binlog_pb2.Event]:
        a, b = self.rng.sample(sorted(self.balances), 2)
        amount = self.rng.randrange(0, self.balances[a] + 1)
        self.balances[a] -= amount
        self.balances[b] += amount
        changes: dict[int, bytes | None] = {a: self.value(a), b: self.value(b)}
        if self.region_of(a) == self.region_of(b) and self.rng.random() < 0.4:
            start, commit = self.tso(), self.tso()  # 1PC
            return [self.event(self.region_of(a), entries=binlog_pb2.Entries(rows=[
                Row(type=Row.COMMITTED, op=binlog_pb2.PUT, start_ts=start, commit_ts=commit,
                    key=record_key(TABLE_ID, h), value=v) for h, v in changes.items()]))]
        return self.two_phase(changes)

    def move(self) -> list[binlog_pb2.Event]:
        """Close an account and open a new one with its balance, in one transaction."""
        old = self.rng.choice(sorted(self.balances))
        new = self.next_handle
        self.next_handle += 1
        self.balances[new] = self.balances.pop(old)
        return self.two_phase({old: None, new: self.value(new)})

    def split(self) -> list[binlog_pb2.Event]:
        rid = self.rng.choice(sorted(self.regions))
        lo, hi, version, _ = self.regions[rid]
        lo_h, hi_h = 0 if lo is None else lo, self.next_handle + 8 if hi is None else hi
        if hi_h - lo_h < 2:
            return []
        at = self.rng.randrange(lo_h + 1, hi_h)
        new = self.next_region
        self.next_region += 1
        self.regions[new] = [lo, at, version + 1, 5]
        self.regions[rid][0] = at
        self.regions[rid][2] = version + 1
        split = binlog_pb2.Split(regions=[self.region_proto(new), self.region_proto(rid)])
        return [self.event(rid, admin=binlog_pb2.Admin(split=split))]

    def batch(self) -> list[binlog_pb2.Event]:
        events: list[binlog_pb2.Event] = []
        for _ in range(self.rng.randrange(1, 5)):
            roll = self.rng.random()
            events += self.move() if roll < 0.15 else self.split() if roll < 0.25 else self.transfer()
        return events


def reader_main(store: str, out: str, stop: str) -> None:
    """Scan at the latest ts until the stop file appears; write what was seen to ``out``."""
    from pyspark_theflash.store import Store

    seen: dict[str, Any] = {"scans": 0, "bad": [], "versions": []}
    reader = Store.open(store, readonly=True)
    try:
        while True:
            stopping = Path(stop).exists()
            with reader.snapshot() as view:
                view_version = view.version
            rows = [r for b in reader.scan(QUALIFIED, LATEST, columns=["i"], hidden=("_tidb_rowid",))
                    for r in b.to_pylist()]
            total = sum(r["i"] for r in rows)
            seen["scans"] += 1
            seen["versions"].append(view_version)
            if total != TOTAL or len(rows) != ACCOUNTS:
                seen["bad"].append({"total": total, "accounts": len(rows), "version": view_version})
            if len(seen["bad"]) > 5:
                break
            if stopping:
                break
            Path(out + ".started").touch()
    finally:
        reader.close()
        Path(out).write_text(json.dumps(seen))



def run_bank(tmp_path: Path, batches: int, readers: int, seed: int) -> None:
    from pyspark_theflash.store import Store

    root = tmp_path / "store"
    bank = Bank(seed)
    writer = Store.open(str(root))
    writer.put_schema(DB, table_info())
    writer.write(bank.opening(), Position(0, 1))
    writer.flush()
    stop = tmp_path / "stop"
    outs = [tmp_path / f"reader{i}.json" for i in range(readers)]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=reader_main, args=(str(root), str(o), str(stop))) for o in outs]
    for p in procs:
        p.start()
    try:
        def started() -> bool:
            dead = [p.exitcode for p in procs if p.exitcode is not None]
            assert not dead, f"a reader process exited before its first scan: exit codes {dead}"
            return all(Path(str(o) + ".started").exists() for o in outs)

        wait_for(started, 60, "the readers' first scans")
        for n in range(batches):
            writer.write(bank.batch(), Position(0, n + 2))
            writer.flush()
            if n % 10 == 9:
                writer.gc(bank.ts)  # moves the safe point (readers read at the latest ts) and compacts
            elif n % 5 == 4:
                writer.compact(force=True)
            assert sum(bank.balances.values()) == TOTAL
    finally:
        stop.touch()
        for p in procs:
            p.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    with writer.snapshot() as view:
        final = view.version
    writer.close()
    for out in outs:
        seen = json.loads(out.read_text())
        assert seen["bad"] == [], f"a reader saw a partial batch: {seen['bad']}"
        assert seen["scans"] >= 2
        # the readers really ran while the writer worked: they saw several manifest versions
        assert len(set(seen["versions"])) > 1, seen["versions"][:10]
        assert max(seen["versions"]) <= final


def test_readers_in_other_processes_see_only_whole_batches(tmp_path: Path) -> None:
    run_bank(tmp_path, batches=60, readers=2, seed=3)


@pytest.mark.slow
def test_readers_see_only_whole_batches_over_a_long_run(tmp_path: Path) -> None:
    run_bank(tmp_path, batches=600, readers=3, seed=4)
