"""What a delta-spark read of a published version costs in Spark jobs and time, with the version
checksums (``_delta_log/<v>.crc``, lake/checksum.py) and without them (docs/delta.md, "Version
checksums").

One table (tests/support/store_events.py's ``shop.items``) is published through ``--rounds``
rounds of upserts and deletes with a compaction every 4th (deletion vectors, removes, a
checkpoint every 10th version); then a copy of its directory without the ``.crc`` files (the
log the publisher wrote before it wrote checksums) is read beside it. Each read is cold for
the log (``DeltaLog.clearCache()`` first, as a new session's first read of the table is):
``versionAsOf`` of every ``--step``-th version and the newest, then ``select("id").collect()``.
The jobs of a read are those of its job group (``SparkContext.statusTracker``). Prints a table
and one JSON line.

    .venv/bin/python bench/delta_spark_reads.py [--rounds 24] [--step 3] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "support")]   # this tree's package, then the tests' helpers

from pyspark_theflash.lake.jars import delta_spark_jars  # noqa: E402
from pyspark_theflash.lake.publish import Publisher, table_root  # noqa: E402
from pyspark_theflash.store import Store, StoreOptions  # noqa: E402
from store_events import DB, committed, event, items_table, key, resolved_ts, row  # noqa: E402

T1 = items_table()


def publish_table(where: Path, rounds: int) -> Path:
    rng = random.Random(51)
    store = Store.open(where, options=StoreOptions(row_group_rows=256))
    store.put_schema(DB, T1.to_json())
    now_ms, index = int(time.time() * 1000) - 600_000, 0

    def commit(changes: list[tuple[int, str | None]]) -> None:
        nonlocal now_ms, index
        now_ms += 7
        ts = now_ms << 18
        rows = [committed(key(T1, h), None if n is None else row(T1, id=h, name=n, price=None), ts) for h, n in changes]
        index += 2
        store.write([event(1, index - 1, rows)])
        store.write([resolved_ts(1, index, ts)])

    commit([(h, f"seed{h}") for h in range(20_000)])
    store.flush()
    publisher = Publisher(where)
    for n in range(rounds):
        commit([(h, None if rng.random() < 0.2 else f"r{n}") for h in rng.sample(range(24_000), 2_000)])
        store.flush()
        if n % 4 == 3:
            store.compact(force=True)
        publisher.publish()
    store.close()
    return table_root(where, T1.id)


def spark_session() -> Any:
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("local[2]").appName("delta-spark-reads")
    for k, v in {"spark.jars": ",".join(str(j) for j in delta_spark_jars()), "spark.ui.enabled": "false",
                 "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
                 "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
                 "spark.databricks.delta.snapshotPartitions": "2", "spark.sql.shuffle.partitions": "4",
                 "spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1",
                 "spark.databricks.delta.checksum.mismatch.fatal": "true"}.items():
        builder = builder.config(k, v)
    return builder.getOrCreate()


def read(spark: Any, path: Path, version: int, group: str) -> tuple[int, float, int]:
    """(jobs, seconds, rows) of one cold read of ``version``."""
    spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()
    sc = spark.sparkContext
    sc.setJobGroup(group, group)
    started = time.monotonic()
    rows = len(spark.read.format("delta").option("versionAsOf", version).load(str(path)).select("id").collect())
    seconds = time.monotonic() - started
    jobs = len(sc.statusTracker().getJobIdsForGroup(group))
    return jobs, seconds, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--step", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="delta-spark-reads-") as tmp:
        root = publish_table(Path(tmp) / "s", args.rounds)
        bare = Path(tmp) / "without-crc"
        shutil.copytree(root, bare, symlinks=True)
        for crc in (bare / "_delta_log").glob("*.crc"):
            crc.unlink()
        newest = args.rounds - 1
        versions = sorted({*range(0, newest + 1, args.step), newest})
        spark = spark_session()
        read(spark, root, newest, "warm-up")     # the JVM's first read (class loading) is neither's
        read(spark, bare, newest, "warm-up-bare")
        found: dict[str, dict[int, list[tuple[int, float]]]] = {"with .crc": {}, "without .crc": {}}
        for attempt in range(args.repeat):
            for version in versions:
                for label, path in (("without .crc", bare), ("with .crc", root)):
                    jobs, seconds, rows = read(spark, path, version, f"{label}-{version}-{attempt}")
                    found[label].setdefault(version, []).append((jobs, seconds))
        spark.stop()
    print(f"{'version':>8} {'jobs without':>13} {'jobs with':>10} {'ms without':>11} {'ms with':>8}")
    summary: dict[str, Any] = {"rounds": args.rounds, "versions": versions}
    for version in versions:
        a, b = found["without .crc"][version], found["with .crc"][version]
        print(f"{version:>8} {statistics.median(j for j, _ in a):>13} {statistics.median(j for j, _ in b):>10} "
              f"{statistics.median(s for _, s in a) * 1000:>11.0f} {statistics.median(s for _, s in b) * 1000:>8.0f}")
    for label, by_version in found.items():
        reads = [r for rs in by_version.values() for r in rs]
        summary[label] = {"jobs_median": statistics.median(j for j, _ in reads), "jobs_max": max(j for j, _ in reads),
                          "ms_median": round(statistics.median(s for _, s in reads) * 1000)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
