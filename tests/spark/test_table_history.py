"""A table's history and metadata (issue 41): ``theflash store history``, the service's
``GET /v1/tables/{db.t}/{kind}`` and the catalog's metadata tables ``theflash.db.t.history``
(``.schemas``, ``.regions``, ``.parts``) answer the readable ts range, the schema versions with
their ts and DDL, the regions with their resolved ts, and the parts, of a store a bank workload
built with a column added, regions split and a compaction; and the connector's scan node reports
its read session's figures as Spark metrics, and its streams' (the rows deletion vectors dropped,
the rows from the fresh tail) as task metrics Spark sums."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pytest

from flash_rig import FlashRig, wait_for
from jvm_spark import JvmSession, JvmSpark, RemoteError
from pyspark_theflash.cli import main
from pyspark_theflash.service import serve
from pyspark_theflash.store.cli import store_status
from pyspark_theflash.upstream.tidb import make_column, record_key
from pyspark_theflash.upstream.workloads import BankWorkload

TABLE = "bank.accounts"
# A table compacted into a stable part of LEDGER_ROWS rows, then changed in a delta part: its
# read drops the stable versions of the deleted and updated rows (the deletion vector) and takes
# the updated and inserted ones from the delta (the fresh tail)
LEDGER = "bank.ledger"
LEDGER_ROWS = 200
DELETED, UPDATED, INSERTED = range(0, 5), range(10, 20), range(1000, 1007)


class Built:
    def __init__(self, rig: FlashRig, http_url: str, workload: BankWorkload) -> None:
        self.rig, self.http_url, self.workload = rig, http_url, workload


def _history(store: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "pyspark_theflash", "store", "history", store, TABLE, "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)[TABLE]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """Transfers, ALTER TABLE ADD COLUMN, two splits, a compaction; the writer runs again after it."""
    rig = FlashRig(tmp_path_factory.mktemp("history"))
    workload = BankWorkload(rig.cluster, accounts=40, initial=1000, threads=1, seed=41)
    try:
        workload.setup()
        rig.cluster.create_table(LEDGER, [make_column("id", "BIGINT", not_null=True), make_column("v", "BIGINT")],
                                 primary_key=["id"])
        rig.cluster.bulk_insert(LEDGER, pa.table({"id": pa.array(range(LEDGER_ROWS), pa.int64()),
                                                  "v": pa.array(range(LEDGER_ROWS), pa.int64())}))
        loaded = rig.cluster.get_ts()
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated(TABLE)
        workload.start()
        try:
            wait_for(lambda: workload.stats.committed > 10, 60, "the transfers to start")
            rig.cluster.add_column(TABLE, make_column("note", "VARCHAR(20)"))
            info = rig.cluster.table_info("bank", "accounts")
            for handle in (12, 27):
                rig.cluster.split_at(record_key(info, handle))
            committed = workload.stats.committed
            wait_for(lambda: workload.stats.committed > committed + 10, 60, "transfers after the DDL and splits")
        finally:
            workload.stop()
        wait_for(lambda: len(_history(rig.store)["regions"]) >= 3 and len(_history(rig.store)["schemas"]) >= 2, 60,
                 "the splits and the DDL in the store")
        assert rig.read_at(rig.store, LEDGER, loaded).num_rows == LEDGER_ROWS  # in the store, to be compacted
        rig.stop_writer()
        assert main(["store", "compact", rig.store]) == 0
        rig.start_writer(interval_s=0.05, compact_interval_s=3600)  # the ledger's changes stay in a delta
        with rig.cluster.txn() as t:
            for h in DELETED:
                t.delete(LEDGER, h)
            for h in UPDATED:
                t.update(LEDGER, {"id": h, "v": -h})
            for h in INSERTED:
                t.insert(LEDGER, {"id": h, "v": h})
        changed = rig.cluster.get_ts()
        assert rig.read_at(rig.store, LEDGER, changed).num_rows == LEDGER_ROWS - len(DELETED) + len(INSERTED)
        with serve(rig.store, port=0) as running:
            yield Built(rig, running.http_url, workload)
    finally:
        rig.close()


def test_store_history_answers_the_readable_range_schema_versions_regions_and_parts(built: Built) -> None:
    meta = _history(built.rig.store)
    status = store_status(Path(built.rig.store))
    (h,) = meta["history"]
    # the readable range: from the GC safe point (or the table's creation) to the least resolved ts of its regions
    assert h["gc_safe_point"] == status["gc_safe_point"]
    assert h["readable_from"] == max(h["gc_safe_point"], h["created_ts"]) > 0
    assert h["readable_to"] == h["resolved_ts"] == min(r["resolved_ts"] for r in meta["regions"])
    assert h["readable_to"] > h["readable_from"] and h["gaps"] is None
    # the schema versions: CREATE TABLE, then the ADD COLUMN at a later ts
    schemas = meta["schemas"]
    assert schemas[0]["change"] == "CREATE TABLE"
    added = [s for s in schemas if "ADD COLUMN `note` VARCHAR(20)" in s["change"]]
    assert len(added) == 1 and added[0]["current"] and added[0]["commit_ts"] > schemas[0]["commit_ts"]
    assert "`note` VARCHAR(20)" in added[0]["ddl"] and "`note`" not in schemas[0]["ddl"]
    assert added[0]["schema_version"] == h["schema_version"]
    # the regions over the table: the two splits made three, covering it end to end
    regions = meta["regions"]
    assert len(regions) >= 3 and regions[0]["range"].startswith("[-inf, ") and regions[-1]["range"].endswith(", +inf)")
    ranges = [r["range"] for r in regions]
    assert any(r.endswith(", 12)") for r in ranges) and any(r.startswith("[27, ") for r in ranges), ranges
    live = {r["region_id"] for r in status["regions"] if r["state"] == "normal"}
    assert {r["region_id"] for r in regions} <= live and all(r["lag_ms"] is not None for r in regions)
    # the parts: the compaction's stable part(s), then what the writer flushed since; as status counts them
    parts = meta["parts"]
    (table,) = [t for t in status["tables"] if f"{t['db']}.{t['name']}" == TABLE]
    assert any(p["kind"] == "stable" for p in parts)
    assert sum(p["rows"] for p in parts) == table["rows"] and sum(p["bytes"] for p in parts) == table["bytes"]
    assert sum(p["delete_marks"] for p in parts) == table["delete_marks"]
    assert all(p["min_commit_ts"] <= p["max_commit_ts"] for p in parts)


def test_store_history_prints_every_table_for_people(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["store", "history", built.rig.store]) == 0
    out = capsys.readouterr().out
    assert f"table {TABLE} (id " in out and "readable ts range [" in out
    assert "ADD COLUMN `note` VARCHAR(20)" in out and "regions (" in out and " stable " in out


def test_the_service_answers_each_metadata_table_as_the_cli_does(built: Built) -> None:
    meta = _history(built.rig.store)
    for kind in ("schemas", "parts"):
        with urllib.request.urlopen(f"{built.http_url}/v1/tables/{TABLE}/{kind}") as r:
            got = json.load(r)
        assert got["table"] == TABLE and got["kind"] == kind
        assert [c["name"] for c in got["columns"]] == list(got["rows"][0]) if got["rows"] else True
        if kind == "schemas":
            assert got["rows"] == meta["schemas"]
        else:  # the writer flushes meanwhile: the compaction's stable parts are still there
            stable = [p for p in meta["parts"] if p["kind"] == "stable"]
            assert [p for p in got["rows"] if p["part_id"] in {s["part_id"] for s in stable}] == stable
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{built.http_url}/v1/tables/bank.nope/history")
    assert err.value.code == 404 and b"unknown_table" in err.value.read()


# -- run in the Spark worker with the jar (tests/support/jvm_spark.py) -----------------------------------
def jvm_metadata(spark: Any, server: str) -> dict[str, Any]:
    spark.conf.set("spark.sql.catalog.theflash.server", server)
    out = {kind: [r.asDict() for r in spark.sql(f"SELECT * FROM theflash.{TABLE}.{kind}").collect()]
           for kind in ("history", "schemas", "regions", "parts")}
    out["table_form"] = spark.table(f"theflash.{TABLE}.schemas").count()
    h = out["history"][0]
    out["read_oldest"] = spark.sql(f"SELECT count(*) FROM theflash.{TABLE} VERSION AS OF {h['readable_from']}").collect()[0][0]
    out["read_newest"] = spark.sql(f"SELECT sum(balance) FROM theflash.{TABLE} VERSION AS OF {h['readable_to']}").collect()[0][0]
    return out


def jvm_scan_metrics(spark: Any, server: str) -> dict[str, Any]:
    spark.conf.set("spark.sql.catalog.theflash.server", server)
    df = spark.sql(f"SELECT id, balance FROM theflash.{TABLE} WHERE balance >= 0")
    rows = len(df.collect())
    node = df._jdf.queryExecution().executedPlan()
    while "BatchScanExec" not in node.getClass().getSimpleName():
        node = node.child() if node.children().size() == 1 else node.executedPlan()
    metrics = node.metrics()
    names = ("snapshot_ts", "regions", "resolved_wait_ms", "locks_resolved", "parts", "part_bytes", "numOutputRows")
    out = {n: int(metrics.apply(n).value()) for n in names}
    out["rows"] = rows
    return out


def jvm_stream_metrics(spark: Any, server: str) -> dict[str, Any]:
    """The ledger read through the catalog: its rows, and its scan node's metrics (QueryExecution's)."""
    spark.conf.set("spark.sql.catalog.theflash.server", server)
    df = spark.sql(f"SELECT id, v FROM theflash.{LEDGER}")
    rows = sorted(tuple(r) for r in df.collect())
    node = df._jdf.queryExecution().executedPlan()
    while "BatchScanExec" not in node.getClass().getSimpleName():
        node = node.child() if node.children().size() == 1 else node.executedPlan()
    metrics = node.metrics()
    names = ("deletion_vector_rows", "fresh_tail_rows", "numOutputRows", "parts")
    return {"rows": rows, **{n: int(metrics.apply(n).value()) for n in names}}


@pytest.fixture(scope="module")
def jvm(built: Built, jvm_spark: JvmSpark) -> Iterator[JvmSession]:
    """A session of its own in the suite's JVM with the jar: the tests point its ``theflash`` catalog at
    this module's service (``spark.sql.catalog.theflash.server``), which a catalog reads once, when a
    session first uses it."""
    session = jvm_spark.session()
    try:
        yield session
    finally:
        session.close()


@pytest.mark.spark
def test_catalog_metadata_tables_answer_as_the_store_does(built: Built, jvm: JvmSession) -> None:
    got = jvm.call(jvm_metadata, built.http_url)
    meta = _history(built.rig.store)
    assert got["schemas"] == meta["schemas"] and got["table_form"] == len(meta["schemas"])
    (h,) = got["history"]
    assert h["table"] == TABLE and h["readable_from"] == meta["history"][0]["readable_from"]
    assert h["readable_to"] <= meta["history"][0]["readable_to"]  # the writer runs on: it only grows
    stable = [p for p in meta["parts"] if p["kind"] == "stable"]
    assert [p for p in got["parts"] if p["kind"] == "stable"] == stable
    assert {r["region_id"] for r in got["regions"]} == {r["region_id"] for r in meta["regions"]}
    # the range is readable at both ends: the rows the upstream had at the oldest ts (its CREATE TABLE: none
    # yet), the money conserved at the newest
    assert got["read_oldest"] == len(built.rig.cluster.scan_table(TABLE, ts=h["readable_from"]))
    assert got["read_newest"] == built.workload.total


@pytest.mark.spark
def test_catalog_refuses_an_unknown_table_metadata(built: Built, jvm: JvmSession) -> None:
    with pytest.raises(RemoteError) as err:
        jvm.call(_missing_metadata, built.http_url)
    assert "TABLE_OR_VIEW_NOT_FOUND" in err.value.message or "cannot be found" in err.value.message


def _missing_metadata(spark: Any, server: str) -> None:
    spark.conf.set("spark.sql.catalog.theflash.server", server)
    spark.sql("SELECT * FROM theflash.bank.nope.history").collect()


@pytest.mark.spark
def test_the_scan_node_reports_its_read_sessions_figures_as_spark_metrics(built: Built, jvm: JvmSession) -> None:
    got = jvm.call(jvm_scan_metrics, built.http_url)
    meta = _history(built.rig.store)
    assert got["rows"] == got["numOutputRows"] == 40
    assert got["snapshot_ts"] >= meta["history"][0]["readable_from"]
    assert got["regions"] == len(meta["regions"])  # the splits' regions, each read
    assert got["parts"] >= 1 and got["part_bytes"] > 0
    assert got["resolved_wait_ms"] >= 0 and got["locks_resolved"] >= 0


@pytest.mark.spark
def test_the_scan_node_sums_its_streams_deletion_vector_rows_and_fresh_tail_rows(built: Built, jvm: JvmSession) -> None:
    got = jvm.call(jvm_stream_metrics, built.http_url)
    kept = [h for h in range(LEDGER_ROWS) if h not in DELETED]
    assert got["rows"] == sorted([(h, -h if h in UPDATED else h) for h in kept] + [(h, h) for h in INSERTED])
    assert got["numOutputRows"] == len(got["rows"])
    # the stable part's versions of the deleted and updated rows are dropped by the deletion vector;
    # the updated and inserted rows come from the delta part (the deleted ones are no row)
    assert got["deletion_vector_rows"] == len(DELETED) + len(UPDATED)
    assert got["fresh_tail_rows"] == len(UPDATED) + len(INSERTED)
    assert got["parts"] == 2  # the stable part and the delta


def test_a_stream_read_with_te_trailers_ends_with_its_reads_figures(built: Built) -> None:
    """The service's side of those metrics: the trailer fields after a whole stream's last chunk."""
    import http.client

    request = json.dumps({"table": LEDGER}).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{built.http_url}/v1/read-sessions", data=request,
                                                       method="POST")) as r:
        session = json.load(r)
    host, port = built.http_url.removeprefix("http://").split(":")
    trailers: dict[str, int] = {}
    try:
        for stream in session["streams"]:
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            conn.putrequest("GET", stream["url"])
            conn.putheader("TE", "trailers")
            conn.putheader("Connection", "TE")
            conn.endheaders()
            response = conn.getresponse()
            assert response.status == 200
            assert response.getheader("Trailer") == "X-TheFlash-Deletion-Vector-Rows, X-TheFlash-Fresh-Tail-Rows"
            raw = _chunked_body_and_trailers(response)
            conn.close()
            for name, value in raw.items():
                trailers[name] = trailers.get(name, 0) + int(value)
    finally:
        urllib.request.urlopen(urllib.request.Request(f"{built.http_url}/v1/read-sessions/{session['id']}",
                                                      method="DELETE")).close()
    assert trailers == {"X-TheFlash-Deletion-Vector-Rows": len(DELETED) + len(UPDATED),
                        "X-TheFlash-Fresh-Tail-Rows": len(UPDATED) + len(INSERTED)}


def _chunked_body_and_trailers(response: Any) -> dict[str, str]:
    """Reads a chunked body off ``response``'s buffered file by hand (http.client drops
    trailers) and answers its trailer fields."""
    f = response.fp
    while True:
        size = int(f.readline().split(b";")[0].strip(), 16)
        if size == 0:
            break
        f.read(size)
        assert f.readline() == b"\r\n"
    out = {}
    for line in iter(f.readline, b"\r\n"):
        name, _, value = line.decode("ascii").partition(":")
        out[name.strip()] = value.strip()
    return out


UI_SCRIPT = """
import json, sys, urllib.request
from pyspark_theflash.spark.session import theflash_session
spark = theflash_session(master="local[1]", store=sys.argv[1], **{"spark.ui.showConsoleProgress": "false",
                                                                  "spark.ui.port": "0"})
spark.sql("SELECT id, balance FROM theflash.bank.accounts WHERE balance >= 0").collect()
url, app = spark.sparkContext.uiWebUrl, spark.sparkContext.applicationId
sql = json.load(urllib.request.urlopen(f"{url}/api/v1/applications/{app}/sql?details=true"))
nodes = [n for q in sql for n in q["nodes"] if n["nodeName"].startswith("BatchScan")]
print(json.dumps({"ui": spark.conf.get("spark.ui.enabled"), "metrics": {m["name"]: m["value"] for n in nodes
                                                                          for m in n["metrics"]}}))
"""


@pytest.mark.spark
def test_theflash_session_leaves_the_ui_on_and_it_shows_the_scan_metrics(built: Built) -> None:
    out = subprocess.run([sys.executable, "-c", UI_SCRIPT, built.rig.store], capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["ui"] == "true"
    metrics = got["metrics"]
    assert int(metrics["snapshot ts"]) > 0 and metrics["regions read"] == str(len(_history(built.rig.store)["regions"]))
    assert "parts read" in metrics and "bytes of the parts read" in metrics, metrics
