"""The pipelined flush, ``Store.flush(wait=False)``: a background thread writes the part files,
fsyncs them and commits the manifest edit while the caller applies the next batch.

A pending edit is held pending for real by another connection holding SQLite's write lock on
the manifest (``BEGIN IMMEDIATE``): the flush's background thread waits for it as it would for
any other writer of the manifest. What other processes see is read by a separate Python
process opening the store read-only.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from mvcc_model import DB, TABLE_NAME, MvccModel, StreamSpec, generate_stream, rows_from_batches
from polling import wait_for
from pyspark_theflash.binlog.position import Position
from pyspark_theflash.latch.local import LocalLatch
from pyspark_theflash.store import FlushFailedError, Store, StoreOptions
from pyspark_theflash.store.errors import StoreFencedError
from pyspark_theflash.store.manifest import manifest_path
from pyspark_theflash.store.verify import verify_store

STREAM = generate_stream(5, StreamSpec(steps=160, keys=40, max_regions=4))
CUTS = [len(STREAM.events) * i // 4 for i in range(5)]  # four batches (event indexes)

SEEN_BY_ANOTHER_PROCESS = """
import json, sys
from pyspark_theflash.store import Store
store = Store.open(sys.argv[1], readonly=True)
with store.snapshot() as view:
    conn = view.conn()
    parts = [r[0] for r in conn.execute("SELECT file FROM parts WHERE removed_version IS NULL ORDER BY file")]
    regions = {r.id: r.applied_index for r in view.regions(True)}
    locks = conn.execute("SELECT COUNT(*) FROM locks").fetchone()[0]
    print(json.dumps({"version": view.version, "position": view.position(), "parts": parts,
                      "regions": regions, "locks": locks}))
store.close()
"""


def seen_by_another_process(store_dir: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", SEEN_BY_ANOTHER_PROCESS, str(store_dir)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    seen: dict[str, Any] = json.loads(out.stdout)
    return seen


def files_on_disk(store_dir: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), store_dir).replace(os.sep, "/")
            for d, _dirs, files in os.walk(store_dir / "tables") for f in files}


def write_batch(store: Store, i: int) -> None:
    """Events CUTS[i] .. CUTS[i+1], the position after them."""
    store.write(STREAM.events[CUTS[i]:CUTS[i + 1]], Position(0, CUTS[i + 1]))


def model_after(events: int) -> MvccModel:
    model = MvccModel(STREAM.values)
    model.apply(STREAM.events[:events])
    return model


def assert_store_equals_model(store: Store, events: int) -> None:
    model = model_after(events)
    got = rows_from_batches(store.scan(f"{DB}.{TABLE_NAME}", STREAM.last_ts, hidden=("_tidb_rowid",)))
    assert got == model.read(STREAM.last_ts)


@pytest.fixture
def manifest_write_lock(tmp_path: Path) -> Iterator[Any]:
    """``hold()`` takes the manifest's write lock from another connection, ``release()`` lets
    it go (from any thread)."""

    class Lock:
        conn: sqlite3.Connection | None = None

        def hold(self) -> None:
            self.conn = sqlite3.connect(str(manifest_path(tmp_path / "store")), isolation_level=None,
                                        check_same_thread=False)
            self.conn.execute("BEGIN IMMEDIATE")

        def release(self) -> None:
            if self.conn is not None:
                self.conn.execute("COMMIT")
                self.conn.close()
                self.conn = None

    lock = Lock()
    yield lock
    lock.release()


def open_store(tmp_path: Path, **options: Any) -> Store:
    store = Store.open(str(tmp_path / "store"), options=StoreOptions(**options))
    store.put_schema(DB, STREAM.table)
    return store


def flushed_once(tmp_path: Path, **options: Any) -> tuple[Store, dict[str, Any]]:
    """A store with batch 0 applied and flushed, and what another process sees of it."""
    store = open_store(tmp_path, **options)
    write_batch(store, 0)
    store.flush()
    return store, seen_by_another_process(tmp_path / "store")


def test_another_process_sees_nothing_of_a_pending_flush_until_its_edit_commits(tmp_path: Path,
                                                                                manifest_write_lock: Any) -> None:
    store_dir = tmp_path / "store"
    store = open_store(tmp_path)
    try:
        write_batch(store, 0)
        store.flush()
        before = seen_by_another_process(store_dir)
        assert before["position"] == [0, CUTS[1]] and before["parts"]

        write_batch(store, 1)
        manifest_write_lock.hold()
        pending = store.flush(wait=False)
        assert not pending.done()
        # the background thread writes the flush's part files, but no manifest lists them:
        # nothing changed for readers
        wait_for(lambda: files_on_disk(store_dir) - set(before["parts"]), what="the flush's part files")
        assert seen_by_another_process(store_dir) == before
        # the caller goes on applying while the edit waits
        write_batch(store, 2)
        assert seen_by_another_process(store_dir) == before
        assert not pending.done()

        manifest_write_lock.release()
        result = pending.wait(timeout=60)
        after = seen_by_another_process(store_dir)
        assert result.version == after["version"] == before["version"] + 1
        assert after["position"] == [0, CUTS[2]]  # batch 2 is applied but not flushed
        assert set(before["parts"]) < set(after["parts"])
        assert_store_equals_model(store, CUTS[2])
        store.flush()
        assert_store_equals_model(store, CUTS[3])
    finally:
        store.close()


def assert_a_restarted_writer_replays(tmp_path: Path) -> None:
    """A writer reopening the store after a failed flush resumes from the persisted position
    (after batch 0) and replays batches 1 to 3 to the model's state."""
    store = open_store(tmp_path)
    try:
        with store.snapshot() as view:
            assert tuple(view.position()) == (0, CUTS[1])
        for i in (1, 2, 3):
            write_batch(store, i)
            store.flush(wait=False)
        store.sync()
        assert_store_equals_model(store, CUTS[4])
    finally:
        store.close()


