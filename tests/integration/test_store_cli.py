"""``theflash store status|compact|gc|verify`` on real stores built from a generated stream."""
from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mvcc_model import DB, TABLE_NAME, MvccModel, StreamSpec, batches, generate_stream, rows_from_batches
from pyspark_theflash.binlog.position import Position
from pyspark_theflash.cli import main
from pyspark_theflash.store import Store

QUALIFIED = f"{DB}.{TABLE_NAME}"


@pytest.fixture(scope="module")
def built_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MvccModel, int, int]:
    """A store with stable and delta parts, several regions, and the model of what it holds.
    Returns (dir, model, last ts, events)."""
    stream = generate_stream(5, StreamSpec(steps=150))
    model = MvccModel(stream.values)
    root = tmp_path_factory.mktemp("cli") / "store"
    store = Store.open(str(root))
    store.put_schema(DB, stream.table)
    cuts = batches(stream.events, random.Random(5), max_size=12)
    for i, (start, end) in enumerate(cuts):
        store.write(stream.events[start:end], Position(0, end))
        model.apply(stream.events[start:end])
        store.flush()
        if i == len(cuts) // 2:
            store.compact(force=True)
    store.close()
    return root, model, stream.last_ts, len(stream.events)


@pytest.fixture()
def built(built_once: tuple[Path, MvccModel, int, int], tmp_path: Path) -> tuple[Path, MvccModel, int, int]:
    """A private copy of the built store (tests corrupt it), with a private model."""
    root, model, last_ts, n_events = built_once
    copy = tmp_path / "store"
    shutil.copytree(root, copy)
    return copy, copy_model(model), last_ts, n_events


