"""A store whose stable parts live on the S3 server (``StoreOptions.parts_remote``, ``writer run
--parts-to s3://...``; store/remote.py), published as Delta tables in the same place: the
versions name the store's own objects in place (no copy), delta-rs and DuckDB reading ``s3://``
and TheFlash's own reads through its local cache all give what a store on local disk alone gives
at the same ts; the log cleanup leaves the store's objects to the store, and the store deletes
none a kept version names; the writer does it all on its own beside a twin writing to local
disk, the bank's total holding in both."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from delta_readers import delta_rs_rows, duckdb_rows, duckdb_with_delta_on_s3
from flash_rig import FlashRig, wait_for
from one_region_writes import COLUMNS, T1, own_rows, same_commits
from pyspark_theflash.cli import main
from pyspark_theflash.lake import delta_log
from pyspark_theflash.lake.cleanup import named_files
from pyspark_theflash.lake.location import lake_dir
from pyspark_theflash.lake.publish import Publisher, Round
from pyspark_theflash.lake.versions import versions_at
from pyspark_theflash.store import Store, StoreOptions
from pyspark_theflash.store.verify import verify_store
from pyspark_theflash.upstream.workloads import TwoTableBankWorkload

OPTIONS = StoreOptions(row_group_rows=64, part_compression="zstd", removed_file_retention_s=0)


def objects(uri: str) -> set[str]:
    where = lake_dir(uri)
    infos = where.fs.get_file_info(pafs.FileSelector(where.path, recursive=True, allow_not_found=True))
    return {i.path[len(where.path) + 1:] for i in infos if i.type == pafs.FileType.File}


def stable_files(store: Store, live_only: bool = True) -> set[str]:
    where = " AND removed_version IS NULL" if live_only else ""
    return {r[0] for r in store.thread_connection().execute(
        f"SELECT file FROM parts WHERE file LIKE '%.parquet'{where}")}


def test_a_store_on_s3_publishes_its_own_objects_in_place_and_reads_as_a_local_store(
        tmp_path: Path, s3_bucket: str, capsys: pytest.CaptureFixture[str]) -> None:
    location = f"s3://{s3_bucket}/flash"
    local = Store.open(tmp_path / "local", options=OPTIONS)
    on_s3 = Store.open(tmp_path / "s3", options=replace(OPTIONS, parts_remote=location, local_parts_bytes=0))
    publisher = Publisher(on_s3, checkpoint_interval=3, retention_s=0.0)
    assert publisher.lake.uri == location and not publisher.copies_parts
    con = duckdb_with_delta_on_s3()
    rounds: list[Round] = []
    same_commits([local, on_s3], 8, seed=811, compact_every=3, after_round=lambda: rounds.append(publisher.publish()))
    root = f"{location}/tables/{T1.id}"
    stored = objects(root)
    # the store's parts are the bucket's objects at their own keys, and the versions name them
    # there: nothing under p<N>/ is a copy (every object is a part the manifest has)
    in_partitions = {o for o in stored if o.startswith("p")}
    assert {f"tables/{T1.id}/{o}" for o in in_partitions} <= stable_files(on_s3, live_only=False)
    assert stable_files(on_s3) <= {f"tables/{T1.id}/{o}" for o in in_partitions}
    log = delta_log.replay(root)
    assert any(not f.path.startswith("lake/") for f in log.files.values()), "no part was named in place"
    # the log was cut (a checkpoint every 3 versions, no retention) and kept the store's objects;
    # every file a kept version names is there, whatever the store compacted and deleted
    assert min(v for v, _, _ in log.history) > 0, "the log cleanup did not run"
    named = named_files(root, min(v for v, _, _ in log.history), log.version)
    assert named <= objects(root)
    # at every kept version delta-rs and DuckDB read exactly what the local store reads
    for version, done in enumerate(rounds):
        if version < min(v for v, _, _ in log.history):
            continue
        want = own_rows(local, done.ts)
        assert own_rows(on_s3, done.ts) == want, f"TheFlash's own read at version {version}"
        assert delta_rs_rows(root, version, COLUMNS) == want, f"delta-rs at version {version}"
        assert duckdb_rows(con, root, version, COLUMNS) == want, f"DuckDB at version {version}"
    assert verify_store(on_s3.root).problems == []
    # the tools find the tables where the parts live, with no --to
    assert main(["delta", "verify", str(on_s3.root)]) == 0
    assert capsys.readouterr().out.startswith(f"delta {location}: clean")
    assert main(["delta", "versions", str(on_s3.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["root"] == root
    assert main(["store", "verify", str(on_s3.root)]) == 0
    capsys.readouterr()
    # the local disk keeps no stable part beyond its bound once the store tends it
    on_s3.delete_obsolete_files()
    assert not list(on_s3.root.rglob("stable-*.parquet"))
    publisher.close()
    local.close()
    on_s3.close()


def test_the_writer_keeps_its_parts_on_s3_and_reads_as_its_twin_on_local_disk(tmp_path: Path, s3_bucket: str) -> None:
    location = f"s3://{s3_bucket}/bank"
    rig = FlashRig(tmp_path)
    try:
        # 25 transactions a second: the test waits on the writer's rounds, and as fast as they went
        # they only took CPU from the writer (these four modules: 47.6 -> 38.8 CPU s, issue 54)
        bank = TwoTableBankWorkload(rig.cluster, accounts=20, initial=1000, threads=2, seed=57, rate=25)
        bank.setup()
        rig.start_writer(interval_s=0.05)
        twin = rig.start_twin_writer("on-s3", parts_to=location, local_parts_bytes=0, compact_interval_s=0.3,
                                     delta_publish_interval_s=0.3)
        for table in bank.tables:
            rig.wait_replicated(table)
        bank.start()
        try:
            wait_for(lambda: len(versions_at(location)) == 2 and all((v.version or 0) >= 3
                                                                        for v in versions_at(location)),
                     120, "four rounds of both tables in the bucket")
        finally:
            bank.stop()
        logs = [delta_log.replay(v.root) for v in versions_at(location)]
        # a round each log has seen (the writer goes on publishing while the logs are read)
        ts = min(log.ts for log in logs)
        total = 0
        for log in logs:
            version = log.version_at(ts)
            assert version is not None
            # read sessions, each waiting until its store's writer has caught up to ts
            own, twin_rows = ([(r["id"], r["balance"]) for r in
                               rig.read_at(store, log.name, ts, columns=["id", "balance"]).sort_by("id").to_pylist()]
                              for store in (twin, rig.store))
            assert own == twin_rows, (log.name, ts)
            assert delta_rs_rows(log.root, version, ["id", "balance"]) == own, (log.name, version, ts)
            total += sum(b for _, b in own)
        assert total == bank.total
        rig.stop_writer()
        rig.stop_writer(twin)
        with Store.open(twin, readonly=True) as on_s3:
            assert on_s3.remote is not None and on_s3.remote.uri == location
            listed = stable_files(on_s3)
            assert listed, "the twin compacted nothing"
            assert {f"tables/{p}" for p in objects(f"{location}/tables")} >= listed
    finally:
        rig.close()
