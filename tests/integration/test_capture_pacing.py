"""Registrations reach a store at the pace its initial scans finish (--scan-limit): watched on
the wire, never more than the limit are in flight per store (requested, no INITIALIZED or error
back yet), through a first registration of every region and a store restart that ends every
registration of that store at once; every region still initialises and the replica equals the
upstream."""
from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pytest

from capture_rig import Running, apply, assert_equal_at, options
from polling import wait_for

from pyspark_theflash.capture import feed_columns, store_stream
from pyspark_theflash.capture.registration_pacer import RegistrationPacer
from pyspark_theflash.capture.region_feed import RegionFeed
from pyspark_theflash.capture.region_table import RegionTable
from pyspark_theflash.proto import cdcpb_pb2
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.tidb import make_column

TABLE = "t.paced"
ROWS = 240  # 4 rows a region: 60 regions over two stores
LIMIT = 3


class WireWatch:
    """Per store, the registrations requested on the wire and not yet answered by INITIALIZED or
    an error, read from the messages' own bytes (not from capture's decoder or its table)."""

    def __init__(self) -> None:
        self.mu = threading.Lock()
        self.open: dict[int, set[tuple[int, int]]] = {}  # store -> (region, request id)
        self.most: Counter[int] = Counter()  # store -> the most in flight at once
        self.requested: Counter[int] = Counter()

    def sent(self, store_id: int, req: cdcpb_pb2.ChangeDataRequest) -> None:
        if req.WhichOneof("request") != "register":
            return
        with self.mu:
            flying = self.open.setdefault(store_id, set())
            flying.add((req.region_id, req.request_id))
            self.requested[store_id] += 1
            self.most[store_id] = max(self.most[store_id], len(flying))

    def received(self, store_id: int, raw: bytes) -> None:
        msg = cdcpb_pb2.ChangeDataEvent.FromString(raw)
        with self.mu:
            flying = self.open.setdefault(store_id, set())
            for ev in msg.events:
                done = ev.HasField("error") or any(r.type == cdcpb_pb2.Event.INITIALIZED for r in ev.entries.entries)
                if done:
                    flying.discard((ev.region_id, ev.request_id))

    def store_down(self, store_id: int) -> None:
        with self.mu:
            self.open.pop(store_id, None)  # its stream broke: every registration on it ended


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch) -> WireWatch:
    w = WireWatch()
    send, decode, run = store_stream.StoreStream.send, feed_columns.decode_change_data, store_stream.StoreStream._run

    def watched_send(self: store_stream.StoreStream, request: cdcpb_pb2.ChangeDataRequest) -> None:
        w.sent(self.store_id, request)
        send(self, request)

    def watched_run(self: store_stream.StoreStream) -> None:
        run(self)
        w.store_down(self.store_id)

    def watched_decode(raw: bytes) -> Any:
        name = threading.current_thread().name  # the stream's thread: capture-store-<id>
        w.received(int(name.rsplit("-", 1)[1]), raw)
        return decode(raw)

    monkeypatch.setattr(store_stream.StoreStream, "send", watched_send)
    monkeypatch.setattr(store_stream.StoreStream, "_run", watched_run)
    monkeypatch.setattr(feed_columns, "decode_change_data", watched_decode)
    return w


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[MiniCluster]:
    c = MiniCluster(tmp_path / "up", tmp_path / "upstream-log", resolved_ts_interval=0.1, region_split_keys=4,
                    expired_lock_grace_s=0.5, gc_run_interval_s=None)
    c.serve(stores=2)
    yield c
    c.close()


def test_registrations_in_flight_never_pass_the_limit_through_a_start_and_a_store_restart(
        cluster: MiniCluster, watch: WireWatch, tmp_path: Path) -> None:
    cluster.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("v", "BIGINT")],
                         primary_key=["id"])
    cluster.bulk_insert(TABLE, pa.table({"id": pa.array(range(ROWS), pa.int64()), "v": pa.array([0] * ROWS, pa.int64())}),
                        txn_rows=40)
    assert len(cluster.regions()) >= 50
    running = Running(options(cluster, tmp_path / "binlog", retry_backoff_s=0.05, scan_limit=LIMIT))
    try:
        first = cluster.get_ts()
        running.wait_caught_up(first, timeout_s=120)
        on_store_2 = {f.id for f in running.capture.feeds.values() if f.store_id == 2}
        assert len(on_store_2) > LIMIT, "too few regions led by store 2 to pace"
        requested_before = watch.requested[2]
        cluster.store_servers[1].stop()  # every registration on store 2 ends at once
        wait_for(lambda: not any(f.store_id == 2 and f.initialized for f in running.capture.feeds.values()),
                 30, "capture to see store 2's registrations end")
        cluster.run_txn(lambda t: t.update(TABLE, {"id": 7, "v": 7}), one_pc=False)
        cluster.store_servers[1].start()
        second = cluster.get_ts()
        running.wait_caught_up(second, timeout_s=120)
        assert watch.requested[2] >= requested_before + len(on_store_2) - 1  # registered again, paced
        status = running.capture._take_status(0.0)
        assert status["registrations_waiting"] == 0 and status["initialised"] == status["regions"]
    finally:
        running.stop()
    # paced on both stores: the limit was reached and never passed
    assert set(watch.most) == {1, 2} and all(most == LIMIT for most in watch.most.values()), watch.most
    apply(tmp_path / "binlog", tmp_path / "store")
    assert assert_equal_at(cluster, tmp_path / "store", (TABLE,), first) == ROWS
    assert assert_equal_at(cluster, tmp_path / "store", (TABLE,), second) == ROWS


def test_the_pacer_sends_in_order_within_the_room_each_store_has_and_passes_over_ended_registrations() -> None:
    table, pacer = RegionTable(), RegistrationPacer(limit=2)
    feeds = [RegionFeed(10 + i, bytes([i]), bytes([i + 1]), version=1, conf_ver=1, store_id=1 + i % 2, gen=i + 1)
             for i in range(8)]
    for f in feeds:
        table.add(f)
        pacer.add(f)
    ended = feeds[2]  # ended while it waited: never sent
    table.remove(ended)

    def current(f: RegionFeed) -> bool:
        return table.by_id.get(f.id) is f

    def send() -> list[int]:
        out = []
        for f in pacer.due(table, current):
            table.mark_sent(f)
            out.append(f.id)
        return out

    assert send() == [10, 14, 11, 13]  # store 1: 10, (12 ended), 14; store 2: 11, 13
    assert send() == [] and len(pacer) == 3
    feeds[0].initialized = True  # store 1 has room for one more
    assert send() == [16] and table.in_flight_by_store() == {1: 2, 2: 2}
    table.remove(feeds[1])  # a registration of store 2 ended (an error): room for one
    assert send() == [15]
    pacer.forget_store(2)  # its stream broke: what waited on it is not sent
    feeds[4].initialized = feeds[6].initialized = True
    assert send() == [] and len(pacer) == 0
    with pytest.raises(ValueError, match="at least 1"):
        RegistrationPacer(limit=0)
