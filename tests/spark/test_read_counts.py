"""A read that needs no column still has its rows, on every path.

Spark prunes every column for ``count(*)``, ``DataFrame.count()`` and a ``count`` of a NOT NULL
column; the session then has no column and must still send one row per row (a snapshot read)
or per change (a change read). Differential: over one change range of a churned table (all
versions and net) and a snapshot read at its end, each path's ``count(*)``, ``count(col)``,
``count(_change_type)``, sums, min/max and distinct counts are compared with the same computed
from the rows that path collects, and the paths with one another: the jar (``format()`` and
SQL ``CHANGES FROM`` / ``VERSION AS OF``), the Python source, the jar's and the Python source's
streams (``foreachBatch``: each micro-batch counted and collected), Flight and HTTP (sessions of
no column, of one, of all). Then a change read's incomplete or contradictory options, refused
on each path naming the option, before anything is read."""
from __future__ import annotations

from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from churn import Churn, create_churn_table
from flash_rig import FlashRig, wait_for
from jvm_spark import JvmSpark, RemoteError
from pyspark_theflash.scan.change_stream import ChangeStream
from pyspark_theflash.scan.session import open_read_session, read_stream
from pyspark_theflash.service import serve
from service_client import FlightReader, HttpReader

pytestmark = pytest.mark.spark

TABLE = "rc.items"
CHANGE_COLUMNS = ["_change_type", "_commit_ts", "_commit_timestamp", "_tidb_rowid"]


class Served:
    def __init__(self, rig: FlashRig, http_url: str, flight_url: str, a: int, b: int) -> None:
        self.rig, self.http_url, self.flight_url, self.a, self.b = rig, http_url, flight_url, a, b

    def reads(self) -> dict[str, dict[str, Any]]:
        """name -> the read's options: the change range (a, b], its net form, the snapshot at b."""
        return {"changes": {"changes_from": self.a, "snapshot_ts": self.b},
                "net": {"changes_from": self.a, "snapshot_ts": self.b, "changes": "net"},
                "snapshot": {"snapshot_ts": self.b}}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A churned table with a closed history: its changes in (a, b], and nothing after b."""
    rig = FlashRig(tmp_path_factory.mktemp("read-counts"))
    try:
        create_churn_table(rig.cluster, TABLE, rows=200)
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated(TABLE)
        a = rig.cluster.get_ts()
        with Churn(rig, TABLE, rate=60.0, seed=38) as churn:
            wait_for(lambda: churn.commits > 50, 60, "the churn to commit 50 changes")  # not a fixed 3 s
        with rig.cluster.txn() as t:  # a NULL, so that count(name) differs from count(*)
            t.update(TABLE, {"id": 7, "name": None})
        b = rig.cluster.get_ts()
        wait_for(lambda: ChangeStream(rig.store, TABLE, {"upstream": rig.upstream}).resolved_ts() >= b, 60,
                 "the store to resolve past the last commit")
        with serve(rig.store, port=0) as running:
            yield Served(rig, running.http_url, running.flight_location, a, b)
    finally:
        rig.close()


# -- what is compared ------------------------------------------------------------------------
def _aggregates(df: Any, change: bool) -> dict[str, Any]:
    """The aggregates of a DataFrame, as Spark computes them (pruning what it does not need)."""
    from pyspark.sql import functions as F

    aggs = [F.count(F.lit(1)).alias("count_star"), F.count("id").alias("count_id"),
            F.count("name").alias("count_name"), F.sum("qty").alias("sum_qty"), F.sum("id").alias("sum_id"),
            F.min("id").alias("min_id"), F.max("qty").alias("max_qty"),
            F.countDistinct("id").alias("distinct_id")]
    if change:
        aggs += [F.count("_change_type").alias("count_change_type"),
                 F.sum(F.when(F.col("_change_type") == "delete", 1).otherwise(0)).alias("deletes")]
    out = {k: (int(v) if v is not None else None) for k, v in df.agg(*aggs).collect()[0].asDict().items()}
    out["df_count"] = df.count()
    out["select_count"] = df.select().count()
    return out


def _expected(t: pa.Table, change: bool) -> dict[str, Any]:
    """The same aggregates computed from collected rows."""
    def scalar(v: pa.Scalar) -> Any:
        return None if v.as_py() is None else int(v.as_py())

    out = {"count_star": t.num_rows, "count_id": pc.count(t["id"]).as_py(), "count_name": pc.count(t["name"]).as_py(),
           "sum_qty": scalar(pc.sum(t["qty"])), "sum_id": scalar(pc.sum(t["id"])), "min_id": scalar(pc.min(t["id"])),
           "max_qty": scalar(pc.max(t["qty"])), "distinct_id": len(pc.unique(t["id"])),
           "df_count": t.num_rows, "select_count": t.num_rows}
    if change:
        out["count_change_type"] = pc.count(t["_change_type"]).as_py()
        out["deletes"] = pc.sum(pc.equal(t["_change_type"], "delete")).as_py() or 0
    return out


def _change_keys(t: pa.Table, commit: str = "_commit_ts") -> list[tuple[Any, ...]]:
    return sorted(zip(t["_tidb_rowid"].to_pylist(), t[commit].to_pylist(), t["_change_type"].to_pylist(),
                      t["qty"].to_pylist()))


def _session_rows(served: Served, read: dict[str, Any], columns: list[str] | None = None) -> pa.Table:
    """The reference: a read session in this process, its streams' batches as they come."""
    with open_read_session(served.rig.store, TABLE, columns=columns,
                           options={"upstream": served.rig.upstream, **read}) as s:
        return pa.Table.from_batches([b for n in range(len(s.streams)) for b in read_stream(s, n)], schema=s.schema)


