"""The writer publishes on its own at ``--delta-publish-interval``: with the bank running through
the mini cluster and capture, both bank tables gain versions round after round, every round at
one ts for both, and each version reads (delta-rs) as the store at its ts, with the bank's total;
the service's ``GET /v1/delta/versions?ts=T`` says which version holds T, as the command does."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from delta_bank_rounds import resolved_past
from delta_readers import delta_rs_rows, duckdb_rows, duckdb_with_delta
from flash_rig import FlashRig, wait_for
from pyspark_theflash.lake import delta_log
from pyspark_theflash.lake.versions import versions_at
from pyspark_theflash.service import serve
from service_client import HttpReader
from pyspark_theflash.store import Store
from pyspark_theflash.upstream.workloads import TwoTableBankWorkload


def test_the_writer_publishes_every_table_at_one_ts_each_round(tmp_path: Path) -> None:
    rig = FlashRig(tmp_path)
    try:
        # 25 transactions a second: the test waits on the writer's rounds, and as fast as they went
        # they only took CPU from the writer (these four modules: 47.6 -> 38.8 CPU s, issue 54)
        bank = TwoTableBankWorkload(rig.cluster, accounts=20, initial=1000, threads=2, seed=5, rate=25)
        bank.setup()
        rig.start_writer(interval_s=0.05, delta_publish_interval_s=0.3, file_retention_s=3600)
        for table in bank.tables:
            rig.wait_replicated(table)
        bank.start()
        try:
            wait_for(lambda: len(versions_at(rig.store)) == 2 and all(
                (v.version or 0) >= 3 for v in versions_at(rig.store)), 120, "three rounds of both tables")
        finally:
            bank.stop()
        writer = rig.writer
        rig.stop_writer()
        assert writer is not None and writer.progress.delta_rounds >= 3
        logs = [delta_log.replay(Path(v.root)) for v in versions_at(rig.store)]
        # a round publishes both tables at its ts: each ts of one table's versions is a round's
        # ts, at which the other table has a version too (its own, or its last unchanged one)
        round_ts = sorted({ts for log in logs for _, ts, _ in log.history})
        with Store.open(rig.store, readonly=True) as store:
            for ts in round_ts[-3:]:
                total = 0
                for log in logs:
                    version = log.version_at(ts)
                    assert version is not None, f"{log.name} has no version at round ts {ts}"
                    rows = delta_rs_rows(log.root, version, ["id", "balance"])
                    own = store.scan_table(log.name, ts, columns=["id", "balance"]).sort_by("id")
                    assert rows == [(r["id"], r["balance"]) for r in own.to_pylist()], (log.name, version, ts)
                    total += sum(b for _, b in rows)
                assert total == bank.total, f"the bank total over both tables at ts {ts} is {total}"
        with serve(rig.store, port=0) as running:
            http = HttpReader(running.http_url)
            status, answer = http.json("GET", f"/v1/delta/versions?ts={round_ts[-2]}")
            assert status == 200, answer
            assert answer["tables"] == [v.__dict__ for v in versions_at(rig.store, round_ts[-2])]
            assert http.json("GET", "/v1/delta/versions?ts=soon")[0] == 400
    finally:
        rig.close()


def test_a_dropped_table_gets_a_last_version_without_rows_and_earlier_versions_keep_theirs(tmp_path: Path) -> None:
    from pyspark_theflash.lake.publish import Publisher
    from pyspark_theflash.upstream.tidb import make_column

    rig = FlashRig(tmp_path)
    try:
        for name in ("d.gone", "d.kept"):
            rig.cluster.create_table(name, [make_column("id", "BIGINT", not_null=True), make_column("v", "BIGINT")],
                                     primary_key=["id"])

        def seed(txn: object) -> None:
            for i in range(10):
                txn.insert("d.gone", {"id": i, "v": i})  # type: ignore[attr-defined]
                txn.insert("d.kept", {"id": i, "v": i})  # type: ignore[attr-defined]

        rig.cluster.run_txn(seed)
        rig.start_writer(interval_s=0.05)
        for name in ("d.gone", "d.kept"):
            rig.wait_replicated(name)
        publisher = Publisher(rig.store)
        seeded = rig.cluster.get_ts()
        wait_for(lambda: resolved_past(publisher, seeded), 60, "the store to resolve past the seed")
        first = publisher.publish()
        gone = next(t for t in first.tables if t.table == "d.gone")
        assert gone.version == 0
        rig.cluster.drop_table("d.gone")
        dropped_at = rig.cluster.get_ts()

        def retired() -> bool:
            with Store.open(rig.store, readonly=True) as store, store.snapshot() as view:
                return any(name == "d.gone" for _, name, _, _ in view.retired_tables()) and \
                    resolved_past(publisher, dropped_at)

        wait_for(retired, 60, "the writer to apply the DROP")
        second = publisher.publish()
        last = next(t for t in second.tables if t.table_id == gone.table_id)
        assert last.version == 1
        log = delta_log.replay(Path(gone.root))
        assert not log.files
        assert delta_rs_rows(Path(gone.root), 1, ["id", "v"]) == []
        assert delta_rs_rows(Path(gone.root), 0, ["id", "v"]) == [(i, i) for i in range(10)]
        last_commit = (Path(gone.root) / "_delta_log" / "00000000000000000001.json").read_text()
        assert "THEFLASH RETIRE" in last_commit
        # the last version's checksum: no file left, and the first one's counts what it named
        from pyspark_theflash.lake.checksum import read_checksum

        retired_crc, first_crc = read_checksum(gone.root, 1), read_checksum(gone.root, 0)
        assert retired_crc is not None and first_crc is not None
        assert (retired_crc["numFiles"], retired_crc["tableSizeBytes"], first_crc["numFiles"]) == (0, 0, gone.files)
    finally:
        rig.close()


def test_a_truncated_table_goes_on_in_its_delta_table_and_time_travel_before_the_truncate_reads_the_old_rows(
        tmp_path: Path) -> None:
    from pyspark_theflash.lake.publish import Publisher
    from pyspark_theflash.upstream.tidb import make_column

    rig = FlashRig(tmp_path)
    con = duckdb_with_delta()
    columns = ["id", "v"]
    try:
        for name in ("d.t", "d.kept"):  # (a store with no live table has nothing to publish)
            rig.cluster.create_table(name, [make_column("id", "BIGINT", not_null=True), make_column("v", "BIGINT")],
                                     primary_key=["id"])
        rig.cluster.run_txn(lambda txn: [txn.insert("d.t", {"id": i, "v": i}) for i in range(10)])  # type: ignore[attr-defined]
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated("d.t")
        publisher = Publisher(rig.store)

        def published_after(ts: int, table_ids: int) -> Any:
            wait_for(lambda: resolved_past(publisher, ts) and live_ids(rig.store) == table_ids, 60,
                     "the writer to apply the changes")
            ours = [t for t in publisher.publish().tables if t.table == "d.t"]   # (its retired ids: skipped)
            return next((t for t in ours if t.version is not None), ours[0])

        first = published_after(rig.cluster.get_ts(), 2)
        assert first.version == 0
        expected = {0: [(i, i) for i in range(10)]}
        # twice: TRUNCATE gives the name a new id each time; the rows written after each
        for n, rows in ((1, [(100, 1), (101, 2)]), (2, [(200, 3)])):
            rig.cluster.truncate_table("d.t")
            rig.cluster.run_txn(lambda txn: [txn.insert("d.t", {"id": i, "v": v}) for i, v in rows])  # type: ignore[attr-defined]
            done = published_after(rig.cluster.get_ts(), 2)
            assert (done.root, done.version) == (first.root, n)    # the same Delta table, its next version
            assert done.table_id != first.table_id
            expected[n] = rows
        root = Path(first.root)
        for version, rows in expected.items():   # every version, the ones before each truncate included
            assert delta_rs_rows(root, version, columns) == rows
            assert duckdb_rows(con, root, version, columns) == rows
        log = delta_log.replay(root)
        assert all(f.path.startswith(("ids/", "lake/")) for f in log.files.values()), sorted(log.files)
        assert sorted(v.table for v in versions_at(rig.store)) == ["d.kept", "d.t"]    # listed once, at its one path
        rig.cluster.drop_table("d.t")
        gone = published_after(rig.cluster.get_ts(), 1)
        assert (gone.root, gone.version) == (first.root, 3)
        assert delta_rs_rows(root, 3, columns) == [] and delta_rs_rows(root, 2, columns) == expected[2]
    finally:
        rig.close()


def live_ids(store: str) -> int:
    """How many live tables the store has."""
    with Store.open(store, readonly=True) as s, s.snapshot() as view:
        return len(view.tables())


def test_twenty_rounds_through_splits_merges_dying_transactions_and_compactions_read_as_theflash(tmp_path: Path) -> None:
    from pyspark_theflash.upstream.workloads import Faults

    rig = FlashRig(tmp_path)
    try:
        bank = TwoTableBankWorkload(rig.cluster, accounts=40, initial=1000, threads=2, seed=20,
                                    faults=Faults(split_merge=0.05, dying=0.02, rollback=0.02))
        bank.setup()
        rig.start_writer(interval_s=0.05, delta_publish_interval_s=0.2, compact_interval_s=1.0, file_retention_s=3600)
        for table in bank.tables:
            rig.wait_replicated(table)
        bank.start()
        try:
            wait_for(lambda: len({ts for v in versions_at(rig.store) if v.version is not None
                                  for _, ts, _ in delta_log.replay(Path(v.root)).history}) >= 20,
                     240, "twenty publication rounds")
        finally:
            bank.stop()
        stats = bank.stats
        rig.stop_writer()
        logs = [delta_log.replay(Path(v.root)) for v in versions_at(rig.store)]
        round_ts = sorted({ts for log in logs for _, ts, _ in log.history})
        con = duckdb_with_delta()
        with Store.open(rig.store, readonly=True) as store:
            for ts in round_ts[-20:]:
                total = 0
                for log in logs:
                    version = log.version_at(ts)
                    assert version is not None
                    own = store.scan_table(log.name, ts, columns=["id", "balance"]).sort_by("id")
                    want = [(r["id"], r["balance"]) for r in own.to_pylist()]
                    assert delta_rs_rows(log.root, version, ["id", "balance"]) == want, (log.name, version, ts)
                    assert duckdb_rows(con, log.root, version, ["id", "balance"]) == want, (log.name, version, ts)
                    total += sum(b for _, b in want)
                assert total == bank.total, f"the bank total over both tables at ts {ts} is {total}"
        assert stats.splits > 0 and stats.merges > 0 and stats.dying > 0, stats.summary()
    finally:
        rig.close()


def test_the_writer_applies_while_a_publication_round_runs_and_counts_it_when_it_ends(
        tmp_path: Path, monkeypatch: Any) -> None:
    """A round runs on a thread of its own: held in the middle, the writer still applies a commit
    made after it started (a read at the commit's ts returns the row), and the round is counted
    once it ends."""
    import threading

    from pyspark_theflash.lake.publish import Publisher
    from pyspark_theflash.upstream.tidb import make_column

    entered, release = threading.Event(), threading.Event()
    publish = Publisher.publish

    def held(self: Publisher, ts: int | None = None) -> Any:
        entered.set()
        assert release.wait(60), "the test never released the round"
        return publish(self, ts)

    monkeypatch.setattr(Publisher, "publish", held)
    rig = FlashRig(tmp_path)
    try:
        rig.cluster.create_table("d.t", [make_column("id", "BIGINT", not_null=True), make_column("v", "BIGINT")],
                                 primary_key=["id"])
        rig.cluster.run_txn(lambda t: t.insert("d.t", {"id": 1, "v": 1}))
        rig.start_writer(interval_s=0.05, delta_publish_interval_s=0.1)
        rig.wait_replicated("d.t")
        assert entered.wait(30), "no publication round started"
        rig.cluster.run_txn(lambda t: t.insert("d.t", {"id": 2, "v": 2}))
        ts = rig.cluster.get_ts()
        rows = rig.read_at(rig.store, "d.t", ts).sort_by("id").to_pylist()
        assert rows == [{"id": 1, "v": 1}, {"id": 2, "v": 2}]
        writer = rig.writer
        assert writer is not None and writer.progress.delta_rounds == 0 and not release.is_set()
        release.set()
        wait_for(lambda: writer.progress.delta_rounds >= 1, 30, "the held round to be counted")
        rig.stop_writer()
        assert writer.progress.delta_published_ts > 0
        assert [v.table for v in versions_at(rig.store)] == ["d.t"]
    finally:
        release.set()
        rig.close()
