"""The capture tests' rig: the mini cluster's tables and versions, capture options, a capture
running on a thread, the binlog applied to a store and compared with the upstream at a ts.
tests/integration/test_capture*.py and bench/capture_rescan.py use it."""
from __future__ import annotations

import datetime
import decimal
import threading
import time
from pathlib import Path
from typing import Any

from pyspark_theflash.binlog import open_source
from pyspark_theflash.capture import Capture, CaptureOptions
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.store import Store
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.workloads import BankWorkload, Faults, OrdersWorkload
from pyspark_theflash.writer.loop import Writer
from pyspark_theflash.writer.options import WriterOptions


TABLES = ("bank.accounts", "shop.customers", "shop.orders", "shop.order_items")


def upstream_versions(cluster: MiniCluster, until_ts: int) -> set[tuple[bytes, int]]:
    """(raw key, commit ts) of every Put/Delete version of a record key in the mini cluster's
    write CF (it keeps them all without GC): what the binlog must give a replica."""
    with cluster.store.mu:
        return {(k, v.commit_ts) for k, versions in cluster.store._writes.items()
                if k[:1] == b"t" and k[9:11] == b"_r" for v in versions
                if v.write_type in ("P", "D") and v.commit_ts <= until_ts}


def options(cluster: MiniCluster, binlog: Path, **kw: Any) -> CaptureOptions:
    return CaptureOptions(**{"pd": cluster.pd_address, "tidb": f"http://{cluster.status_address}",
                             "binlog": str(binlog), "retry_backoff_s": 0.1, **kw})


class Running:
    """A Capture in a thread of this process."""

    def __init__(self, opts: CaptureOptions) -> None:
        self.capture = Capture(opts)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.capture.run()
        except BaseException as exc:  # reported by wait/stop
            self.error = exc

    def wait_caught_up(self, ts: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.capture.caught_up(ts):
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"capture did not resolve every region past {ts}"
            time.sleep(0.05)

    def stop(self) -> None:
        self.capture.stop()
        self.thread.join(30)
        assert self.error is None, self.error
        # capture's invariant held throughout: every key of the captured span was a current
        # registration's or a pending lookup's (a range in neither loses its rows)
        assert self.capture.unfollowed == [], f"ranges capture followed no region over: {self.capture.unfollowed}"


def apply(binlog: Path, store: Path) -> None:
    Writer(WriterOptions(binlog=f"file://{binlog}", store=str(store), flush_interval_s=0.0,
                         until_caught_up=True)).run()


def binlog_events(binlog: Path, expand: bool = True) -> list[binlog_pb2.Event]:
    """The binlog's events, each event of many regions as the single-region events of its runs
    (``expand``; binlog/region_runs.py) or as written."""
    from pyspark_theflash.binlog import region_runs

    events: list[binlog_pb2.Event] = []
    with open_source(str(binlog)) as source:
        while batch := source.read(10_000, 0.1):
            events.extend(pe.event for pe in batch)
    return list(region_runs.expand(events)) if expand else events


def _canonical(v: Any) -> str:
    if isinstance(v, datetime.datetime) and v.tzinfo is not None:
        v = v.astimezone(datetime.timezone.utc)  # ZoneInfo("UTC") and timezone.utc are one instant
    if isinstance(v, (int, decimal.Decimal)) and not isinstance(v, bool):
        return f"number {decimal.Decimal(v).normalize()}"  # BIGINT UNSIGNED reads as decimal(20,0)
    return repr(v)


def rows_of(rows: list[dict[str, Any]]) -> list[tuple[tuple[str, str], ...]]:
    return sorted(tuple(sorted((k, _canonical(v)) for k, v in r.items() if k != "_tidb_rowid")) for r in rows)


def assert_equal_at(cluster: MiniCluster, store: Path, tables: tuple[str, ...], ts: int) -> int:
    n = 0
    with Store.open(str(store), readonly=True) as s:
        for q in tables:
            want = rows_of(cluster.scan_table(q, ts))
            got = rows_of(s.scan_table(q, ts, schema="as_of").to_pylist())
            assert got == want, (f"{q} at {ts}: {len(got)} rows replicated, upstream has {len(want)}; "
                                 f"first difference: {_first_difference(got, want)}")
            n += len(want)
    return n


def _first_difference(got: list[Any], want: list[Any]) -> str:
    for g, w in zip(got, want):
        if g != w:
            return "; ".join(f"{a[0]}: {a[1][:60]} != {b[1][:60]}" for a, b in zip(g, w) if a != b) or f"{g} != {w}"
    return f"{len(got)} rows != {len(want)} rows"


def run_workloads(cluster: MiniCluster, faults: Faults | None = None, count: int = 120,
                  rate: float = 0.0) -> tuple[BankWorkload, OrdersWorkload]:
    bank = BankWorkload(cluster, accounts=25, initial=50, seed=1, count=count, threads=2, faults=faults, rate=rate)
    orders = OrdersWorkload(cluster, seed=2, count=count // 2, threads=2, faults=faults, rate=rate / 2)
    bank.setup()
    orders.setup()
    return bank, orders


def binlog_versions(events: list[binlog_pb2.Event]) -> tuple[set[tuple[bytes, int]], list[tuple[bytes, int]]]:
    """The versions (raw key, commit ts) the binlog leaves in a replica, applied as the writer
    applies them (a whole snapshot replaces its range's, an incremental one adds), and every
    version that reached the log a second time while the replica held it."""
    from pyspark_theflash.binlog.rows import iter_rows
    from pyspark_theflash.binlog.snapshot_batch import snapshot_columns
    from pyspark_theflash.codec import encode_region_key

    held: set[tuple[bytes, int]] = set()
    doubled: list[tuple[bytes, int]] = []
    for ev in events:
        kind = ev.WhichOneof("payload")
        if kind == "snapshot":
            snap = ev.snapshot
            if not snap.since_ts:
                lo, hi = bytes(snap.region.start_key), bytes(snap.region.end_key)

                def inside(key: bytes) -> bool:
                    pd = bytes(encode_region_key(key))
                    return lo <= pd and (not hi or pd < hi)

                held = {v for v in held if not inside(v[0])}
            versions = snapshot_columns(snap).versions  # either form of the binlog
            for v in zip(versions.keys.to_pylist(), versions.commit_ts.tolist()):
                if v in held:
                    doubled.append(v)
                held.add(v)
        elif kind == "entries":
            for row in iter_rows(ev.entries):
                if row.type in (binlog_pb2.Row.COMMIT, binlog_pb2.Row.COMMITTED):
                    v = (bytes(row.key), int(row.commit_ts))
                    if v in held:
                        doubled.append(v)
                    held.add(v)
    return held, doubled


def region_indexes_in_log_order(binlog: Path) -> dict[int, list[int]]:
    indexes: dict[int, list[int]] = {}
    for ev in binlog_events(binlog):
        if ev.region_id:
            indexes.setdefault(int(ev.region_id), []).append(int(ev.index))
    return indexes
