"""A store published to S3 (``Publisher(to="s3://bucket/prefix")``, ``theflash delta publish --to``)
on a real S3-compatible server on loopback (SeaweedFS, tests/support/s3_server.py): the log,
the deletion vectors, the checkpoints and the data files every version names live in the bucket,
the manifest stays the local SQLite beside the store. At every published version delta-rs and
DuckDB, reading ``s3://``, return exactly TheFlash's own rows at that version's ts; the tools
(versions, verify) work on the bucket and name a damaged object by its URI; the cleanup deletes
from the bucket only the copies no kept version names, and no file a kept version names is ever
deleted, whatever the store compacts and collects meanwhile. (delta-spark reads the same through
S3A in tests/spark/test_delta_spark_s3.py.) The writer publishes there on its own with
``--delta-to``, and ``theflash delta publish --to`` does one round."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest

from delta_readers import delta_rs_rows, duckdb_rows, duckdb_with_delta_on_s3
from flash_rig import FlashRig, wait_for
from pyspark_theflash.cli import main
from pyspark_theflash.lake import delta_log
from pyspark_theflash.lake.cleanup import named_files
from pyspark_theflash.lake.location import lake_dir
from pyspark_theflash.lake.publish import Publisher, Round
from pyspark_theflash.lake.versions import versions_at
from pyspark_theflash.store import Store, StoreOptions
from pyspark_theflash.upstream.workloads import TwoTableBankWorkload
from one_region_writes import COLUMNS, T1, Upstream, own_rows
from store_events import DB



def objects(uri: str) -> set[str]:
    """Every object under ``uri``, relative to it."""
    where = lake_dir(uri)
    infos = where.fs.get_file_info(pafs.FileSelector(where.path, recursive=True, allow_not_found=True))
    return {i.path[len(where.path) + 1:] for i in infos if i.type == pafs.FileType.File}


def test_a_store_published_to_s3_reads_as_theflash_in_delta_rs_and_duckdb_at_every_version(
        tmp_path: Path, s3_bucket: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(516)
    store = Store.open(tmp_path / "s", options=StoreOptions(row_group_rows=64, part_compression="zstd",
                                                            removed_file_retention_s=0))
    store.put_schema(DB, T1.to_json())
    up = Upstream(store)
    to = f"s3://{s3_bucket}/replica"
    publisher = Publisher(store.root, to=to, checkpoint_interval=4)
    con = duckdb_with_delta_on_s3()
    up.commit([(h, f"seed{h}") for h in range(2_000)])
    store.flush()
    store.compact(force=True)
    rounds: list[Round] = []
    for n in range(9):
        for _ in range(rng.randint(1, 2)):
            handles = rng.sample(range(2_400), rng.randint(1, 400))
            up.commit([(h, None if rng.random() < 0.2 else f"r{n}-{h}") for h in handles])
            store.flush()
        if n % 3 == 2:
            store.compact(force=True)
            store.delete_obsolete_files()   # the store's own files go: the bucket's copies stay
        rounds.append(publisher.publish())
    root = f"{to}/tables/{T1.id}"
    assert all(r.tables[0].root == root for r in rounds)
    assert [r.tables[0].version for r in rounds] == list(range(9))
    assert not (tmp_path / "s" / "tables" / str(T1.id) / "_delta_log").exists(), "the log went to the store, not S3"
    stored = objects(root)
    assert {"_delta_log/00000000000000000000.json", "_delta_log/00000000000000000004.checkpoint.parquet",
            "_delta_log/_last_checkpoint"} <= stored
    assert any(o.startswith("p") and o.endswith(".parquet") for o in stored), "no part named in place was copied"
    assert any(o.startswith("deletion_vector_") for o in stored), "no deletion vector file in the bucket"
    # every version, read from the bucket, is TheFlash's own read at its ts (the older ones after
    # the store compacted away and deleted the parts they name)
    for version, done in enumerate(rounds):
        want = own_rows(store, done.ts)
        assert delta_rs_rows(root, version, COLUMNS) == want, f"delta-rs at version {version}"
        assert duckdb_rows(con, root, version, COLUMNS) == want, f"DuckDB at version {version}"

    # the tools read the bucket: versions, verify (and a damaged object named by its URI)
    assert [(v.version, v.root) for v in versions_at(to, rounds[3].ts)] == [(3, root)]
    assert main(["delta", "versions", str(store.root), "--to", to, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["version"] == 8
    assert main(["delta", "verify", str(store.root), "--to", to]) == 0
    capsys.readouterr()
    # the service says the same of the bucket (GET /v1/delta/versions?to=)
    from pyspark_theflash.service import serve
    from service_client import HttpReader

    with serve(str(store.root), port=0) as running:
        http = HttpReader(running.http_url)
        status, answer = http.json("GET", f"/v1/delta/versions?ts={rounds[3].ts}&to={to}")
        assert status == 200 and answer["to"] == to, answer
        assert answer["tables"] == [v.__dict__ for v in versions_at(to, rounds[3].ts)]
        assert [t["version"] for t in answer["tables"]] == [3]
        status, answer = http.json("GET", f"/v1/delta/versions?to=s3://key:secret@{s3_bucket}/replica")
        assert status == 400 and "credentials do not go in a location" in answer["error"]["message"], answer
        key = os.environ["AWS_SECRET_ACCESS_KEY"]
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-key")
        status, answer = http.json("GET", f"/v1/delta/versions?to={to}")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key)
        assert status == 502 and answer["error"]["code"] == "location_unavailable", answer
        assert to in answer["error"]["message"] and "\n" not in answer["error"]["message"], answer
    log = delta_log.replay(root)
    vector = next(f.dv for f in log.files.values() if f.dv is not None and f.dv.storage == "u")
    name = vector.file_name()
    where = lake_dir(root)
    good = where.read_bytes(name)
    where.write(name, good[:40] + bytes([good[40] ^ 1]) + good[41:])
    assert main(["delta", "verify", str(store.root), "--to", to]) == 1
    err = capsys.readouterr().err
    assert f"{root}/{name}" in err and "CRC-32" in err
    where.write(name, good)
    # the command does a round too, to the same place
    up.commit([(7, "by the command")])
    store.flush()
    assert main(["delta", "publish", str(store.root), "--to", to, "--json"]) == 0
    by_command = json.loads(capsys.readouterr().out)
    assert by_command["tables"][0]["version"] == 9 and by_command["tables"][0]["root"] == root
    assert delta_rs_rows(root, 9, COLUMNS) == own_rows(store, by_command["ts"])
    # credentials never go in a location
    assert main(["delta", "publish", str(store.root), "--to", f"s3://key:secret@{s3_bucket}/replica"]) == 2
    assert "credentials do not go in a location" in capsys.readouterr().err
    # keys the server refuses: one line naming the location and what to check, no traceback
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-key")
    assert main(["delta", "publish", str(store.root), "--to", to]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and to in err and "credentials" in err and "Traceback" not in err, err
    store.close()


def seeded_store(path: Path, rows: int) -> tuple[Store, Upstream]:
    """A store of T1 (small row groups, ZSTD parts) with ``rows`` rows compacted into stable parts."""
    store = Store.open(path, options=StoreOptions(row_group_rows=64, part_compression="zstd"))
    store.put_schema(DB, T1.to_json())
    up = Upstream(store)
    up.commit([(h, f"seed{h}") for h in range(rows)])
    store.flush()
    store.compact(force=True)
    return store, up


def test_cleanup_on_s3_deletes_only_the_copies_no_kept_version_names(tmp_path: Path, s3_bucket: str) -> None:
    rng = random.Random(7)
    store, up = seeded_store(tmp_path / "s", 1_000)
    to = f"s3://{s3_bucket}/replica"
    # a retention of 0: each checkpoint (every 3rd version) cuts the log at itself
    publisher = Publisher(store.root, retention_s=0, checkpoint_interval=3, to=to)
    rounds: list[Round] = []
    copies: set[str] = set()
    for n in range(10):
        up.commit([(h, None if rng.random() < 0.2 else f"r{n}") for h in rng.sample(range(1_200), 200)])
        store.flush()
        if n % 3 == 1:
            store.compact(force=True)
        rounds.append(publisher.publish())
        copies |= {o for o in objects(f"{to}/tables/{T1.id}") if o.startswith("p")}
    root = f"{to}/tables/{T1.id}"
    kept = delta_log.log_versions(root)
    assert kept == [9], kept    # cut at the checkpoint of version 9
    stored = objects(root)
    named = named_files(root, 9, 9)
    # every file the kept version names is in the bucket; the copies and conversions nothing
    # names any more are gone
    assert named <= stored, named - stored
    assert copies - named and not (copies - named) & stored, "a copied part no version names was not deleted"
    publication = {o for o in stored if not o.startswith("_delta_log/")}
    assert publication <= named, publication - named
    want = own_rows(store, rounds[9].ts)
    assert delta_rs_rows(root, 9, COLUMNS) == want
    assert duckdb_rows(duckdb_with_delta_on_s3(), root, 9, COLUMNS) == want
    # a new publisher (a new process) replays the bucket's log from its checkpoint and goes on
    up.commit([(1, "after the cut")])
    store.flush()
    again = Publisher(store.root, to=to).publish()
    assert again.tables[0].version == 10
    assert delta_rs_rows(root, 10, COLUMNS) == own_rows(store, again.ts)
    store.close()


def test_a_publisher_asks_the_bucket_about_each_data_file_once(tmp_path: Path, s3_bucket: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Each question about a file in the bucket is a HEAD (tens of ms on a remote bucket). A round
    knows the files the last version names and those it writes (lake.location.FileStamps), so over
    rounds that change rows, compact and clean the log, no data file is asked about twice; and
    every version still reads as TheFlash's own."""
    from collections import Counter

    from pyspark_theflash.lake.location import LakeDir

    asked: Counter[str] = Counter()
    info = LakeDir.info

    def counted(self: LakeDir, rel: str = "") -> pafs.FileInfo:
        if rel.endswith(".parquet") and not rel.startswith("_delta_log"):
            asked[self.where(rel)] += 1
        return info(self, rel)

    monkeypatch.setattr(LakeDir, "info", counted)
    rng = random.Random(11)
    store, up = seeded_store(tmp_path / "s", 1_500)
    to = f"s3://{s3_bucket}/replica"
    publisher = Publisher(store.root, retention_s=0, checkpoint_interval=3, to=to)
    rounds: list[Round] = []
    for n in range(8):
        up.commit([(h, None if rng.random() < 0.2 else f"r{n}") for h in rng.sample(range(1_800), 100)])
        store.flush()
        if n % 3 == 2:
            store.compact(force=True)
        rounds.append(publisher.publish())
    root = f"{to}/tables/{T1.id}"
    assert [r.tables[0].version for r in rounds] == list(range(8))
    assert asked, "no data file was looked up: the count is not where the rounds ask"
    assert max(asked.values()) == 1, sorted((n, f) for f, n in asked.items() if n > 1)[-5:]
    assert delta_rs_rows(root, 7, COLUMNS) == own_rows(store, rounds[7].ts)  # (the log is cut at 6)
    store.close()