# -- functions run in Spark (the jar's worker, or this process's session) ---------------------
def spark_reads(spark: Any, options: dict[str, str], reads: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each read through format("theflash"): its rows, and its aggregates."""
    out = {}
    for name, read in reads.items():
        df = spark.read.format("theflash").options(**options, **{k: str(v) for k, v in read.items()}).load(TABLE)
        out[name] = (df.toArrow(), _aggregates(df, "changes_from" in read))
    return out


def jvm_sql_reads(spark: Any, server: str, a: int, b: int) -> dict[str, Any]:
    """SQL through the jar's catalog: CHANGES FROM (all and net) and VERSION AS OF."""
    spark.conf.set("theflash.server", server)
    out = {}
    for name, clause in (("changes", f"CHANGES FROM VERSION {a} EXCLUSIVE TO VERSION {b} INCLUSIVE"),
                         ("net", f"CHANGES FROM VERSION {a} EXCLUSIVE TO VERSION {b} INCLUSIVE "
                                 "WITH (deduplicationMode = 'netChanges')"),
                         ("snapshot", f"VERSION AS OF {b}")):
        change = name != "snapshot"
        rows = spark.sql(f"SELECT * FROM theflash.{TABLE} {clause}").toArrow()
        sql = spark.sql(f"SELECT count(*) AS count_star, count(id) AS count_id, count(name) AS count_name, "
                        f"sum(qty) AS sum_qty, sum(id) AS sum_id, min(id) AS min_id, max(qty) AS max_qty, "
                        f"count(DISTINCT id) AS distinct_id"
                        + (", count(_change_type) AS count_change_type, "
                           "sum(CASE WHEN _change_type = 'delete' THEN 1 ELSE 0 END) AS deletes" if change else "")
                        + f" FROM theflash.{TABLE} {clause}").collect()[0].asDict()
        aggregates = {k: (int(v) if v is not None else None) for k, v in sql.items()}
        aggregates["df_count"] = spark.sql(f"SELECT * FROM theflash.{TABLE} {clause}").count()
        aggregates["select_count"] = spark.sql(f"SELECT 1 FROM theflash.{TABLE} {clause}").count()
        out[name] = (rows, aggregates)
    return out


def stream_counts(spark: Any, options: dict[str, str], checkpoint: str) -> list[tuple[int, int, int, int]]:
    """A stream from ``starting_ts`` until every available offset is read, each micro-batch
    counted (``count()``, ``count(*)``, ``count(_change_type)``) and collected."""
    from pyspark.sql import functions as F

    seen: list[tuple[int, int, int, int]] = []

    def each(batch: Any, batch_id: int) -> None:
        agg = batch.agg(F.count(F.lit(1)), F.count("_change_type")).collect()[0]
        seen.append((batch.count(), int(agg[0]), int(agg[1]), len(batch.collect())))

    df = spark.readStream.format("theflash").options(**options).load(TABLE)
    query = df.writeStream.foreachBatch(each).option("checkpointLocation", checkpoint).start()
    try:
        query.processAllAvailable()
        if query.exception() is not None:
            raise RuntimeError(str(query.exception()))
    finally:
        query.stop()
    return seen


def refusals(spark: Any, options: dict[str, str], cases: list[dict[str, str]], stream: bool = False) -> list[str]:
    """The message each option set is refused with at load (or "accepted")."""
    out = []
    for case in cases:
        reader = spark.readStream if stream else spark.read
        try:
            df = reader.format("theflash").options(**options, **case).load(TABLE)
            df.schema  # noqa: B018 (the schema is what a load resolves)
            out.append("accepted")
        except Exception as exc:
            out.append(str(exc))
    return out


# -- tests -----------------------------------------------------------------------------------
def _assert_counts_match_rows(path: str, results: dict[str, Any], reference: dict[str, pa.Table],
                              commit: str = "_commit_ts") -> None:
    for name, (rows, aggregates) in results.items():
        change = name != "snapshot"
        assert aggregates == _expected(rows, change), f"{path}, {name}: aggregates vs. the rows it collected"
        assert rows.num_rows == reference[name].num_rows > 0, f"{path}, {name}: rows vs. a read session's"
        if change:
            assert _change_keys(rows, commit) == _change_keys(reference[name]), f"{path}, {name}: other changes"
        else:
            assert sorted(rows["id"].to_pylist()) == sorted(reference[name]["id"].to_pylist())


def test_every_spark_path_counts_a_change_read_and_a_snapshot_as_the_rows_it_collects(
        served: Served, jvm_spark: JvmSpark, spark: Any) -> None:
    reads = served.reads()
    reference = {name: _session_rows(served, read) for name, read in reads.items()}
    changes = reference["changes"]
    assert set(changes["_change_type"].to_pylist()) == {"insert", "update_preimage", "update_postimage", "delete"}

    jar = jvm_spark.call(spark_reads, {"server": served.http_url}, reads)
    _assert_counts_match_rows("jar format()", jar, reference)
    sql = jvm_spark.call(jvm_sql_reads, served.http_url, served.a, served.b)
    _assert_counts_match_rows("jar SQL", sql, reference, commit="_commit_version")
    python = spark_reads(spark, served.rig.options(), reads)
    _assert_counts_match_rows("Python source", python, reference)


# Its Python-source stream once hung in foreachBatch in a full run: py4j's callback server,
# started on first use by a process then holding over 1024 descriptors, had lost its accept
# thread to select() (issue 49; theflash_session now starts it with the session,
# spark/callback_server.py, and test_callback_server.py checks it).
def test_every_stream_counts_each_micro_batch_as_the_rows_it_collects(
        served: Served, jvm_spark: JvmSpark, spark: Any, tmp_path: Any) -> None:
    # from a: the rows at a as inserts, then every change of (a, b] (nothing commits after b)
    at_a = _session_rows(served, {"snapshot_ts": served.a}).num_rows
    want = at_a + _session_rows(served, served.reads()["changes"]).num_rows
    for path, seen in (
            ("jar stream", jvm_spark.call(stream_counts, {"server": served.http_url, "starting_ts": str(served.a)},
                                          str(tmp_path / "jar-checkpoint"))),
            ("Python stream", stream_counts(spark, served.rig.options(starting_ts=served.a),
                                            str(tmp_path / "py-checkpoint")))):
        assert seen, f"{path}: no micro-batch"
        for count, count_star, count_change_type, collected in seen:
            assert count == count_star == count_change_type == collected, f"{path}: a micro-batch's counts {seen}"
        assert sum(s[3] for s in seen) == want, f"{path}: {seen}"


@pytest.mark.parametrize("frontend", ["flight", "http"])
def test_a_service_session_of_no_column_has_a_row_per_change_and_per_row(served: Served, frontend: str) -> None:
    reader: Any = FlightReader(served.flight_url) if frontend == "flight" else HttpReader(served.http_url)
    try:
        for name, read in served.reads().items():
            change = name != "snapshot"
            request = {"table": TABLE, **read}
            full, session = reader.read(request)
            assert full.num_rows == _session_rows(served, read).num_rows > 0
            assert session["rows"] >= full.num_rows  # the estimate is an upper bound
            none, _ = reader.read({**request, "columns": []})
            assert none.schema.names == [] and none.num_rows == full.num_rows, f"{frontend}, {name}: columns []"
            one, _ = reader.read({**request, "columns": ["qty"]})
            assert one.schema.names == ["qty"] and one.num_rows == full.num_rows
            assert pc.sum(one["qty"]).as_py() == pc.sum(full["qty"]).as_py()
            assert pc.count(one["qty"]).as_py() == pc.count(full["qty"]).as_py()
            if change:
                kinds, _ = reader.read({**request, "columns": ["_change_type"]})
                assert kinds.schema.names == ["_change_type"]
                assert sorted(kinds["_change_type"].to_pylist()) == sorted(full["_change_type"].to_pylist())
                assert full.schema.names == ["id", "name", "qty", *CHANGE_COLUMNS]
            else:
                assert full.schema.names == ["id", "name", "qty"]
    finally:
        if frontend == "flight":
            reader.close()


# -- options ----------------------------------------------------------------------------------
def _refused_cases(a: int, b: int) -> list[tuple[dict[str, str], str]]:
    """(options, the option the refusal must name)."""
    return [({"changes_from": str(a)}, "snapshot_ts"),
            ({"changes": "net", "snapshot_ts": str(b)}, "changes_from"),
            ({"changes_from": str(a), "snapshot_ts": str(b), "starting_ts": "latest"}, "starting_ts"),
            ({"changes_from": str(a), "snapshot_ts": str(b), "max_rows_per_trigger": "10"}, "max_rows_per_trigger"),
            ({"changes_from": str(a), "snapshot_ts": str(b), "snapshot": "resolved"}, "snapshot=resolved"),
            ({"changes_from": str(a), "snapshot_ts": str(b), "max_staleness": "5s"}, "max_staleness"),
            ({"changes_from": str(a), "as_of": "2026-01-01 00:00:00"}, "as_of"),
            ({"changes_from": str(a), "timestampAsOf": "2026-01-01 00:00:00"}, "as_of"),
            ({"changes_from": str(a), "snapshot_ts": str(b), "hidden": "_tidb_commit_ts"}, "hidden"),
            ({"changes_from": str(b), "snapshot_ts": str(a)}, "changes_from"),
            ({"changes_from": str(a), "snapshot_ts": str(b), "changes": "sideways"}, "changes"),
            ({"changes_from": str(a), "theflash.snapshot_ts": str(b)}, "snapshot_ts")]


def _stream_refused_cases(a: int, b: int) -> list[tuple[dict[str, str], str]]:
    return [({"starting_ts": "latest", "changes_from": str(a)}, "changes_from"),
            ({"starting_ts": "latest", "snapshot_ts": str(b)}, "snapshot_ts"),
            ({"starting_ts": "latest", "changes": "net"}, "changes"),
            ({"starting_ts": "latest", "snapshot": "resolved"}, "snapshot")]


def test_a_change_reads_incomplete_or_contradictory_options_are_refused_naming_the_option(
        served: Served, jvm_spark: JvmSpark, spark: Any) -> None:
    a, b = served.a, served.b
    cases = _refused_cases(a, b)
    stream_cases = _stream_refused_cases(a, b)
    jar = jvm_spark.call(refusals, {"server": served.http_url}, [c for c, _ in cases])
    jar_stream = jvm_spark.call(refusals, {"server": served.http_url}, [c for c, _ in stream_cases], True)
    python = refusals(spark, served.rig.options(), [c for c, _ in cases])
    python_stream = refusals(spark, served.rig.options(), [c for c, _ in stream_cases], True)
    for path, messages, named in (("jar", jar, cases), ("Python source", python, cases),
                                  ("jar stream", jar_stream, stream_cases),
                                  ("Python stream", python_stream, stream_cases)):
        for (case, option), message in zip(named, messages):
            assert message != "accepted", f"{path} accepted {case}"
            assert option.split("=")[0] in message, f"{path}: {case} refused without naming {option}: {message}"
    # the service: the same rules for a read request's fields, a 400 before anything is planned
    http = HttpReader(served.http_url)
    for fields, option in (({"changes_from": a}, "snapshot_ts"), ({"changes": "net", "snapshot_ts": b}, "changes_from"),
                           ({"changes_from": a, "snapshot_ts": b, "snapshot": "resolved"}, "snapshot"),
                           ({"changes_from": a, "snapshot_ts": b, "max_staleness": "5s"}, "max_staleness"),
                           ({"changes_from": a, "as_of": "2026-01-01 00:00:00"}, "as_of")):
        status, body = http.json("POST", "/v1/read-sessions", {"table": TABLE, **fields})
        assert status == 400 and option in body["error"]["message"], (fields, status, body)
    # and what is complete still reads
    assert jvm_spark.call(refusals, {"server": served.http_url},
                          [{"changes_from": str(a), "versionAsOf": str(b)}]) == ["accepted"]


def test_the_jar_refuses_changes_from_without_snapshot_ts_rather_than_read_a_snapshots_columns(
        served: Served, jvm_spark: JvmSpark) -> None:
    """The issue's case: the jar took changes_from alone and read changes at a settled ts under
    the snapshot's columns (count() 0, collect() every change)."""
    with pytest.raises(RemoteError) as refused:
        jvm_spark.call(spark_reads, {"server": served.http_url}, {"alone": {"changes_from": served.a}})
    assert "snapshot_ts" in refused.value.message and "changes_from" in refused.value.message
