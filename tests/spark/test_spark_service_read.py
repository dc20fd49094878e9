"""The Python source with option ``server``: its reads are the service's read sessions (the
service holds their leases, executors read streams over HTTP), and they answer what a read of
the store's files answers at the same ts; a stream (``readStream``) through the service takes
its offsets and lease there. Without ``server``, the session's service (``THEFLASH_SERVER``)
stands in wherever the store is not visible: a stream planned on the store's files is read
through it by a process that does not see the store. (The cluster test,
tests/spark/test_spark_cluster.py, runs the same with executors on other 'hosts'.)"""
from __future__ import annotations

import json
import os
import pickle
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from change_reference import apply_changes, upstream_snapshot
from flash_rig import FlashRig, wait_for
from pyspark_theflash.latch import connect as connect_latch
from pyspark_theflash.scan.change_stream import ChangeStream, StreamOffset
from pyspark_theflash.service import serve
from test_spark_read import make_table

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashRig]:
    r = FlashRig(tmp_path_factory.mktemp("flash"))
    r.start_writer(interval_s=0.05)
    yield r
    r.close()


@pytest.fixture(scope="module")
def service(rig: FlashRig) -> Iterator[Any]:
    running = serve(any_store=True, port=0, token=secrets.token_urlsafe(16))
    yield running
    running.close()


def rows(df: Any) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in df.collect())


def test_a_read_through_the_service_equals_the_files_read_at_the_same_ts(spark: Any, rig: FlashRig,
                                                                         service: Any) -> None:
    make_table(rig, "svc.accounts", 40, regions=4)
    remote = (spark.read.format("theflash").option("server", service.http_url)
              .option("token", service.service.auth.token).option("store", rig.store))
    got = remote.load("svc.accounts")
    pinned = got.select("id", "balance", "owner")
    first = rows(pinned)
    assert [r[0] for r in first] == list(range(40)) and sum(r[1] for r in first) == sum(100 + i for i in range(40))
    # at one ts, the service's streams and the store's files give the same rows
    from pyspark_theflash.spark import service_read

    streams = service_read.open_session(service.http_url, {"store": rig.store, "table": "svc.accounts",
                                                           "token": service.service.auth.token}, ["id", "balance", "owner"])
    at = streams[0].ts
    by_service = rows(remote.option("snapshot_ts", str(at)).load("svc.accounts"))
    by_files = rows(spark.read.format("theflash").options(**rig.options(snapshot_ts=at)).load("svc.accounts"))
    assert by_service == by_files


def test_the_service_holds_the_lease_and_the_read_needs_the_token(spark: Any, rig: FlashRig, service: Any) -> None:
    make_table(rig, "svc.tokens", 10)
    from pyspark_theflash.spark.service_read import ServiceReadError

    before = len(service.service.sessions.sessions())
    df = spark.read.format("theflash").option("server", service.http_url).option("store", rig.store)
    with pytest.raises(Exception, match="401"):
        df.load("svc.tokens").collect()
    ok = df.option("token", service.service.auth.token).load("svc.tokens")
    assert len(ok.collect()) == 10
    assert len(service.service.sessions.sessions()) > before  # the session (and its lease) is the service's
    assert ServiceReadError  # the error type callers catch


def test_options_the_service_decides_are_refused_with_server(spark: Any, rig: FlashRig, service: Any) -> None:
    df = (spark.read.format("theflash").options(**rig.options()).option("server", service.http_url)
          .option("token", service.service.auth.token))
    with pytest.raises(Exception, match="upstream"):
        df.load("svc.accounts").collect()


def test_a_read_without_the_store_on_the_planner_takes_the_schema_from_the_service(
        spark: Any, rig: FlashRig, service: Any, tmp_path: Path) -> None:
    make_table(rig, "svc.schema", 3)
    one = serve(rig.store, port=0, token="t0ken")
    try:
        got = spark.read.format("theflash").option("server", one.http_url).option("token", "t0ken").load("svc.schema")
        assert [f.name for f in got.schema.fields] == ["id", "balance", "owner"]
        assert rows(got.select("id")) == [(0,), (1,), (2,)]
    finally:
        one.close()


def _resolved_past(rig: FlashRig, table: str, ts: int) -> bool:
    return ChangeStream(rig.store, table, {"upstream": rig.upstream}).resolved_ts() >= ts


