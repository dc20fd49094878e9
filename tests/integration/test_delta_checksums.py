"""Every version the publisher commits has its version checksum (``_delta_log/<v>.crc``,
PROTOCOL.md "Version Checksum File"), and it is exact: at every version of a table taken through
upserts and deletes (deletion vectors inline and in files, rewritten round after round),
compactions (files removed), a column added with a default (every older file converted: removed
and added again), checkpoints, the log cleanup cutting the log at each of them, and new
publishers (a restart) building on a log that starts at a checkpoint, the checksum's
``tableSizeBytes`` and ``numFiles`` equal delta-rs's own count of the version's files, its
deletion vector counts add up to DuckDB's row count, and its metadata and protocol are the
log's own actions. A damaged checksum fails ``theflash delta verify`` naming the file."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from pyspark_theflash.cli import main
from pyspark_theflash.lake import delta_log
from pyspark_theflash.lake.checkpoint import write_checkpoint
from pyspark_theflash.lake.checksum import (
    checksum_name,
    deleted_records_bin,
    read_checksum,
    version_checksum,
    write_checksum,
)
from pyspark_theflash.lake.publish import Publisher, table_root
from pyspark_theflash.store import Store, StoreOptions
from delta_readers import duckdb_with_delta
from delta_checksum_checks import check_checksum
from items_upstream import T1, T2, Upstream
from store_events import DB

def test_every_version_s_checksum_equals_an_independent_count_of_its_files(tmp_path: Path) -> None:
    rng = random.Random(51)
    store = Store.open(tmp_path / "s", options=StoreOptions(row_group_rows=64))
    store.put_schema(DB, T1.to_json())
    up = Upstream(store)
    # a checkpoint every 4th version, each cutting the log at itself (a retention of 0)
    publisher = Publisher(store.root, retention_s=0, checkpoint_interval=4)
    root = table_root(store.root, T1.id)
    con = duckdb_with_delta()
    up.commit([(h, f"seed{h}") for h in range(2_000)])
    store.flush()
    seen: dict[str, int] = {"removes": 0, "dv_rewrites": 0, "inline": 0, "file": 0}
    sizes: list[tuple[int, int]] = []
    for n in range(14):
        for _ in range(rng.randint(1, 3)):
            up.commit([(h, None if rng.random() < 0.2 else f"r{n}-{h}") for h in rng.sample(range(2_400), rng.randint(1, 400))])
            store.flush()
        if n % 4 == 2:
            store.compact(force=True)             # files removed, stable parts added
        if n == 7:                                # ADD COLUMN with a default: every file converted again
            store.put_schema(DB, T2.to_json(), commit_ts=up.ts())
            up.table = T2
            up.commit([(5, "after the column")])
            store.flush()
        if n in (5, 10):                          # a restart: a new publisher builds on the log as it is
            publisher = Publisher(store.root, retention_s=0, checkpoint_interval=4)
        done = publisher.publish()
        version = done.tables[0].version
        assert version == n
        crc = check_checksum(root, version, con)
        sizes.append((crc["numFiles"], crc["tableSizeBytes"]))
        for line in (root / "_delta_log" / f"{version:020d}.json").read_text().splitlines():
            action = json.loads(line)
            if "remove" in action:
                seen["removes"] += 1
                seen["dv_rewrites"] += "deletionVector" in action["remove"]
            dv = action.get("add", {}).get("deletionVector")
            if dv:
                seen["inline" if dv["storageType"] == "i" else "file"] += 1
    assert all(seen.values()), seen
    assert len(set(sizes)) > 3, sizes
    log_dir = root / "_delta_log"
    # the cleanup cut the log at the checkpoint of version 12, the checksums before it too
    assert sorted(p.name for p in log_dir.glob("*.crc")) == [checksum_name(v) for v in (12, 13)]
    assert sorted(int(p.name[:20]) for p in log_dir.glob("*.json")) == [12, 13]
    # the checkpoint's state (a fresh replay from it) gives the same checksum as the JSON replay did
    replayed = delta_log.replay(root, upto=12)
    assert replayed.version == 12 and version_checksum(replayed) == read_checksum(root, 12)
    assert main(["delta", "verify", str(store.root)]) == 0
    store.close()


def _one_version_published(tmp_path: Path) -> tuple[Store, Path, delta_log.TableLog]:
    """A store of one table, 300 rows, published once: (the store, the table's root, its log)."""
    store = Store.open(tmp_path / "s", options=StoreOptions(row_group_rows=64))
    store.put_schema(DB, T1.to_json())
    Upstream(store).commit([(h, f"seed{h}") for h in range(300)])
    store.flush()
    Publisher(store.root).publish()
    root = table_root(store.root, T1.id)
    return store, root, delta_log.replay(root)


def test_a_checksum_is_written_after_its_version_and_never_over_another(tmp_path: Path) -> None:
    store, root, state = _one_version_published(tmp_path)
    crc_path = root / "_delta_log" / checksum_name(0)
    first = crc_path.read_bytes()
    # put-if-absent: a second write of version 0's checksum leaves the first as it was
    crc_path.write_bytes(first.replace(b'"numFiles":', b'"numFiles":1', 1))
    assert write_checksum(state) is False
    assert crc_path.read_bytes() != first
    # ... and `theflash delta verify` names the wrong one
    assert main(["delta", "verify", str(store.root)]) == 1
    crc_path.unlink()
    assert write_checksum(state) is True and crc_path.read_bytes() == first
    assert main(["delta", "verify", str(store.root)]) == 0
    store.close()


def test_a_log_the_state_cannot_reconcile_as_the_protocol_gets_no_checksum(tmp_path: Path) -> None:
    store, root, state = _one_version_published(tmp_path)
    (data,) = state.files.values()
    # a version (by another writer) adding the same path with a vector, the first add not removed:
    # PROTOCOL.md keeps both logical files; a state by path cannot count them
    add = data.add_action()["add"]
    add["deletionVector"] = {"storageType": "i", "pathOrInlineDv": "wi5b=000010000siXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L",
                             "sizeInBytes": 40, "cardinality": 6}
    commit_info = {"commitInfo": {"timestamp": state.in_commit_ms + 1, "inCommitTimestamp": state.in_commit_ms + 1,
                                  "theflashTs": state.ts + 1, "operation": "WRITE"}}
    delta_log.commit(state, [commit_info, {"add": add}])
    later = delta_log.replay(root, state)
    assert later.version == 1 and not later.reconciled
    assert version_checksum(later) is None and write_checksum(later) is False
    assert not (root / "_delta_log" / checksum_name(1)).exists()
    store.close()


@pytest.mark.parametrize("count, expected", [(0, 0), (1, 1), (9, 1), (10, 2), (99, 2), (100, 3), (9_999_999, 7),
                                             (10_000_000, 8), (2_147_483_646, 8), (2_147_483_647, 9), (1 << 40, 9)])
def test_deleted_record_counts_fall_in_the_spec_s_bins(count: int, expected: int) -> None:
    assert deleted_records_bin(count) == expected


def test_a_checkpoint_keeps_the_live_txn_the_log_has(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", options=StoreOptions(row_group_rows=64))
    store.put_schema(DB, T1.to_json())
    up = Upstream(store)
    up.commit([(h, f"seed{h}") for h in range(100)])
    store.flush()
    Publisher(store.root).publish()
    root = table_root(store.root, T1.id)
    state = delta_log.replay(root)
    write_checkpoint(state)
    from_checkpoint = delta_log.from_checkpoint(root, 0)
    assert from_checkpoint.txns == state.txns == {"theflash": {"appId": "theflash", "version": state.ts,
                                                               "lastUpdated": state.in_commit_ms}}
    store.close()
