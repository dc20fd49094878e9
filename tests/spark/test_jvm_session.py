"""``theflash_session()`` puts the connector jar on a new session and starts a service in its
own process that reads whichever store a read names, so ``format("theflash")`` (with the
Python source's options) and the catalog read through the JVM connector; ``store`` becomes the
session's default store; ``jvm=False`` is the Python source; and it leaves a session that
already runs as its user set it."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from flash_rig import FlashRig, wait_for
from pyspark_theflash.upstream.workloads import BankWorkload

pytestmark = pytest.mark.spark

JVM_SCRIPT = """
import json, sys
from pyspark_theflash.spark.session import has_connector_jar, theflash_session
store, upstream = sys.argv[1], sys.argv[2]
spark = theflash_session(master="local[2]", store=store, **{"spark.ui.showConsoleProgress": "false"})
with_jar = has_connector_jar(spark)  # the process's first session, jvm left at its default
df = spark.read.format("theflash").option("store", store).option("upstream", upstream).load("bank.accounts")
plan = df.filter("balance > 0")._jdf.queryExecution().executedPlan().toString()
total = df.agg({"balance": "sum"}).collect()[0][0]
# no store option: the session's theflash.store
default_total = spark.read.format("theflash").load("bank.accounts").agg({"balance": "sum"}).collect()[0][0]
tables = [tuple(r) for r in spark.sql("SHOW TABLES IN theflash.bank").collect()]
try:
    spark.read.format("theflash").option("store", store + "-missing").load("bank.accounts").count()
    missing = None
except Exception as exc:
    missing = str(exc)
print(json.dumps({"with": with_jar, "total": total, "default_total": default_total, "plan": plan, "tables": tables,
                  "jars": spark.conf.get("spark.jars"), "server": spark.conf.get("theflash.server"),
                  "store": spark.conf.get("theflash.store"), "token": bool(spark.conf.get("theflash.token")),
                  "extensions": spark.conf.get("spark.sql.extensions"), "missing": missing}))
"""

PYTHON_SCRIPT = """
import json, sys
from pyspark_theflash.spark.session import has_connector_jar, theflash_session
store, upstream, ts = sys.argv[1], sys.argv[2], sys.argv[3]
spark = theflash_session(master="local[1]", jvm=False)
read = lambda **o: spark.read.format("theflash").option("store", store).option("upstream", upstream).options(**o).load(
    "bank.accounts")
total = read().agg({"balance": "sum"}).collect()[0][0]
pinned = read(snapshot_ts=ts).join(read(snapshot_ts=ts), "id").count()  # one ts: nothing to say
print("--- two fresh reads joined", file=sys.stderr, flush=True)
joins = [read().join(read(), "id").count() for _ in range(2)]  # each read its own ts: said once
print(json.dumps({"with": has_connector_jar(spark), "total": total, "joins": [pinned] + joins,
                  "server": spark.conf.get("theflash.server", None)}))
"""

KEEP_SCRIPT = """
import json
from pyspark.sql import SparkSession
from pyspark_theflash.spark.session import theflash_session
SparkSession.builder.master("local[1]").config("spark.sql.shuffle.partitions", "7").getOrCreate()
spark = theflash_session(master="local[2]")
print(json.dumps({"shuffle": spark.conf.get("spark.sql.shuffle.partitions"),
                  "ui": spark.sparkContext.getConf().get("spark.ui.enabled", "unset")}))
"""


def run_with_stderr(script: str, *args: str) -> tuple[dict, str]:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def run(script: str, *args: str) -> dict:
    return run_with_stderr(script, *args)[0]


def test_theflash_session_leaves_a_running_session_as_its_user_set_it() -> None:
    assert run(KEEP_SCRIPT) == {"shuffle": "7", "ui": "unset"}


RESTART_SCRIPT = """
import json
from pyspark_theflash.spark.session import has_connector_jar, theflash_session
spark = theflash_session(master="local[1]", jvm=False)  # the JVM starts without the jar
without = has_connector_jar(spark)
spark.stop()
try:
    theflash_session(master="local[1]", jvm=True)
    refused = None
