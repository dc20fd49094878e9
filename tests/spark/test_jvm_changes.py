"""TiDB's changes through the connector jar: a batch change read (``changes_from``), SQL
``CHANGES FROM VERSION a [EXCLUSIVE] TO VERSION b`` through ``TheFlashCatalog.loadChangelog``,
and ``spark.readStream.format("theflash")`` as a ``MicroBatchStream`` whose checkpointed query,
stopped and restarted several times while transactions commit and the writer restarts, writes
every change to a Parquet sink exactly once."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pytest

from change_reference import apply_changes, changes_as_tuples, upstream_changes, upstream_snapshot
from churn import Churn, churn_rig
from flash_rig import FlashRig, wait_for
from jvm_spark import JvmSpark
from pyspark_theflash.scan.change_stream import ChangeStream, StreamOffset
from pyspark_theflash.service import serve

pytestmark = pytest.mark.spark

TABLE = "jc.items"
COLUMNS = ["id", "name", "qty"]
KIND_ORDER = {"delete": 0, "update_preimage": 1, "update_postimage": 2, "insert": 3}


def _key(change: tuple[Any, int, str, dict[str, Any]]) -> tuple[Any, ...]:
    return (change[1], KIND_ORDER[change[2]], change[0])


class Served:
    def __init__(self, rig: FlashRig, http_url: str) -> None:
        self.rig, self.http_url = rig, http_url


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with churn_rig(tmp_path_factory.mktemp("jvm-changes"), TABLE) as rig, serve(rig.store, port=0) as running:
        yield Served(rig, running.http_url)


def _resolved_past(rig: FlashRig, ts: int) -> bool:
    return ChangeStream(rig.store, TABLE, {"upstream": rig.upstream}).resolved_ts() >= ts


# -- functions run in the Spark worker with the jar (tests/support/jvm_spark.py) ---------------------
def jvm_changes(spark: Any, server: str, from_ts: int, to_ts: int, net: bool) -> pa.Table:
    return (spark.read.format("theflash").option("server", server).option("snapshot_ts", str(to_ts))
            .option("changes_from", str(from_ts)).option("changes", "net" if net else "all").load(TABLE).toArrow())


def jvm_sql_changes(spark: Any, server: str, statements: list[str]) -> list[pa.Table]:
    spark.conf.set("theflash.server", server)
    return [spark.sql(s).toArrow() for s in statements]


def jvm_stream_rounds(spark: Any, server: str, sink: str, checkpoint: str, seconds: float, final: bool) -> Any:
    """One run of the streaming query on the checkpoint: ``seconds`` long, or (``final``) until
    every available offset is processed; returns the last progress' end offset and metrics."""
    df = (spark.readStream.format("theflash").option("server", server).option("starting_ts", "latest")
          .option("max_rows_per_trigger", "40").option("lease_ttl", "60s").load(TABLE))
    query = (df.writeStream.format("parquet").option("path", sink).option("checkpointLocation", checkpoint)
             .trigger(processingTime="300 milliseconds").start())
    try:
        if final:
            query.processAllAvailable()
        else:  # until two batches with rows are done, then a little more: stopped mid-batch
            deadline = time.monotonic() + 240
            while (query.exception() is None and time.monotonic() < deadline
                   and len([p for p in query.recentProgress if p["numInputRows"]]) < 2):
                time.sleep(0.1)
            time.sleep(seconds)
        if query.exception() is not None:
            raise RuntimeError(str(query.exception()))
        progress = query.lastProgress
        return None if progress is None else (progress["sources"][0]["endOffset"], progress["sources"][0]["metrics"])
    finally:
        query.stop()


def jvm_read_sink(spark: Any, sink: str) -> pa.Table:
    return spark.read.option("mergeSchema", "true").parquet(sink).toArrow()  # files of restarts may add columns


# -- tests -----------------------------------------------------------------------------------
def _commits(rig: FlashRig) -> tuple[int, int]:
    c = rig.cluster
    t0 = c.get_ts()
    with c.txn() as t:
        t.insert(TABLE, {"id": 1000, "name": "a", "qty": 1})
    with c.txn() as t:
        t.update(TABLE, {"id": 1000, "qty": 2})
        t.update(TABLE, {"id": 3, "qty": 33})
    with c.txn() as t:
        t.delete(TABLE, 4)
    t1 = c.get_ts()
    wait_for(lambda: _resolved_past(rig, t1), 60, "the store to resolve the commits")
    return t0, t1


def test_a_batch_change_read_and_sql_changes_equal_the_upstream_history(jvm_spark: JvmSpark, served: Served) -> None:
    rig = served.rig
    t0, t1 = _commits(rig)
    want = sorted(upstream_changes(rig.cluster, TABLE, t0, t1), key=_key)
    assert sorted(k for _, _, k, _ in want) == ["delete", "insert", "update_postimage", "update_postimage",
                                                "update_preimage", "update_preimage"]
    got = jvm_spark.call(jvm_changes, served.http_url, t0, t1, False)
    assert got.column_names == [*COLUMNS, "_change_type", "_commit_ts", "_commit_timestamp", "_tidb_rowid"]
    assert sorted(changes_as_tuples(got, COLUMNS), key=_key) == want
    net = jvm_spark.call(jvm_changes, served.http_url, t0, t1, True)
    assert sorted(changes_as_tuples(net, COLUMNS), key=_key) == sorted(
        upstream_changes(rig.cluster, TABLE, t0, t1, net=True), key=_key)

    first = want[0][1]  # the insert's commit ts: an inclusive start takes it, an exclusive one does not
    inclusive, exclusive, net_sql = jvm_spark.call(jvm_sql_changes, served.http_url, [
        f"SELECT * FROM theflash.{TABLE} CHANGES FROM VERSION {first} TO VERSION {t1}",
        f"SELECT * FROM theflash.{TABLE} CHANGES FROM VERSION {first} EXCLUSIVE TO VERSION {t1}",
        f"SELECT * FROM theflash.{TABLE} CHANGES FROM VERSION {t0} TO VERSION {t1} WITH (deduplicationMode = 'netChanges')",
    ])
    assert "_commit_version" in inclusive.column_names and "_commit_timestamp" in inclusive.column_names

    def as_changes(t: pa.Table) -> list[tuple[Any, ...]]:
        return sorted(((r["_tidb_rowid"], r["_commit_version"], r["_change_type"], {c: r[c] for c in COLUMNS})
                       for r in t.to_pylist()), key=_key)

    assert as_changes(inclusive) == want
    assert as_changes(exclusive) == [c for c in want if c[1] > first]
    assert [c[2] for c in as_changes(net_sql)] == [c[2] for c in sorted(
        upstream_changes(rig.cluster, TABLE, t0, t1, net=True), key=_key)]