def copy_model(model: MvccModel) -> MvccModel:
    import copy

    return copy.deepcopy(model)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["store", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def live_part_files(root: Path) -> list[Path]:
    from pyspark_theflash.store import manifest as mf

    conn = mf.connect(root, create=False)
    try:
        files = [r[0] for r in conn.execute("SELECT file FROM parts WHERE removed_version IS NULL ORDER BY part_id")]
    finally:
        conn.close()
    return [root / f for f in files]


def scan_latest(root: Path, ts: int) -> list[dict]:
    store = Store.open(str(root), readonly=True)
    try:
        return rows_from_batches(store.scan(QUALIFIED, ts, hidden=("_tidb_rowid",)))
    finally:
        store.close()


def test_status_shows_regions_tables_parts_and_position(built, capsys) -> None:
    root, model, last_ts, n_events = built
    code, out, _ = run_cli(capsys, "status", str(root))
    assert code == 0
    assert f"binlog position 0:{n_events}" in out
    assert f"table {DB}.{TABLE_NAME} (id 100" in out
    assert out.count("partition ") >= 1
    code, out, _ = run_cli(capsys, "status", str(root), "--json")
    status = json.loads(out)
    assert status["position"] == f"0:{n_events}"
    live = [r for r in status["regions"] if r["state"] == "normal"]
    assert {r["region_id"] for r in live} == set(model.regions)
    assert {r["state"] for r in status["regions"]} <= {"normal", "merged", "removed"}
    for r in live:
        assert r["applied_index"] == model.regions[r["region_id"]].applied_index
    (table,) = status["tables"]
    assert table["stable_parts"] >= 1 and table["delta_parts"] >= 1
    assert table["rows"] >= len(model.read(last_ts))
    assert table["bytes"] == sum(p.stat().st_size for p in live_part_files(root))


def record_as_written(root: Path, victim: Path) -> None:
    """Record ``victim``'s present size and checksum in the manifest, as a writer that wrote it so
    would have: what verify then finds is the content, not damage."""
    from pyspark_theflash.store import manifest as mf
    from pyspark_theflash.store.integrity import file_checksum

    conn = mf.connect(root, create=False)
    try:
        with mf.transaction(conn):
            conn.execute("UPDATE parts SET bytes = ?, checksum = ? WHERE file = ?",
                         (victim.stat().st_size, file_checksum(victim), victim.relative_to(root).as_posix()))
    finally:
        conn.close()


def test_verify_reports_a_clean_store_clean(built, capsys) -> None:
    root, *_ = built
    code, out, _ = run_cli(capsys, "verify", str(root))
    assert code == 0, out
    assert "clean" in out
    code, out, _ = run_cli(capsys, "verify", str(root), "--json")
    report = json.loads(out)
    assert report["clean"] and report["parts_checked"] == len(live_part_files(root))


def test_verify_knows_the_writers_pid_file(built, capsys) -> None:
    from pyspark_theflash.writer.daemon import write_pid_file

    root, *_ = built
    write_pid_file(root)  # what a running writer keeps beside the manifest
    code, out, _ = run_cli(capsys, "verify", str(root))
    assert code == 0 and "clean" in out, out
    (root / "writer.pid").unlink()


def test_verify_reports_a_corrupted_part_with_its_file(built, capsys) -> None:
    root, *_ = built
    victim = live_part_files(root)[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64  # same size, garbage inside
    victim.write_bytes(bytes(data))
    truncated = live_part_files(root)[-1]
    truncated.write_bytes(truncated.read_bytes()[:-10])
    code, out, err = run_cli(capsys, "verify", str(root))
    assert code == 1
    rel_trunc = truncated.relative_to(root).as_posix()
    assert rel_trunc in out and "bytes, the manifest says" in out
    assert victim.relative_to(root).as_posix() in out
    assert "what to do" in out and "problem(s)" in err


def test_verify_reports_missing_parts_stray_and_temporary_files(built, capsys) -> None:
    root, *_ = built
    missing = live_part_files(root)[0]
    missing.unlink()
    (missing.parent / "stable-deadbeef.parquet").write_bytes(b"PAR1 orphan")
    (missing.parent / "delta-0123.parquet.tmp-999").write_bytes(b"half written")
    code, out, _ = run_cli(capsys, "verify", str(root), "--json")
    assert code == 1
    problems = json.loads(out)["problems"]
    by_file = {p["file"]: p["what"] for p in problems}
    rel = missing.relative_to(root).as_posix()
    assert "file is missing" in by_file[rel]
    assert "stray file" in by_file[(missing.parent / "stable-deadbeef.parquet").relative_to(root).as_posix()]
    assert "temporary file" in by_file[(missing.parent / "delta-0123.parquet.tmp-999").relative_to(root).as_posix()]
    assert all(p["action"] for p in problems)


def test_verify_finds_an_unsorted_part(built, capsys) -> None:
    import pyarrow.parquet as pq

    root, *_ = built
    for victim in live_part_files(root):
        table = pq.read_table(victim)
        if table.num_rows > 1:
            break
    reversed_rows = table.take(list(range(table.num_rows - 1, -1, -1)))
    pq.write_table(reversed_rows, victim)
    record_as_written(root, victim)  # a writer bug, not damage: the checksum matches
    code, out, _ = run_cli(capsys, "verify", str(root))
    assert code == 1
    assert "not sorted by (_tidb_rowid, _tidb_commit_ts)" in out


def test_compact_merges_delta_parts_and_keeps_the_rows(built, capsys) -> None:
    root, model, last_ts, _ = built
    code, out, _ = run_cli(capsys, "compact", str(root), "--table", QUALIFIED)
    assert code == 0, out
    assert "compacted" in out
    code, out, _ = run_cli(capsys, "status", str(root), "--json")
    (table,) = json.loads(out)["tables"]
    assert table["delta_parts"] == 0 and table["stable_parts"] >= 1
    assert scan_latest(root, last_ts) == model.read(last_ts)
    assert run_cli(capsys, "verify", str(root))[0] == 0


def test_gc_moves_the_safe_point_and_drops_old_versions(built, capsys) -> None:
    root, model, last_ts, _ = built
    _, out, _ = run_cli(capsys, "status", str(root), "--json")
    rows_before = json.loads(out)["total"]["rows"]
    code, out, _ = run_cli(capsys, "gc", str(root), "--safe-point", str(last_ts))
    assert code == 0, out
    _, out, _ = run_cli(capsys, "status", str(root), "--json")
    status = json.loads(out)
    assert status["gc_safe_point"] == last_ts
    model.gc(last_ts)
    # at the safe point every key keeps one version at most, and deleted keys none
    assert status["total"]["rows"] == model.version_count() < rows_before
    assert scan_latest(root, last_ts) == model.read(last_ts)


def test_commands_on_a_directory_that_is_no_store_fail_clearly(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pyspark_theflash", "store", "verify", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "not a store" in result.stderr and str(tmp_path) in result.stderr


def test_verify_finds_a_part_whose_columns_differ_from_its_schema_version(built, capsys) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, *_ = built
    victim = live_part_files(root)[0]
    table = pq.read_table(victim)
    name = "i" if "i" in table.column_names else "c2"   # a Parquet part names column i (id 2) c2
    at = table.schema.get_field_index(name)
    pq.write_table(table.set_column(at, pa.field(name, pa.int64()), table.column(name).cast(pa.int64())), victim)
    record_as_written(root, victim)
    code, out, _ = run_cli(capsys, "verify", str(root))
    assert code == 1
    assert "differ from schema version 1" in out and f"{name} int64" in out


def test_compact_and_gc_refuse_while_a_writer_holds_the_latch(built, capsys) -> None:
    from pyspark_theflash import latch as latch_box

    root, *_ = built
    latch = latch_box.connect(str(root))
    holder = latch.acquire_write_latch("writer job under test", 60)
    try:
        for argv in (("compact", str(root)), ("gc", str(root), "--safe-point", "1")):
            code, out, err = run_cli(capsys, *argv)
            assert code == 2
            assert "already has a writer" in err and "writer job under test" in err
    finally:
        latch.release(holder.token)
        latch.close()
    assert run_cli(capsys, "compact", str(root))[0] == 0  # released: it runs


def test_verify_finds_overlapping_regions_in_the_manifest(built, capsys) -> None:
    from pyspark_theflash.store import manifest as mf

    root, *_ = built
    conn = mf.connect(root, create=False)
    try:
        with mf.transaction(conn):
            (rid,) = conn.execute("SELECT region_id FROM regions WHERE state = 'normal' AND end_key != x'' "
                                  "ORDER BY start_key LIMIT 1").fetchone()
            conn.execute("UPDATE regions SET end_key = x'' WHERE region_id = ?", (rid,))
    finally:
        conn.close()
    code, out, _ = run_cli(capsys, "verify", str(root))
    assert code == 1
    assert f"regions {rid} (ends at +inf)" in out and "overlap" in out


def test_status_and_verify_handle_clustered_common_handle_tables(tmp_path: Path, capsys) -> None:
    import store_events as se
    from pyspark_theflash.store import StoreOptions

    c = se.codes_table()
    root = tmp_path / "codes"
    store = Store.open(str(root), options=StoreOptions(partition_max_rows=3))
    store.put_schema(se.DB, c.to_json())
    codes = ["a", "b", "bb", "c", "d", "e"]
    for i, code in enumerate(codes):
        store.write([se.event(1, i + 1, [se.committed(se.common_key(c, code.encode()), se.row(c, code=code, qty=i),
                                                       100 + i)])], Position(0, i + 1))
        store.flush()
    store.compact(force=True)  # more than 3 rows: the partition splits on a binary handle
    store.close()
    code, out, _ = run_cli(capsys, "verify", str(root))
    assert code == 0, out
    code, out, _ = run_cli(capsys, "status", str(root), "--json")
    (table,) = json.loads(out)["tables"]
    assert len(table["partitions"]) >= 2
    assert any(str(p["hi"]).startswith("0x") for p in table["partitions"])
    assert run_cli(capsys, "status", str(root))[0] == 0