except RuntimeError as exc:
    refused = str(exc)
print(json.dumps({"without": without, "refused": refused}))
"""

def test_a_session_whose_driver_cannot_load_the_jar_is_refused_not_read_through_python() -> None:
    # PySpark keeps the process's first JVM: a session started with the jar after one without
    # it has the jar in spark.jars, but its driver resolves format("theflash") to the Python
    # source (bench/scan.py --jvm timed the Python source that way).
    got = run(RESTART_SCRIPT)
    assert got["without"] is False
    assert got["refused"] is not None and "cannot load the theflash connector" in got["refused"]
    assert "driver JVM was started without the jar" in got["refused"], got["refused"]
    # the contrast, a process whose first session has the jar: test_theflash_session_with_a_store_reads_
    # through_the_jar_and_an_in_process_service asserts it of its own process (one JVM fewer to start)


# The tests without the bank run first: the module's bank (its transfers, capture and the writer) is
# set up for the first test that takes it and runs until the module ends, so it runs only under the
# two tests that read it, not under the two JVMs of the tests that do not (issue 54).


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FlashRig, BankWorkload]]:
    rig = FlashRig(tmp_path_factory.mktemp("jvm-session"))
    # 15 transfers a second while the sessions start and read: unthrottled, this process's transfers
    # (and capture's and the writer's work after them) took a core beside the tests' JVMs (issue 54)
    workload = BankWorkload(rig.cluster, accounts=25, initial=1000, threads=1, seed=19, rate=15)
    try:
        workload.setup()
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated("bank.accounts")
        workload.start()
        try:
            wait_for(lambda: workload.stats.committed > 5, 60, "the transfers to start")
            yield rig, workload
        finally:
            workload.stop()
    finally:
        rig.close()


def test_theflash_session_with_a_store_reads_through_the_jar_and_an_in_process_service(
        bank: tuple[FlashRig, BankWorkload]) -> None:
    rig, workload = bank
    got = run(JVM_SCRIPT, rig.store, rig.upstream)
    # the process's first session, started with jvm left at its default, loads the jar (the contrast
    # of test_a_session_whose_driver_cannot_load_the_jar_is_refused_not_read_through_python)
    assert got["with"] is True
    assert got["total"] == got["default_total"] == workload.total
    # the session's extension settles the query's one ts as it plans: explain() shows it
    assert re.search(r"TheFlashScan bank\.accounts snapshot_ts=\d+ PushedFilters: \[balance > 0\]", got["plan"]), got["plan"]
    assert got["extensions"] == "io.theflash.spark.TheFlashExtensions"
    assert got["tables"] == [["bank", "accounts", False]]
    assert got["jars"].endswith("theflash-spark.jar") and got["server"].startswith("http://127.0.0.1:")
    assert got["store"] == str(Path(rig.store).resolve()) and got["token"]
    assert got["missing"] is not None and f"no store at {Path(rig.store).resolve()}-missing" in got["missing"]


def test_theflash_session_without_the_jar_reads_through_the_python_source_and_warns_once_of_a_query_at_two_ts(
        bank: tuple[FlashRig, BankWorkload]) -> None:
    """Jar-less, each read of a query takes its own ts (the Python source cannot see the query):
    the first query seen reading two ts says so on the console, once; reads that share a
    snapshot_ts say nothing."""
    rig, workload = bank
    got, stderr = run_with_stderr(PYTHON_SCRIPT, rig.store, rig.upstream, str(rig.cluster.get_ts()))
    assert got == {"with": False, "total": workload.total, "joins": [25, 25, 25], "server": None}
    before, _, after = stderr.partition("--- two fresh reads joined")
    assert "different snapshot ts" not in before, before[-2000:]
    warnings = re.findall(r"theflash: one Spark query read bank\.accounts at different snapshot ts "
                          r"\(bank\.accounts at \d+, bank\.accounts at \d+\)", after)
    assert len(warnings) == 1, after[-3000:]