def test_a_checkpointed_jar_stream_restarted_several_times_writes_each_change_once(
        jvm_spark: JvmSpark, served: Served, tmp_path: Path) -> None:
    rig = served.rig
    sink, checkpoint = str(tmp_path / "sink"), str(tmp_path / "checkpoint")
    with Churn(rig, TABLE, seed=9) as churn:
        for round_ in range(3):
            jvm_spark.call(jvm_stream_rounds, served.http_url, sink, checkpoint, 0.2, False)
            if round_ == 1:
                rig.stop_writer()
                time.sleep(0.5)
                rig.start_writer(interval_s=0.05)
        assert churn.commits > 100
    last_commit = rig.cluster.get_ts()
    wait_for(lambda: _resolved_past(rig, last_commit), 60, "the store to resolve past the last commit")
    end_json, metrics = jvm_spark.call(jvm_stream_rounds, served.http_url, sink, checkpoint, 0, True)
    end = StreamOffset.from_dict(json.loads(end_json))
    assert end.ts >= last_commit
    assert int(metrics["lagMs"]) >= 0 and int(metrics["offsetTs"]) == end.ts

    rows = jvm_spark.call(jvm_read_sink, sink).to_pylist()  # Spark reads the batches its sink log committed
    keys = [(r["_tidb_rowid"], r["_commit_ts"], r["_change_type"]) for r in rows]
    assert len(keys) == len(set(keys)), "a change is in the sink twice"
    changes = [(r["_tidb_rowid"], r["_commit_ts"], r["_change_type"], {c: r[c] for c in COLUMNS}) for r in rows]
    assert apply_changes({}, changes) == upstream_snapshot(rig.cluster, TABLE, end.ts, end.ts)


_RUNNING: dict[str, Any] = {}  # queries left running between calls (the worker process keeps them)


def jvm_start_stream(spark: Any, server: str, table: str, sink: str, checkpoint: str) -> None:
    """Start the checkpointed query and leave it running once it processed what is there."""
    df = spark.readStream.format("theflash").option("server", server).option("starting_ts", "latest").load(table)
    query = (df.writeStream.format("parquet").option("path", sink).option("checkpointLocation", checkpoint)
             .trigger(processingTime="200 milliseconds").start())
    query.processAllAvailable()
    _RUNNING[checkpoint] = query


def jvm_end_stream(spark: Any, checkpoint: str, wait_s: float) -> str | None:
    """Wait up to ``wait_s`` for the running query to fail, or stop it then: the message of the
    exception that ended it, or None."""
    query = _RUNNING.pop(checkpoint)
    try:
        query.awaitTermination(wait_s)
    except Exception as exc:  # the StreamingQueryException of the failed batch
        return str(exc)
    finally:
        query.stop()
    return None


def test_a_jar_stream_across_an_added_column_asks_for_a_restart_and_the_restart_writes_the_column(
        jvm_spark: JvmSpark, served: Served, tmp_path: Path) -> None:
    """A running query's schema is fixed: the first batch under a schema with a column it lacks
    fails it, naming the column; restarted on the checkpoint it writes the column's values."""
    from pyspark_theflash.upstream.tidb import make_column

    rig, c, table = served.rig, served.rig.cluster, "jc.evolving"
    c.create_table(table, [make_column("id", "BIGINT", not_null=True), make_column("v", "INT")], primary_key=["id"])
    with c.txn() as t:
        t.insert(table, {"id": 1, "v": 1})
    rig.wait_replicated(table)
    sink, checkpoint = str(tmp_path / "sink"), str(tmp_path / "checkpoint")
    jvm_spark.call(jvm_start_stream, served.http_url, table, sink, checkpoint)  # the snapshot, then running
    with c.txn() as t:
        t.insert(table, {"id": 2, "v": 2})
    c.add_column(table, make_column("w", "INT"), default=9)
    with c.txn() as t:
        t.insert(table, {"id": 3, "v": 3, "w": 30})
    failed = jvm_spark.call(jvm_end_stream, checkpoint, 60)
    assert failed is not None and "column(s) w since ts" in failed and "restart the query" in failed, failed
    done = c.get_ts()
    wait_for(lambda: ChangeStream(rig.store, table, {"upstream": rig.upstream}).resolved_ts() >= done, 60,
             "the store to resolve the insert after the DDL")
    jvm_spark.call(jvm_start_stream, served.http_url, table, sink, checkpoint)  # restarted: the columns now
    assert jvm_spark.call(jvm_end_stream, checkpoint, 0.5) is None
    rows = sorted((r["id"], r.get("w"), r["_change_type"]) for r in jvm_spark.call(jvm_read_sink, sink).to_pylist())
    assert rows == [(1, None, "insert"), (2, None, "insert"), (3, 30, "insert")]
