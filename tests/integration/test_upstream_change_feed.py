"""The mini cluster's TiKV change-data feed (``cdcpb.ChangeData``) as a client meets it on the
wire: batched resolved ts that stay fresh for a client slower than the store's ticks."""
from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import grpc

from polling import wait_for

from pyspark_theflash.proto import cdcpb_pb2, cdcpb_pb2_grpc, metapb_pb2
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.tidb import make_column, record_key

REGIONS = 40
TICK_S = 0.005


def test_a_client_slower_than_the_resolved_ts_ticks_meets_one_tick_of_them_not_a_backlog(tmp_path: Path) -> None:
    with MiniCluster(tmp_path / "up", tmp_path / "upstream-log", resolved_ts_interval=TICK_S,
                     gc_run_interval_s=None) as cluster:
        cluster.serve(stores=1)
        table = cluster.create_table("db.t", [make_column("id", "bigint")], primary_key=["id"])
        for h in range(1, REGIONS):
            cluster.split_at(record_key(table, h))
        regions = cluster.store.regions.all()
        assert len(regions) >= REGIONS

        requests: queue.Queue = queue.Queue()
        channel = grpc.insecure_channel(cluster.store_servers[0].address)
        # a plain EventFeed batches resolved ts with request id 0; EventFeedV2 with stream
        # multiplexing sends one message per request id: one per region here, the heavy case
        call = cdcpb_pb2_grpc.ChangeDataStub(channel).EventFeedV2(
            iter(requests.get, None), metadata=(("features", "stream-multiplexing"),))
        try:
            for n, r in enumerate(regions, start=1):
                requests.put(cdcpb_pb2.ChangeDataRequest(
                    header=cdcpb_pb2.Header(cluster_id=cluster.cluster_id), region_id=r.id, request_id=n,
                    region_epoch=metapb_pb2.RegionEpoch(conf_ver=r.conf_version, version=r.version),
                    start_key=r.start, end_key=r.end, register=cdcpb_pb2.ChangeDataRequest.Register()))
            responses = iter(call)
            resolved: dict[int, int] = {}
            while len(resolved) < len(regions):  # every registration initialised and resolved once
                resp = next(responses)
                if resp.HasField("resolved_ts"):
                    resolved.update({int(rid): int(resp.resolved_ts.ts) for rid in resp.resolved_ts.regions})

            # The client stops reading for 200 ticks; the store keeps committing and ticking.
            stop = threading.Event()

            def commit() -> None:
                h = REGIONS
                while not stop.is_set():
                    cluster.run_txn(lambda t, h=h: t.insert("db.t", {"id": h}))
                    h += 1

            writer = threading.Thread(target=commit, daemon=True)
            writer.start()
            # the store ticks on until its regions have resolved a second (200 ticks) past the pause
            target = cluster.tso.get_ts() + (1000 << 18)
            wait_for(lambda: min(r.resolved_ts for r in cluster.store.regions.all()) >= target, 30,
                     "the store's regions to resolve a second past the pause")
            stop.set()
            writer.join(10)
            (stream,) = cluster.change_feed._streams
            # the rows wait to be sent, every one; of the resolved ts, at most one tick's (one
            # message per region)
            waiting = list(stream.out.queue)
            ticks = [m for m in waiting if isinstance(m, cdcpb_pb2.ChangeDataEvent) and m.HasField("resolved_ts")]
            assert len(ticks) <= len(regions), f"{len(ticks)} resolved ts messages wait of {len(waiting)} in all"

            # reading on, every region goes on to a resolved ts taken after the pause (a
            # skipped tick starves none of them)
            now = cluster.tso.get_ts()
            behind = {r.id for r in regions}
            deadline = time.monotonic() + 60
            while behind and time.monotonic() < deadline:
                resp = next(responses)
                if resp.HasField("resolved_ts") and resp.resolved_ts.ts >= now:
                    behind -= set(resp.resolved_ts.regions)
            assert not behind, f"regions {sorted(behind)} never resolved past {now}"
        finally:
            requests.put(None)
            call.cancel()
            channel.close()