def test_a_failed_background_step_is_raised_by_the_next_call_and_nothing_of_it_is_visible(
        tmp_path: Path, manifest_write_lock: Any) -> None:
    store_dir = tmp_path / "store"
    # the manifest edit gives up after 200 ms of waiting for SQLite's write lock: a real
    # failure of the background step ("database is locked")
    store, before = flushed_once(tmp_path, busy_timeout_ms=200)

    write_batch(store, 1)
    manifest_write_lock.hold()
    pending = store.flush(wait=False)
    wait_for(pending.done, what="the pipelined flush to give up")
    manifest_write_lock.release()
    with pytest.raises(FlushFailedError, match="database is locked") as failure:
        pending.wait()
    assert isinstance(failure.value.__cause__, sqlite3.OperationalError)
    assert store.failure is failure.value
    # every later call raises it: the store refuses writes
    with pytest.raises(FlushFailedError):
        write_batch(store, 2)
    with pytest.raises(FlushFailedError):
        store.flush()
    with pytest.raises(FlushFailedError):
        store.put_schema(DB, STREAM.table)
    with pytest.raises(FlushFailedError):
        store.snapshot()
    store.close()  # already reported: close does not raise it again

    # nothing of the failed flush is visible, and its files are gone
    assert seen_by_another_process(store_dir) == before
    assert files_on_disk(store_dir) == set(before["parts"])
    assert verify_store(store_dir).problems == []

    assert_a_restarted_writer_replays(tmp_path)


