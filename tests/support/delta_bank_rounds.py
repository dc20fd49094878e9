"""The two-table bank through the mini cluster, capture and the writer, published as Delta
tables in rounds and read back by delta-rs, DuckDB and delta-spark, each compared with
TheFlash's own read at the round's ts (tests/spark/test_delta_spark.py and
test_delta_spark_s3.py: on local disk and on a real S3 server)."""
from __future__ import annotations

import datetime
from typing import Any
from pathlib import Path

from flash_rig import FlashRig, wait_for
from jvm_spark import JvmSpark
from pyspark_theflash.lake import delta_log
from pyspark_theflash.lake.errors import PublishTsError
from pyspark_theflash.lake.publish import Publisher, Round
from pyspark_theflash.store import Store
from pyspark_theflash.upstream.workloads import TwoTableBankWorkload
from delta_readers import delta_rs_rows, delta_spark_checksums, duckdb_rows, duckdb_with_delta, duckdb_with_delta_on_s3

# 4 rounds: versions 0-1 replayed from JSON commits, 2 from a checkpoint, 3 from a checkpoint and a
# commit after it (checkpoint_interval=2); the slow variants run 5 (a second checkpoint)
ROUNDS = 4
SLOW_ROUNDS = 5


def _utc_text(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def read_versions(spark: Any, reads: list[tuple[str, str, str]]) -> list[list[tuple[int, int]]]:
    """Each (path, option, value) read with delta-spark: its (id, balance) rows by id (sorted
    here: the rows are compared, not Spark's sort, which cost each read two more jobs)."""
    return [sorted((int(r.id), int(r.balance)) for r in spark.read.format("delta").option(option, value).load(path)
                   .select("id", "balance").collect()) for path, option, value in reads]


def resolved_past(publisher: Publisher, ts: int) -> bool:
    """Whether every live table of the publisher's store is resolved at or above ``ts``; a table
    a region split a moment ago (or one the writer has just created) has no resolved ts yet."""
    try:
        return publisher.resolved_ts() >= ts
    except PublishTsError:
        return False


def publish_when_resolved(publisher: Publisher) -> Round:
    found: list[Round] = []

    def published() -> bool:
        try:
            found.append(publisher.publish())
            return True
        except PublishTsError:  # a region split a moment ago has no resolved ts yet
            return False

    wait_for(published, 60, "a publication round at the store's resolved ts")
    return found[0]


def bank_rounds_read_by_every_reader(tmp_path: Path, spark: JvmSpark, to: str | None = None, rounds: int = ROUNDS) -> None:
    """The bank through the rig, ``rounds`` publication rounds (to the store, or ``to``), each
    round's versions read by delta-rs, DuckDB and delta-spark (``spark``: the ``delta_spark``
    fixture's session, tests/conftest.py) and compared with TheFlash's."""
    rig = FlashRig(tmp_path)
    try:
        bank = TwoTableBankWorkload(rig.cluster, accounts=20, initial=1000, threads=2, seed=51)
        bank.setup()
        # removed part files outlive the test: a published version names them (docs/delta.md, retention)
        rig.start_writer(interval_s=0.05, file_retention_s=3600)
        for table in bank.tables:
            rig.wait_replicated(table)
        bank.start()
        publisher = Publisher(rig.store, checkpoint_interval=2, to=to)  # delta-spark reads versions 2-4 from checkpoints
        published: list[Round] = []
        try:
            for _ in range(rounds):
                before = bank.stats.committed
                wait_for(lambda: bank.stats.committed >= before + 10, 60, "the bank to commit transfers")
                published.append(publish_when_resolved(publisher))
        finally:
            bank.stop()
        rig.stop_writer()

        con = duckdb_with_delta() if to is None else duckdb_with_delta_on_s3()
        expected: list[list[tuple[int, int]]] = []
        reads: list[tuple[str, str, str]] = []
        with Store.open(rig.store, readonly=True) as store:
            for done in published:
                for pub in done.tables:
                    own = store.scan_table(pub.table, done.ts, columns=["id", "balance"]).sort_by("id")
                    want = [(int(r["id"]), int(r["balance"])) for r in own.to_pylist()]
                    assert pub.root.startswith(to or str(rig.store)), pub.root
                    log = delta_log.replay(pub.root)
                    version = log.version_at(done.ts)
                    assert version is not None
                    ict = next(h[2] for h in log.history if h[0] == version)
                    assert delta_rs_rows(pub.root, version, ["id", "balance"]) == want, (pub.table, version)
                    assert duckdb_rows(con, pub.root, version, ["id", "balance"]) == want, (pub.table, version)
                    expected += [want, want]
                    spark_path = "s3a://" + pub.root[len("s3://"):] if pub.root.startswith("s3://") else pub.root
                    reads += [(spark_path, "versionAsOf", str(version)),
                              (spark_path, "timestampAsOf", _utc_text(max(ict, done.ts >> 18)))]
                assert sum(b for want in expected[-4::2] for _, b in want) == bank.total

        got = spark.call(read_versions, reads, timeout=1200)
        # each table's newest version read has its checksum, and delta-spark finds it right (its
        # check rebuilds the version's whole state: ~8 s a version on a loaded 2-core machine, so
        # the newest, whose totals follow every version before; every version is checked against
        # delta-rs in tests/integration/test_delta_checksums.py)
        newest = {path: max(int(v) for p, o, v in reads if p == path and o == "versionAsOf") for path, _, _ in reads}
        versions = sorted(newest.items())
        assert spark.call(delta_spark_checksums, versions, timeout=600) == []
        wrong = [(r, len(g), len(w)) for r, g, w in zip(reads, got, expected) if g != w]
        assert not wrong, f"delta-spark differs from TheFlash's read at {wrong[:4]}"
        for i in range(0, len(got), 4):  # the two tables read by one timestamp: one snapshot
            assert sum(b for _, b in got[i + 1]) + sum(b for _, b in got[i + 3]) == bank.total
    finally:
        rig.close()