def test_publishing_to_another_local_directory_copies_the_parts_and_reads_the_same(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", options=StoreOptions(row_group_rows=64, part_compression="zstd"))
    store.put_schema(DB, T1.to_json())
    up = Upstream(store)
    up.commit([(h, f"seed{h}") for h in range(500)])
    store.flush()
    store.compact(force=True)
    up.commit([(h, f"new{h}") for h in range(0, 500, 3)])
    store.flush()
    done = Publisher(store.root, to=tmp_path / "lake").publish()
    root = tmp_path / "lake" / "tables" / str(T1.id)
    assert done.tables[0].root == str(root)
    assert any(root.glob("p*/stable-*.parquet")) and any(root.glob("lake/*.parquet"))
    assert delta_rs_rows(root, 0, COLUMNS) == own_rows(store, done.ts)
    assert main(["delta", "verify", str(store.root), "--to", str(tmp_path / "lake")]) == 0
    store.close()


def test_the_writer_publishes_to_s3_on_its_own_with_delta_to(tmp_path: Path, s3_bucket: str) -> None:
    to = f"s3://{s3_bucket}/bank"
    rig = FlashRig(tmp_path)
    try:
        # 25 transactions a second: the test waits on the writer's rounds, and as fast as they went
        # they only took CPU from the writer (these four modules: 47.6 -> 38.8 CPU s, issue 54)
        bank = TwoTableBankWorkload(rig.cluster, accounts=20, initial=1000, threads=2, seed=56, rate=25)
        bank.setup()
        rig.start_writer(interval_s=0.05, delta_publish_interval_s=0.3, delta_to=to)
        for table in bank.tables:
            rig.wait_replicated(table)
        bank.start()
        try:
            wait_for(lambda: len(versions_at(to)) == 2 and all((v.version or 0) >= 2 for v in versions_at(to)),
                     120, "three rounds of both tables in the bucket")
        finally:
            bank.stop()
        writer = rig.writer
        rig.stop_writer()
        assert writer is not None and writer.progress.delta_rounds >= 3
        assert not any((Path(rig.store) / "tables").glob("*/_delta_log")), "the writer published into the store"
        logs = [delta_log.replay(v.root) for v in versions_at(to)]
        assert all(str(log.root).startswith(f"{to}/tables/") for log in logs)
        ts = max(log.ts for log in logs)   # the last round's ts (a table it left unchanged holds its last version)
        with Store.open(rig.store, readonly=True) as store:
            total = 0
            for log in logs:
                version = log.version_at(ts)
                assert version is not None
                rows = delta_rs_rows(log.root, version, ["id", "balance"])
                own = store.scan_table(log.name, ts, columns=["id", "balance"]).sort_by("id")
                assert rows == [(r["id"], r["balance"]) for r in own.to_pylist()], (log.name, version, ts)
                total += sum(b for _, b in rows)
            assert total == bank.total
    finally:
        rig.close()


def test_the_s3_server_takes_writes_in_as_many_buckets_as_a_test_worker_makes(s3_server: Any) -> None:
    # Each bucket is a collection with volumes of its own (tests/support/s3_server.py): a cap of
    # 32 volume slots failed the fifth bucket's first write with INTERNAL_FAILURE. Twelve buckets,
    # more than a worker's share of a slow run, each take an object and give the same bytes back.
    fs = s3_server.filesystem()
    for n in range(12):
        bucket = f"many-{n}"
        s3_server.create_bucket(bucket)
        with fs.open_output_stream(f"{bucket}/object") as out:
            out.write(bytes([n]) * 4096)
        with fs.open_input_stream(f"{bucket}/object") as f:
            assert f.read() == bytes([n]) * 4096