def test_a_stream_through_the_service_where_the_store_is_not_visible_equals_the_upstream(
        spark: Any, rig: FlashRig, tmp_path: Path) -> None:
    table = "svc.stream"
    make_table(rig, table, 30, regions=3)
    start_ts = int(rig.cluster.get_ts())
    sink, checkpoint = str(tmp_path / "sink"), str(tmp_path / "checkpoint")
    # a service of one store and no store option: the planning worker has no path to look at
    one = serve(rig.store, port=0, token="str3am")
    try:
        def run() -> StreamOffset:
            df = (spark.readStream.format("theflash").option("server", one.http_url).option("token", "str3am")
                  .option("starting_ts", str(start_ts)).load(table))
            query = (df.writeStream.format("parquet").option("path", sink).option("checkpointLocation", checkpoint)
                     .trigger(processingTime="200 milliseconds").start())
            try:
                query.processAllAvailable()
                return StreamOffset.from_dict(json.loads(query.lastProgress["sources"][0]["endOffset"]))
            finally:
                query.stop()

        first = run()
        assert first.ts == start_ts
        rows = spark.read.parquet(sink).toArrow().to_pylist()
        assert {r["_change_type"] for r in rows} == {"insert"}
        assert {r["_tidb_rowid"]: {c: r[c] for c in ("id", "balance", "owner")} for r in rows} == \
            upstream_snapshot(rig.cluster, table, start_ts, start_ts)

        with rig.cluster.txn() as t:
            t.update(table, {"id": 3, "balance": 7, "owner": "owner-003"})
            t.delete(table, 4)
        with rig.cluster.txn() as t:
            t.insert(table, {"id": 100, "balance": 1, "owner": "new"})
            t.update(table, {"id": 3, "balance": 8, "owner": "owner-003"})
        commit = int(rig.cluster.get_ts())
        wait_for(lambda: _resolved_past(rig, table, commit), 60, "the store to resolve past the changes")
        end = run()
        assert end.ts >= commit
        rows = spark.read.parquet(sink).toArrow().to_pylist()
        changes = [(r["_tidb_rowid"], r["_commit_ts"], r["_change_type"], {c: r[c] for c in ("id", "balance", "owner")})
                   for r in rows]
        assert [k for _, _, k, _ in changes].count("update_postimage") == 2
        assert apply_changes({}, changes) == upstream_snapshot(rig.cluster, table, end.ts, end.ts)
        # the stream's lease is the service's, at the committed offset (each run of the query
        # holds its own: the first run's, at start_ts, expires after lease_ttl)
        held = [lease for lease in connect_latch(rig.store).leases()
                if lease.holder.startswith(f"theflash change stream {table} ")]
        assert sorted(int(lease.ts) for lease in held) == [start_ts, end.ts]
    finally:
        one.close()


# A process that does not see the store: the test's partitions, read in a mount namespace
# where a tmpfs hides the store's directory (as on another host). Prints what it read.
HIDDEN_READER = r"""
import json, pickle, sys
from pyspark_theflash.spark import service_read
from pyspark_theflash.spark.partitions import partition_batches
partitions = pickle.load(open(sys.argv[1], "rb"))
rows = [row for p in partitions for b in partition_batches(p) for row in b.to_pylist()]
print("RESULT=" + json.dumps({"sees_store": service_read.sees_store(partitions[0].stream.partition.store),
                              "rows": sorted([r["id"], r["balance"]] for r in rows)}))
"""


def _hidden_store_unavailable() -> str | None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "hiding the store from a reader needs a mount namespace: root and unshare (CI runs as root)"
    return None


def test_a_stream_planned_on_the_files_is_read_through_the_sessions_service_where_the_store_is_not_visible(
        rig: FlashRig, service: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pyspark_theflash.spark.datasource import TheFlashDataSource, partition_batches

    table = "svc.routed"
    make_table(rig, table, 40, regions=4)
    ts = int(rig.cluster.get_ts())
    monkeypatch.setenv("THEFLASH_SERVER", service.http_url)
    monkeypatch.setenv("THEFLASH_SERVER_TOKEN", service.service.auth.token)
    options = rig.options(snapshot_ts=ts, min_partitions=4, table=table)
    source = TheFlashDataSource(options)
    reader = source.reader(source.schema())
    partitions = reader.partitions()  # the planner sees the store: planned on its files
    assert len(partitions) >= 2 and all(p.route is not None for p in partitions)
    upstream = sorted([int(r["id"]), int(r["balance"])] for r in rig.cluster.read_table(table, ts).rows)
    sessions = len(service.service.sessions.sessions())

    here = sorted([r["id"], r["balance"]] for p in partitions for b in partition_batches(p) for r in b.to_pylist())
    assert here == upstream
    assert len(service.service.sessions.sessions()) == sessions  # this process sees the store: its files

    why = _hidden_store_unavailable()
    if why is not None:
        pytest.skip(why)
    pickled = tmp_path / "partitions.pickle"
    pickled.write_bytes(pickle.dumps(partitions))
    script = tmp_path / "hidden_reader.py"
    script.write_text(HIDDEN_READER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("THEFLASH_")}  # what an executor has
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           f"mount -t tmpfs tmpfs {rig.store} && exec {sys.executable} {script} {pickled}"],
                          capture_output=True, text=True, timeout=120, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT=")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    got = json.loads(lines[0][len("RESULT="):])
    assert got["sees_store"] is False
    assert got["rows"] == upstream
