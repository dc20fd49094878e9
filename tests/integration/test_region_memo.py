"""The views of one ``Store`` at one manifest version share its live regions, read once
(``store.views.RegionMemo``): a plan's two views read 10,000 region rows once, not twice. A
manifest edit that changes a region makes a new version, and a view at it reads them again."""
from __future__ import annotations

from pathlib import Path

import pytest

from pyspark_theflash.store import Store
from pyspark_theflash.store import manifest as mf
from store_events import DB, boundary, committed, event, items_table, key, region, resolved_ts, row, split_event

T = items_table(100)


def split_store(path: Path) -> list[int]:
    """``shop.items`` over regions 1, 9 and 4 (ids in no key order), resolved at 200."""
    with Store.open(path) as store:
        store.put_schema(DB, T.to_json())
        store.write([event(1, 1, [committed(key(T, h), row(T, id=h, name=f"t{h}"), 100) for h in range(30)])])
        store.write([split_event(1, 2, [region(1, b"", boundary(T, 10), 2), region(9, boundary(T, 10), boundary(T, 20), 2),
                                        region(4, boundary(T, 20), b"", 2)])])
        store.write([resolved_ts(rid, 3, 200) for rid in (1, 9, 4)])
        store.flush()
    return [1, 9, 4]


def test_the_views_of_one_manifest_version_read_its_regions_once(tmp_path: Path) -> None:
    ids = split_store(tmp_path / "store")
    with Store.open(tmp_path / "store", readonly=True) as s:
        with s.snapshot() as first, s.snapshot() as second:
            assert first.version == second.version
            assert first.region_columns() is second.region_columns()
            assert first.region_columns().ids.tolist() == ids == [r.id for r in first.regions()]  # key order
        with Store.open(tmp_path / "store") as writer:  # a new version: its regions are read again
            writer.write([resolved_ts(9, 4, 205)])
            writer.flush()
        with s.snapshot() as third:
            assert third.version > first.version
            assert third.region_columns().resolved_ts.tolist() == [200, 205, 200]


def test_an_edit_of_regions_without_a_new_version_is_refused(tmp_path: Path) -> None:
    split_store(tmp_path / "store")
    conn = mf.connect(tmp_path / "store", create=False)
    try:
        with pytest.raises(ValueError, match="new manifest version"):
            mf.apply_edit(conn, mf.ManifestEdit(bump=False, resolved=[(9, 201)]))
        with pytest.raises(ValueError, match="new manifest version"):
            mf.apply_edit(conn, mf.ManifestEdit(bump=False, regions=[(9, b"", b"", 3, 1, 5, 201, "normal", 0, 0)]))
    finally:
        conn.close()
