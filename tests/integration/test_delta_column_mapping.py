"""Column mapping by id: a Delta table of the replica names the store's stable part in place
through RENAME COLUMN, DROP COLUMN and a re-add of the dropped column's name (TiDB gives it a new
id), with no conversion, and delta-rs and DuckDB read exactly TheFlash's rows at every version;
a stable part written before parts named columns by id (TiDB names, no Parquet field ids) still
reads right in the store and is converted by the publication, and a table published before column
mapping turns it on at its next version with its older version reading as it did. (delta-spark
reads the same rounds in tests/spark/test_delta_spark_column_mapping.py.)"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq

from delta_column_mapping_rounds import (
    T1,
    T2,
    Upstream,
    check_json_schema,
    own_rows,
    publish_across_turning_column_mapping_on,
    publish_through_column_changes,
    rewrite_part_as_before_ids,
)
from delta_checksum_checks import check_checksum
from delta_readers import delta_rs_rows, duckdb_rows, duckdb_with_delta
from pyspark_theflash.lake import delta_log
from pyspark_theflash.lake.publish import Publisher, table_root
from pyspark_theflash.store import Store, StoreOptions
from store_events import DB


def test_rename_drop_and_re_add_name_the_stable_part_in_place_and_every_version_reads_as_theflash(
        tmp_path: Path) -> None:
    published = publish_through_column_changes(tmp_path / "s")
    stable = published.stable_path
    # versions 0-3 name the part written before the changes, in place: never converted
    assert [stable in parts for parts in published.store_parts[:4]] == [True] * 4
    part_id = _part_id(tmp_path / "s", stable)
    assert not [p.name for p in (published.root / "lake").glob(f"part-{part_id}-*")]
    # what a round names converted is only the deltas (Arrow IPC), none at the first round and
    # after the last compaction: one more a round
    assert published.converted == [0, 1, 2, 3, 0]
    # ... each converted once: the DROP (a column more in the file, which readers skip) and the
    # re-add (a column less, NULL by default) name the earlier conversion as it is
    converted = sorted(p.name for p in (published.root / "lake").glob("part-*.parquet"))
    assert len(converted) == 3 and len({name.split("-")[1] for name in converted}) == 3, converted
    # the compacted part of the last version keeps the dropped column (c3, readable as of older
    # versions) beside the re-added one (c4): named in place too, the readers skip c3
    assert published.store_parts[4] and stable not in published.store_parts[4]
    names = pq.read_schema(published.root / published.store_parts[4][0]).names
    assert sorted(names[:4]) == ["c1", "c2", "c3", "c4"]
    check_json_schema(published)
    con = duckdb_with_delta()
    for version, columns, want in published.versions:
        assert delta_rs_rows(published.root, version, columns) == want, f"delta-rs at version {version}"
        assert duckdb_rows(con, published.root, version, columns) == want, f"DuckDB at version {version}"
        check_checksum(published.root, version, con)   # through RENAME, DROP and the re-add
    # the re-added price reads NULL in the rows written before it, whatever the old price was
    _, _, rows = published.versions[3]
    assert rows[1] == (1, "seed1", None) and any(r[2] is not None for r in rows)


def _part_id(store: Path, rel: str) -> int:
    conn = sqlite3.connect(store / "manifest.db")
    try:
        (part_id,) = conn.execute("SELECT part_id FROM parts WHERE file = ?", (f"tables/{T1.id}/{rel}",)).fetchone()
    finally:
        conn.close()
    return int(part_id)


def test_a_part_written_before_ids_reads_right_and_is_converted_and_new_parts_are_named_in_place(
        tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s", options=StoreOptions(row_group_rows=64, part_compression="zstd"))
    store.put_schema(DB, T1.to_json())
    up = Upstream(store)
    up.commit([(h, {"name": f"seed{h}", "price": f"{h}.25"}) for h in range(200)])
    store.flush()
    store.compact(force=True)
    with store.snapshot() as view:
        (old,) = [p.path for p in view.parts(T1.id)]
    ts = up.commit([])
    want = own_rows(store, ts, ["id", "name", "price"])
    store.close()
    rewrite_part_as_before_ids(tmp_path / "s", old)
    names = pq.read_schema(tmp_path / "s" / old).names
    assert names[:3] == ["id", "name", "price"]

    store = Store.open(tmp_path / "s", options=StoreOptions(row_group_rows=64, part_compression="zstd"))
    up.store = store
    assert own_rows(store, ts, ["id", "name", "price"]) == want
    up.ddl(T2)                                    # a RENAME: the old part is read by its schema version's names
    up.commit([(7, {"title": "after", "price": "2.00"})])
    store.flush()
    publisher = Publisher(store.root)
    done = publisher.publish()
    (pub,) = done.tables
    assert pub.converted == 2                     # the old part and the delta
    root = table_root(store.root, T1.id)
    columns = ["id", "title", "price"]
    want = own_rows(store, done.ts, columns)
    assert want[7][1] == "after" and want[8][1] == "seed8"
    assert delta_rs_rows(root, 0, columns) == want
    assert duckdb_rows(duckdb_with_delta(), root, 0, columns) == want
    up.commit([(9, {"title": "before compaction", "price": "3.00"})])
    store.flush()
    store.compact(force=True)                     # the new stable part names columns by id: in place
    done = publisher.publish()
    assert done.tables[0].version == 1 and done.tables[0].converted == 0
    assert delta_rs_rows(root, 1, columns) == own_rows(store, done.ts, columns)
    store.close()


def test_a_table_published_before_column_mapping_turns_it_on_at_its_next_version(tmp_path: Path) -> None:
    published = publish_across_turning_column_mapping_on(tmp_path / "s")
    # version 1 converts the part version 0 named in place by TiDB names, and the delta
    assert published.converted == [1, 2]
    log = delta_log.replay(published.root)
    assert "columnMapping" in log.protocol["readerFeatures"]
    assert log.metadata["configuration"]["delta.columnMapping.mode"] == "id"
    con = duckdb_with_delta()
    for version, columns, want in published.versions:   # version 0 reads as it did (mode none)
        assert delta_rs_rows(published.root, version, columns) == want, f"delta-rs at version {version}"
        assert duckdb_rows(con, published.root, version, columns) == want, f"DuckDB at version {version}"