def test_a_flush_following_a_failed_one_fails_with_it_and_leaves_no_file(tmp_path: Path,
                                                                         manifest_write_lock: Any) -> None:
    store_dir = tmp_path / "store"
    store, before = flushed_once(tmp_path, busy_timeout_ms=3000)  # the first edit gives up after 3 s

    write_batch(store, 1)
    manifest_write_lock.hold()
    first = store.flush(wait=False)
    write_batch(store, 2)
    second = store.flush(wait=False)  # follows the first, which is still waiting
    wait_for(second.done, timeout_s=60, what="both flushes to give up")
    manifest_write_lock.release()
    with pytest.raises(FlushFailedError, match="database is locked") as failure:
        first.wait()
    with pytest.raises(FlushFailedError) as second_failure:
        second.wait()
    assert second_failure.value is failure.value is store.failure  # the first failure, reported once
    store.close()
    assert seen_by_another_process(store_dir) == before
    assert files_on_disk(store_dir) == set(before["parts"])  # the second's part files too are gone
    assert_a_restarted_writer_replays(tmp_path)


def test_a_flush_does_not_follow_while_another_edit_waits(tmp_path: Path, manifest_write_lock: Any) -> None:
    """A schema change (or compaction, GC) waiting for the edit lock gets its turn: the next
    pipelined flush waits for the lock instead of following the pending one."""
    store = open_store(tmp_path)
    try:
        write_batch(store, 0)
        store.flush()
        write_batch(store, 1)
        manifest_write_lock.hold()
        first = store.flush(wait=False)
        schema = threading.Thread(target=store.put_schema, args=(DB, STREAM.table))
        schema.start()
        wait_for(lambda: store.edit_lock.waiters == 1, what="the schema change to wait for the edit lock")
        write_batch(store, 2)
        second: list[Any] = []
        flusher = threading.Thread(target=lambda: second.append(store.flush(wait=False)))
        flusher.start()
        wait_for(lambda: not first.done() and flusher.is_alive(), what="the second flush to be called")
        assert not second  # it waits for the lock, behind the schema change
        manifest_write_lock.release()
        schema.join(timeout=60)
        flusher.join(timeout=60)
        first_version = first.wait(timeout=60).version
        # the schema change's edit and the second flush's come after the first, in either order
        assert second[0].wait(timeout=60).version in (first_version + 1, first_version + 2)
        assert not second[0]._followed  # it did not follow the pending flush
        store.sync()
        assert_store_equals_model(store, CUTS[3])
    finally:
        store.close()


def test_a_later_flush_follows_the_pending_one_and_edits_commit_in_order(tmp_path: Path,
                                                                        manifest_write_lock: Any) -> None:
    """A pipelined flush called while one is pending does not wait: its part files are written
    while the pending edit waits, and its edit commits right after. A third waits for the first
    (at most two in flight)."""
    store_dir = tmp_path / "store"
    store = open_store(tmp_path)
    try:
        write_batch(store, 0)
        store.flush()
        before = seen_by_another_process(store_dir)

        write_batch(store, 1)
        manifest_write_lock.hold()
        first = store.flush(wait=False)
        write_batch(store, 2)  # applying is not held up by the pending edit
        second = store.flush(wait=False)  # nor is the next flush
        assert not first.done() and not second.done() and second._followed
        written = wait_for(lambda: len(files_on_disk(store_dir) - set(before["parts"])) >= 2 and
                           files_on_disk(store_dir), what="both flushes' part files")
        assert seen_by_another_process(store_dir) == before

        third: list[Any] = []
        applied = threading.Event()

        def next_batch() -> None:
            write_batch(store, 3)
            applied.set()
            third.append(store.flush(wait=False))  # waits for the first edit

        thread = threading.Thread(target=next_batch)
        thread.start()
        wait_for(applied.is_set, what="the next batch to be applied")
        assert not first.done() and not second.done() and not third
        assert seen_by_another_process(store_dir) == before

        manifest_write_lock.release()
        thread.join(timeout=60)
        assert len(third) == 1
        results = [third[0].wait(timeout=60), second.wait(timeout=60), first.wait(timeout=60)][::-1]
        assert [r.version for r in results] == [before["version"] + i for i in (1, 2, 3)]
        # a done flush lets go of the one it followed: no chain of finished flushes stays alive
        assert second._predecessor is None and third[0]._predecessor is None
        assert [r.position for r in results] == [(0, CUTS[2]), (0, CUTS[3]), (0, CUTS[4])]
        after = seen_by_another_process(store_dir)
        assert after["position"] == [0, CUTS[4]]
        # the part files written while the first edit waited (under temporary names) are listed now
        assert {f.split(".tmp-")[0] for f in written} - set(before["parts"]) <= set(after["parts"])

        # nothing new: version 0, nothing edited; sync gives the last flush that had an edit
        empty = store.flush(wait=False)
        assert empty.done() and empty.wait().version == 0
        assert store.sync() == results[2]
        assert_store_equals_model(store, CUTS[4])
    finally:
        store.close()


