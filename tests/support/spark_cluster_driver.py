"""A Spark driver for tests/spark/test_spark_cluster.py: one application on the standalone cluster,
reading bank.accounts at one ts through one read path; prints ``RESULT=<json>``.

    python tests/support/spark_cluster_driver.py MODE MASTER STORE TABLE TS [SERVER]

MODE ``session``: ``theflash_session(master=...)`` (the jar, the in-driver service; no driver
host set by hand), then a stream (``readStream``) from TS. ``jars``: a plain SparkSession with
``spark.jars`` and option ``server``. ``python``: a plain SparkSession without the jar, the
Python source with option ``server``. ``python-auto``: ``theflash_session(master=...,
jvm=False)``, the Python source with no ``server``: planned on the store's files here, its
executors (which do not see the store) read through the session's service by themselves; then
a stream from TS the same way. The bearer token of SERVER comes from THEFLASH_TOKEN (this
process's environment), never from the command line.

Every mode also asks the executors where they run and whether they see STORE.
"""
from __future__ import annotations

import json
import os
import socket
import sys


# tasks start once both workers' executors have registered (the test checks where they ran)
BOTH_WORKERS = {"spark.executor.memory": "512m", "spark.scheduler.minRegisteredResourcesRatio": "1.0",
                "spark.scheduler.maxRegisteredResourcesWaitingTime": "180s"}


def executors_view(spark, store: str) -> list[list]:
    """Each task's address (its route towards the driver's network) and whether it sees the store."""
    towards = os.environ["THEFLASH_TEST_LAN_HOST"]
    # with several workers, long enough that one executor does not take every task while another starts
    pause = float(os.environ.get("THEFLASH_TEST_PROBE_PAUSE", "0"))

    def probe(_):
        import os as o
        import socket as s
        import time as t

        t.sleep(pause)
        with s.socket(s.AF_INET, s.SOCK_DGRAM) as u:
            u.connect((towards, 9))
            yield [u.getsockname()[0], o.path.exists(store)]

    return sorted(spark.sparkContext.parallelize(range(8), 8).mapPartitions(probe).collect())


def service_sessions(spark) -> dict:
    """Read sessions the session's service (this process's) opened and released, from its metrics."""
    import urllib.request

    request = urllib.request.Request(spark.conf.get("theflash.server") + "/metrics",
                                     headers={"Authorization": "Bearer " + spark.conf.get("theflash.token")})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
    counts = {"opened": 0, "released": 0}
    for line in text.splitlines():
        for key in counts:
            if line.startswith(f"theflash_service_sessions_{key}_total"):
                counts[key] += int(float(line.split()[-1]))
    return counts


def first_batch_of_stream(spark, table: str, ts: str, options: dict) -> list:
    """The rows of a stream's first micro-batch (the rows at ts, as inserts)."""
    first: list = []

    def keep(batch, batch_id: int) -> None:
        if batch_id == 0:
            first.extend([int(r.id), int(r.balance)] for r in batch.select("id", "balance").collect())

    stream = spark.readStream.format("theflash").options(**options).option("starting_ts", ts).load(table)
    query = stream.writeStream.foreachBatch(keep).trigger(availableNow=True).start()
    query.awaitTermination(240)
    if query.exception() is not None:
        raise RuntimeError(str(query.exception()))
    return sorted(first)


def main() -> None:
    mode, master, store, table, ts = sys.argv[1:6]
    server = sys.argv[6] if len(sys.argv) > 6 else None
    token = os.environ.pop("THEFLASH_TOKEN", None)  # into the read's options: the executors get it in partitions
    out: dict = {"mode": mode}
    if mode == "session":
        from pyspark_theflash.spark.session import theflash_session

        spark = theflash_session(master=master, app_name="theflash-cluster-session", store=store, **BOTH_WORKERS)
        out["server"] = spark.conf.get("theflash.server")
        out["driver_host"] = spark.conf.get("spark.driver.host")
        out["ui"] = spark.sparkContext.uiWebUrl
        df = spark.read.format("theflash").option("snapshot_ts", ts).load(table)
    elif mode == "python-auto":
        from pyspark_theflash.spark.session import theflash_session

        spark = theflash_session(master=master, app_name="theflash-cluster-python-auto", jvm=False, **BOTH_WORKERS)
        out["server"] = spark.conf.get("theflash.server")
        out["driver_host"] = spark.conf.get("spark.driver.host")
        out["ui"] = spark.sparkContext.uiWebUrl
        out["planner_sees_store"] = os.path.exists(store)
        df = spark.read.format("theflash").option("store", store).option("snapshot_ts", ts).load(table)
    else:
        from pyspark.sql import SparkSession

        builder = (SparkSession.builder.master(master).appName(f"theflash-cluster-{mode}")
                   .config("spark.driver.host", os.environ["THEFLASH_TEST_LAN_HOST"]))
        for key, value in BOTH_WORKERS.items():
            builder = builder.config(key, value)
        if mode == "jars":
            from pyspark_theflash.spark.jar import jar_path

            builder = builder.config("spark.jars", str(jar_path()))
        spark = builder.getOrCreate()
        df = (spark.read.format("theflash").option("server", server).option("token", token or "")
              .option("store", store).option("snapshot_ts", ts).load(table))
    out["executors"] = executors_view(spark, store)
    out["rows"] = sorted([int(r.id), int(r.balance)] for r in df.select("id", "balance").collect())
    if mode == "python-auto":  # each executor's stream read through a session of its own, then released
        out["service_sessions"] = service_sessions(spark)
    out["partitions"] = df.rdd.getNumPartitions()
    if mode == "session":
        out["stream_first_batch"] = first_batch_of_stream(spark, table, ts, {})
    if mode == "python-auto" and os.environ.get("THEFLASH_TEST_STREAM"):
        out["stream_first_batch"] = first_batch_of_stream(spark, table, ts, {"store": store})
    print("RESULT=" + json.dumps(out), flush=True)
    spark.stop()


if __name__ == "__main__":
    socket.setdefaulttimeout(None)
    main()
