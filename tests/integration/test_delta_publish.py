"""A store published as Delta tables reads, in two independent Delta readers, exactly as the
store reads itself: at every published version, delta-rs (``deltalake``, DataFusion's scan) and
DuckDB's ``delta`` extension (loaded from its wheel, no network) return TheFlash's own rows at
that version's ts, row for row — through upserts, deletes, flushes (Arrow IPC deltas, converted),
compactions (stable parts named in place, with deletion vectors inline and in files), a column
added with a default (older files rewritten to carry it) and rounds that change nothing. A
damaged deletion vector or log file makes ``theflash delta verify`` and ``theflash store verify``
fail naming the file. (delta-spark reads the same tables in tests/spark/test_delta_spark.py.)"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from pyspark_theflash.cli import main
from pyspark_theflash.lake import delta_log
from pyspark_theflash.lake.cleanup import named_files
from pyspark_theflash.lake.publish import Publisher, Round, table_root
from pyspark_theflash.lake.versions import versions_at
from pyspark_theflash.store import Store, StoreOptions
from delta_readers import delta_rs_rows, duckdb_rows, duckdb_with_delta
from items_upstream import T1, T2, Upstream
from store_events import DB


def own_rows(store: Store, ts: int, columns: list[str]) -> list[tuple[Any, ...]]:
    t = store.scan_table(T1.id, ts, columns=columns).sort_by("id")
    return [tuple(r.values()) for r in t.to_pylist()]


def check_round(store: Store, con: Any, done: Round, columns: list[str]) -> None:
    (table,) = done.tables
    root = table_root(store.root, T1.id)
    version = next(v.version for v in versions_at(store.root, done.ts))
    assert version is not None
    want = own_rows(store, done.ts, columns)
    assert delta_rs_rows(root, version, columns) == want, f"delta-rs at version {version} (ts {done.ts})"
    assert duckdb_rows(con, root, version, columns) == want, f"DuckDB at version {version} (ts {done.ts})"


def test_every_published_version_reads_as_the_store_at_its_ts_in_delta_rs_and_duckdb(tmp_path: Path) -> None:
    rng = random.Random(51)
    store = Store.open(tmp_path / "s", options=StoreOptions(row_group_rows=64))
    store.put_schema(DB, T1.to_json())
    up = Upstream(store)
    publisher = Publisher(store.root)
    con = duckdb_with_delta()
    columns = ["id", "name", "price"]
    up.commit([(h, f"seed{h}") for h in range(2_000)])
    store.flush()
    rounds: list[Round] = []
    kinds: set[str] = set()
    for n in range(12):
        for _ in range(rng.randint(1, 3)):
            handles = rng.sample(range(2_400), rng.randint(1, 400))
            up.commit([(h, None if rng.random() < 0.2 else f"r{n}-{h}") for h in handles])
            store.flush()
        if n % 4 == 3:
            store.compact(force=True)   # stable parts: named in place, with their vectors
        if n == 8:                      # ADD COLUMN qty INT DEFAULT 7: older files must read 7
            store.put_schema(DB, T2.to_json(), commit_ts=up.ts())
            up.table = T2
            columns = ["id", "name", "price", "qty"]
            up.commit([(5, "after the column")])
            store.flush()
        done = publisher.publish()
        rounds.append(done)
        assert done.tables[0].version == n
        check_round(store, con, done, columns)
        for log in sorted((table_root(store.root, T1.id) / "_delta_log").glob("*.json")):
            for line in log.read_text().splitlines():
                dv = json.loads(line).get("add", {}).get("deletionVector")
                if dv:
                    kinds.add(dv["storageType"])
        if n == 0:  # a round with nothing new commits no version; the last one still holds its ts
            again = publisher.publish(publisher.resolved_ts())
            assert again.tables[0].version is None
    assert kinds == {"i", "u"}, f"deletion vectors stored as {kinds}: both inline and file vectors must be read"
    # rounds after a compaction read only the parts flushed since: the stable part's vector is
    # the last round's plus the handles they touch (files.deleted_rows_after)
    assert any(0 < r.tables[0].parts_read < r.tables[0].files for r in rounds), [(r.tables[0].parts_read, r.tables[0].files) for r in rounds]
    # every version is still read as its ts was, after all the later rounds and compactions
    for done in rounds[-4:]:
        check_round(store, con, done, columns)
    # version 10 has a checkpoint: with the JSON versions before it gone, the readers rebuild
    # versions 10 and 11 from the checkpoint alone (a copy of the table: the store keeps its log)
    root = table_root(store.root, T1.id)
    assert (root / "_delta_log" / "00000000000000000010.checkpoint.parquet").is_file()
    assert json.loads((root / "_delta_log" / "_last_checkpoint").read_text())["version"] == 10
    copy = tmp_path / "checkpointed"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("p[0-9]*"))
    for sub in root.glob("p[0-9]*"):
        (copy / sub.name).symlink_to(sub)
    for version in range(10):
        (copy / "_delta_log" / f"{version:020d}.json").unlink()
    for done in rounds[10:]:
        want = own_rows(store, done.ts, columns)
        version = rounds.index(done)
        assert delta_rs_rows(copy, version, columns) == want
        assert duckdb_rows(con, copy, version, columns) == want
    # each version says its ts, exactly, and Delta's own time order follows it
    history = [(v.version, v.ts) for v in versions_at(store.root)]
    assert history[0][1] == rounds[-1].ts
    assert main(["delta", "verify", str(store.root)]) == 0
    store.close()


def test_a_damaged_deletion_vector_or_log_file_fails_verify_naming_the_file(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    store = Store.open(tmp_path / "s", options=StoreOptions(row_group_rows=64))
    store.put_schema(DB, T1.to_json())
    up = Upstream(store)
    up.commit([(h, f"seed{h}") for h in range(3_000)])
    store.flush()
    store.compact(force=True)
    up.commit([(h, f"new{h}") for h in range(0, 3_000, 2)])   # 1,500 superseded rows: a vector in a file
    store.flush()
    Publisher(store.root).publish()
    store.close()
    root = table_root(tmp_path / "s", T1.id)
    (vector_file,) = root.glob("deletion_vector_*.bin")
    assert main(["delta", "verify", str(tmp_path / "s")]) == 0
    # the publication's files are not the store's strays: a clean store with Delta tables verifies clean
    assert main(["store", "verify", str(tmp_path / "s")]) == 0
    capsys.readouterr()

    data = bytearray(vector_file.read_bytes())
    data[40] ^= 0x01
    vector_file.write_bytes(bytes(data))
    assert main(["delta", "verify", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert str(vector_file) in err and "CRC-32" in err
    assert main(["store", "verify", str(tmp_path / "s")]) == 1
    assert str(vector_file) in capsys.readouterr().out
    data[40] ^= 0x01
    vector_file.write_bytes(bytes(data))

    log = root / "_delta_log" / "00000000000000000000.json"
    log.write_text(log.read_text().replace('"add":{', '"add":{{', 1))
    assert main(["delta", "verify", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert str(log) in err and "not JSON" in err


def test_files_a_published_version_names_outlive_compaction_while_it_is_retained(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", options=StoreOptions(row_group_rows=64, removed_file_retention_s=0))
    store.put_schema(DB, T1.to_json())
    up = Upstream(store)
    up.commit([(h, f"seed{h}") for h in range(500)])
    store.flush()
    store.compact(force=True)
    up.commit([(h, f"new{h}") for h in range(0, 500, 3)])
    store.flush()
    publisher = Publisher(store.root)
    first = publisher.publish()
    want = own_rows(store, first.ts, ["id", "name"])
    up.commit([(h, None) for h in range(0, 500, 5)])
    store.flush()
    store.compact(force=True)           # the parts version 0 names are removed from the manifest ...
    store.delete_obsolete_files()       # ... but the round's lease keeps their files
    later = publisher.publish()
    assert later.tables[0].version == 1
    root = table_root(store.root, T1.id)
    assert delta_rs_rows(root, 0, ["id", "name"]) == want
    assert delta_rs_rows(root, 1, ["id", "name"]) == own_rows(store, later.ts, ["id", "name"])
    store.close()


@pytest.mark.parametrize("codec, in_place", [("lz4", False), ("zstd", True)])
def test_a_part_with_an_lz4_dictionary_page_is_converted_for_spark_and_a_zstd_one_named_in_place(
        tmp_path: Path, codec: str, in_place: bool) -> None:
    store = Store.open(tmp_path / "s", options=StoreOptions(part_compression=codec))
    store.put_schema(DB, T1.to_json())
    up = Upstream(store)
    up.commit([(h, ("red", "green", "blue")[h % 3]) for h in range(3_000)])  # repeating: dictionary-encoded
    store.flush()
    store.compact(force=True)
    done = Publisher(store.root).publish()
    (pub,) = done.tables
    assert pub.files == 1 and pub.converted == (0 if in_place else 1)
    log = delta_log.replay(table_root(store.root, T1.id))
    (path,) = log.files
    assert path.startswith("p" if in_place else "lake/")
    assert delta_rs_rows(table_root(store.root, T1.id), 0, ["id", "name"]) == own_rows(store, done.ts, ["id", "name"])
    store.close()


def test_log_cleanup_keeps_the_versions_of_the_retention_from_a_checkpoint_and_drops_unnamed_files(tmp_path: Path) -> None:
    rng = random.Random(7)
    store = Store.open(tmp_path / "s", options=StoreOptions(row_group_rows=64))
    store.put_schema(DB, T1.to_json())
    up = Upstream(store)
    # a retention of 0: each checkpoint cuts the log at itself (every 3rd version)
    publisher = Publisher(store.root, retention_s=0, checkpoint_interval=3)
    con = duckdb_with_delta()
    columns = ["id", "name"]
    up.commit([(h, f"seed{h}") for h in range(1_000)])
    store.flush()
    rounds: list[Round] = []
    for n in range(11):
        up.commit([(h, None if rng.random() < 0.2 else f"r{n}") for h in rng.sample(range(1_200), 200)])
        store.flush()
        if n % 4 == 2:
            store.compact(force=True)
        rounds.append(publisher.publish())
        if n == 5:  # converted deltas of rounds 3-5, compacted away at round 6, cut at version 6
            early = set((table_root(store.root, T1.id) / "lake").glob("*.parquet"))
    root = table_root(store.root, T1.id)
    assert early and not all(p.exists() for p in early), "no converted file was deleted by the cleanup"
    kept = sorted(int(p.name[:20]) for p in (root / "_delta_log").glob("*.json"))
    assert kept == [9, 10], kept           # cut at the checkpoint of version 9
    assert sorted(p.name for p in (root / "_delta_log").glob("*.checkpoint.parquet")) == [
        "00000000000000000009.checkpoint.parquet"]
    for version in (9, 10):
        want = own_rows(store, rounds[version].ts, columns)
        assert delta_rs_rows(root, version, columns) == want
        assert duckdb_rows(con, root, version, columns) == want
    # every file the publication wrote is named by a kept version; the others were deleted
    named = named_files(root, 9, 10)
    written = {p.relative_to(root).as_posix() for p in [*(root / "lake").glob("*.parquet"), *root.glob("deletion_vector_*.bin")]}
    assert written <= named and written
    # a new publisher (a new process) starts from the checkpoint and goes on
    up.commit([(1, "after the cut")])
    store.flush()
    again = Publisher(store.root).publish()
    assert again.tables[0].version == 11
    assert delta_rs_rows(root, 11, columns) == own_rows(store, again.ts, columns)
    assert main(["delta", "verify", str(store.root)]) == 0
    assert [v.version for v in versions_at(store.root, rounds[9].ts)] == [9]
    store.close()


def test_a_schema_change_committed_after_the_round_s_ts_is_not_in_that_round_s_version(tmp_path: Path) -> None:
    # The writer applies a DDL event as soon as it reads it, before the store's resolved ts passes
    # the DDL's commit ts: a round at a ts below it must publish the schema in force at its ts
    # (here: without the column added after it), and the next round past it the new one, with the
    # column's default in the files written before it.
    store = Store.open(tmp_path / "s", options=StoreOptions(row_group_rows=64))
    store.put_schema(DB, T1.to_json())
    up = Upstream(store)
    publisher = Publisher(store.root)
    up.commit([(h, f"seed{h}") for h in range(300)])
    store.flush()
    store.put_schema(DB, T2.to_json(), commit_ts=up.ts() + (1000 << 18))   # ADD COLUMN qty, a second ahead
    before = publisher.publish()
    root = table_root(store.root, T1.id)
    log = delta_log.replay(root)
    assert [f["name"] for f in json.loads(log.schema_string)["fields"]] == ["id", "name", "price"]
    assert delta_rs_rows(root, 0, ["id", "name", "price"]) == own_rows(store, before.ts, ["id", "name", "price"])
    up.now_ms += 2000                     # commits after the DDL's ts: the new schema
    up.table = T2
    up.commit([(5, "after the column")])
    store.flush()
    after = publisher.publish()
    assert after.tables[0].version == 1
    columns = ["id", "name", "price", "qty"]
    want = own_rows(store, after.ts, columns)
    assert {r[3] for r in want} == {7, 100}
    assert delta_rs_rows(root, 1, columns) == want
    assert duckdb_rows(duckdb_with_delta(), root, 1, columns) == want
    store.close()