def test_close_drains_a_pending_flush(tmp_path: Path, manifest_write_lock: Any) -> None:
    store_dir = tmp_path / "store"
    store = open_store(tmp_path)
    write_batch(store, 0)
    manifest_write_lock.hold()
    pending = store.flush(wait=False)
    assert not pending.done()
    releaser = threading.Thread(target=manifest_write_lock.release)
    releaser.start()
    store.close()
    releaser.join()
    assert pending.done()
    assert pending.wait().position == (0, CUTS[1])
    assert seen_by_another_process(store_dir)["position"] == [0, CUTS[1]]
    store = Store.open(str(store_dir))
    try:
        assert_store_equals_model(store, CUTS[1])
    finally:
        store.close()


def test_compaction_gc_and_status_wait_for_the_pending_edit(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    try:
        write_batch(store, 0)
        pending = store.flush(wait=False)
        status = store.status()  # taken after the edit: the flushed rows are counted
        assert pending.done()
        assert tuple(status["position"]) == (0, CUTS[1])
        write_batch(store, 1)
        pending = store.flush(wait=False)
        store.compact(force=True)
        assert pending.done()
        write_batch(store, 2)
        pending = store.flush(wait=False)
        store.gc(STREAM.first_ts)
        assert pending.done()
        assert_store_equals_model(store, CUTS[3])
    finally:
        store.close()


def test_a_flush_in_flight_when_the_write_latch_is_taken_over_commits_nothing(tmp_path: Path,
                                                                               manifest_write_lock: Any) -> None:
    """The writer's fence: a flush whose edit waits (here for SQLite's lock; for real, a writer
    stopped by SIGSTOP) while its latch expires and another takes it is refused at its commit,
    under the manifest's write lock, whatever check came before it."""
    store_dir = tmp_path / "store"
    store, before = flushed_once(tmp_path)
    latch, intruder = LocalLatch(store_dir), LocalLatch(store_dir)
    try:
        token = latch.acquire_write_latch("stalled writer", ttl_s=0.2).token
        store.set_fence(lambda: latch.check_holds(token))
        write_batch(store, 1)
        manifest_write_lock.hold()
        pending = store.flush(wait=False)
        wait_for(lambda: files_on_disk(store_dir) - set(before["parts"]), what="the flush's part files")
        wait_for(lambda: intruder.holder() is None, what="the stalled writer's latch to expire")
        intruder.acquire_write_latch("intruder", ttl_s=60)
        manifest_write_lock.release()
        with pytest.raises(StoreFencedError, match="write latch .* now held by intruder") as refused:
            pending.wait(timeout=60)
        assert store.failure is refused.value  # and no further write or edit
        with pytest.raises(StoreFencedError):
            write_batch(store, 2)
        store.close()
        assert seen_by_another_process(store_dir) == before
        assert files_on_disk(store_dir) == set(before["parts"])
        assert verify_store(store_dir).problems == []
    finally:
        latch.close()
        intruder.close()
    assert_a_restarted_writer_replays(tmp_path)
