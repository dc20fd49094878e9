"""A store whose stable parts live on shared storage (``StoreOptions.parts_remote``, ``writer run
--parts-to``; store/remote.py), here another directory (the S3 server's turn is
test_store_parts_s3.py): the same commits applied to it and to a store on local disk alone read
the same at every ts, while its local disk keeps no stable part beyond the cache's bound; a read
fetches what it needs, checked; another process finds the location in the manifest; a removed
part's object goes with its file; a damaged object fails the read and ``store verify`` naming it;
a store given a location uploads its parts first and keeps that location; a failed upload lists
nothing and leaves nothing."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from one_region_writes import COLUMNS, T1, own_rows, same_commits
from pyspark_theflash.store import PartChecksumError, Store, StoreOptions
from pyspark_theflash.store import manifest as mf
from pyspark_theflash.store.remote import RemoteLocationError
from pyspark_theflash.store.verify import verify_store

OPTIONS = StoreOptions(row_group_rows=64, part_compression="zstd", removed_file_retention_s=0)


def listed_stable(store: Store) -> set[str]:
    conn = store.thread_connection()
    return {r[0] for r in conn.execute(
        "SELECT file FROM parts WHERE file LIKE '%.parquet' AND removed_version IS NULL")}


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet")}


def test_a_store_with_its_parts_in_another_directory_reads_as_one_on_local_disk(tmp_path: Path) -> None:
    remote_dir = tmp_path / "remote"
    local = Store.open(tmp_path / "local", options=OPTIONS)
    shared = Store.open(tmp_path / "shared", options=replace(OPTIONS, parts_remote=str(remote_dir),
                                                             local_parts_bytes=0))
    tss = same_commits([local, shared], 8, seed=71)
    live = listed_stable(shared)
    assert live, "no stable part was written"
    # every listed stable part is in the location at its own path, byte for byte the one written;
    # the removed ones went with their files; the local disk keeps none (a cache of 0 bytes)
    assert files_under(remote_dir) == live
    assert files_under(shared.root) == set()
    # every ts reads exactly what the local store reads, the parts fetched as needed
    for ts in tss:
        assert own_rows(shared, ts) == own_rows(local, ts), f"at ts {ts}"
    assert files_under(shared.root) == live, "the reads did not fetch the parts into the local cache"
    assert verify_store(shared.root).problems == []
    shared.delete_obsolete_files()
    assert files_under(shared.root) == set(), "the cache was not bounded again"
    # another process finds the location in the manifest and reads through it
    want = own_rows(local, tss[-1])
    read = subprocess.run(
        [sys.executable, "-c", "import json, sys; from pyspark_theflash.store import Store; "
         "s = Store.open(sys.argv[1], readonly=True); "
         f"t = s.scan_table({T1.id}, int(sys.argv[2]), columns={COLUMNS!r}).sort_by('id'); "
         "print(json.dumps([list(r.values()) for r in t.to_pylist()]))", str(shared.root), str(tss[-1])],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[2])
    assert [tuple(r) for r in json.loads(read.stdout)] == want

    # a damaged object: the read fails naming it, nothing of it is cached, verify names it too
    shared.delete_obsolete_files()
    victim = sorted(live)[0]
    obj = remote_dir / victim
    good = obj.read_bytes()
    obj.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])
    with pytest.raises(PartChecksumError) as failed:
        own_rows(shared, tss[-1])
    assert str(obj) in str(failed.value) and "\n" not in str(failed.value)
    assert not (shared.root / victim).exists() and not list(shared.root.rglob("*.fetch-*"))
    problems = verify_store(shared.root).problems
    assert [p.file for p in problems] == [victim] and str(obj) in problems[0].what
    obj.write_bytes(good)
    assert own_rows(shared, tss[-1]) == want
    # a damaged copy in the local cache (a crash tore it, the disk changed it) is fetched again
    cached = shared.root / victim
    copy = cached.read_bytes()
    cached.write_bytes(copy[:100] + bytes([copy[100] ^ 1]) + copy[101:])
    assert own_rows(shared, tss[-1]) == want
    assert cached.read_bytes() == good
    obj.unlink()
    problems = verify_store(shared.root).problems
    assert [p.file for p in problems] == [victim] and "is missing" in problems[0].what
    obj.write_bytes(good)
    local.close()
    shared.close()


def test_a_store_given_a_location_uploads_its_parts_first_and_keeps_that_location(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", options=OPTIONS)
    tss = same_commits([store], 4, seed=3)
    before = own_rows(store, tss[-1])
    parts = listed_stable(store)
    store.close()
    first, second = tmp_path / "first", tmp_path / "second"
    store = Store.open(tmp_path / "s", options=replace(OPTIONS, parts_remote=str(first), local_parts_bytes=0))
    assert files_under(first) == parts
    assert mf.get_meta(store.thread_connection(), "parts_remote") == str(first)
    store.delete_obsolete_files()
    assert files_under(store.root) == set()
    assert own_rows(store, tss[-1]) == before
    store.close()
    with pytest.raises(RemoteLocationError) as refused:
        Store.open(tmp_path / "s", options=replace(OPTIONS, parts_remote=str(second)))
    message = str(refused.value)
    assert str(first) in message and str(second) in message and "\n" not in message
    assert not second.exists()
    # an object a compaction uploaded just before its process died (unlisted) goes when the
    # writer opens the store again; a Delta publication's files there stay
    stray = first / "tables" / str(T1.id) / "p1" / "stable-0123456789abcdef.parquet"
    published = first / "tables" / str(T1.id) / "_delta_log" / "00000000000000000000.json"
    for path in (stray, published):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    store = Store.open(tmp_path / "s", options=OPTIONS)  # no option: the manifest's location
    assert store.remote is not None and store.remote.uri == str(first)
    assert not stray.exists() and published.exists()
    assert files_under(first) == parts
    store.close()


def test_a_compaction_whose_upload_fails_lists_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    remote_dir = tmp_path / "remote"
    store = Store.open(tmp_path / "s", options=replace(OPTIONS, parts_remote=str(remote_dir)))
    same_commits([store], 1, seed=5)
    version = mf.current_version(store.thread_connection())
    parts = listed_stable(store)
    blocker = remote_dir / "tables" / str(T1.id)
    shutil.rmtree(blocker, ignore_errors=True)
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the table's directory goes: every upload under it fails")
    with pytest.raises(OSError):
        store.compact(force=True)
    assert listed_stable(store) == parts, "a part was listed without its object"
    assert not [p for p in store.root.rglob("stable-*") if str(p.relative_to(store.root)) not in parts]
    assert mf.current_version(store.thread_connection()) == version
    blocker.unlink()
    store.compact(force=True)
    assert files_under(remote_dir) == listed_stable(store)
    store.close()
