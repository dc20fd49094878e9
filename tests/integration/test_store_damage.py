"""Nothing damaged is ever served: a corruption sweep over every kind of file a store holds.

A store of one table (100 accounts over three regions) holds one partition with a stable part
(Parquet, the oldest), and two delta parts (Arrow IPC, the middle and the newest). Each part in turn,
then the manifest, is damaged — one byte flipped (near the start, in the middle, near the end),
sixteen bytes flipped, truncated, deleted — and every read path is tried on it:

* the store's own read (``Store.scan_table``), a read session (``open_read_session`` / ``read_stream``,
  what the Spark source and the service run), the HTTP and Flight front ends of ``theflash serve``,
  ``theflash scan --read``: each fails with the store's typed error naming the file, never a row of the
  damaged part (whatever a read returned before failing is checked row for row against the truth);
* ``theflash store verify`` exits 1 naming the file.

The file is put back after each case, and the store reads whole again."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flash_rig import FlashRig, wait_for
from pyspark_theflash.cli import main as theflash
from pyspark_theflash.scan.session import open_read_session, read_stream
from pyspark_theflash.service import serve
from pyspark_theflash.store import ManifestDamagedError, PartFileError, Store, StoreError
from pyspark_theflash.store import manifest as mf
from pyspark_theflash.upstream.tidb import make_column, record_key
from service_client import FlightReader, HttpReader

TABLE = "bank.accounts"
ACCOUNTS = 100


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FlashRig, int, dict[int, int]]]:
    """The rig (writer stopped), the snapshot ts every read uses, and the balances at it."""
    rig = FlashRig(tmp_path_factory.mktemp("damage"))
    table = rig.cluster.create_table(TABLE, [make_column("id", "BIGINT", not_null=True),
                                             make_column("balance", "BIGINT")], primary_key=["id"])
    for region in (1, 2):
        rig.cluster.split_at(record_key(table, region * ACCOUNTS // 3))
    balances = {i: 1000 for i in range(ACCOUNTS)}
    with rig.cluster.txn() as t:
        for i in range(ACCOUNTS):
            t.insert(TABLE, {"id": i, "balance": balances[i]})
    rig.start_writer(interval_s=0.05)
    rig.wait_replicated(TABLE)
    ts = rig.cluster.get_ts()
    assert balances_of(rig.read_at(rig.store, TABLE, ts)) == balances
    rig.stop_writer()
    with Store.open(rig.store) as store:  # the initial load becomes the stable part
        store.compact(force=True)
    rig.start_writer(interval_s=0.05)
    for step in range(2):  # each update is flushed as a delta part of its own
        with rig.cluster.txn() as t:
            for i in range(step, ACCOUNTS, 7):
                balances[i] += 10 * (step + 1)
                t.update(TABLE, {"id": i, "balance": balances[i]})
        ts = rig.cluster.get_ts()
        assert balances_of(rig.read_at(rig.store, TABLE, ts)) == balances
    rig.stop_writer()
    kinds = [p[1] for p in live_parts(rig.store)]
    assert kinds == ["stable", "delta", "delta"], kinds
    yield rig, ts, balances
    rig.close()


def balances_of(t: pa.Table) -> dict[int, int]:
    return dict(zip(t.column("id").to_pylist(), t.column("balance").to_pylist()))


def live_parts(store: str) -> list[tuple[str, str]]:
    conn = mf.connect(store, create=False)
    try:
        return [(str(f), str(k)) for f, k in conn.execute(
            "SELECT file, kind FROM parts WHERE removed_version IS NULL ORDER BY part_id")]
    finally:
        conn.close()


# -- damage ----------------------------------------------------------------------------------------

def flip(at: Callable[[int], int], count: int = 1) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        data = bytearray(path.read_bytes())
        start = at(len(data))
        for i in range(start, min(len(data), start + count)):
            data[i] ^= 0x5A
        with open(path, "r+b") as f:  # in place, as a disk or a stray write would
            f.write(bytes(data))
    return damage


def truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size * 2 // 3)


def delete(path: Path) -> None:
    path.unlink()


PART_DAMAGE: dict[str, Callable[[Path], None]] = {
    "one byte near the start": flip(lambda n: 9),
    "one byte in the middle": flip(lambda n: n // 2),
    "one byte near the end": flip(lambda n: n - 12),
    "sixteen bytes in the middle": flip(lambda n: n // 2, 16),
    "truncated": truncate,
    "deleted": delete,
}


@contextlib.contextmanager
def damaged(path: Path, damage: Callable[[Path], None]) -> Iterator[None]:
    original = path.read_bytes()
    damage(path)
    try:
        yield
    finally:
        path.write_bytes(original)


# -- read paths --------------------------------------------------------------------------------------

def rows_before_failure(batches: Iterator[pa.RecordBatch], expect: type[BaseException]) -> tuple[list[pa.RecordBatch], BaseException]:
    got: list[pa.RecordBatch] = []
    with pytest.raises(expect) as failure:
        for b in batches:
            got.append(b)
    return got, failure.value


def assert_true_rows(batches: list[pa.RecordBatch], balances: dict[int, int]) -> None:
    """Rows a read returned before it failed are rows of the truth, never of the damaged part."""
    for b in batches:
        for i, balance in balances_of(pa.Table.from_batches([b])).items():
            assert balances[i] == balance, (i, balance)


def store_read(rig: FlashRig, ts: int) -> Iterator[pa.RecordBatch]:
    with Store.open(rig.store, readonly=True) as store:
        yield from store.scan(TABLE, ts)


def session_read(rig: FlashRig, ts: int) -> Iterator[pa.RecordBatch]:
    with open_read_session(rig.store, TABLE, snapshot_ts=ts, options={"upstream": rig.upstream}) as s:
        for n in range(len(s.streams)):
            yield from read_stream(s, n)


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = theflash(list(argv))
    return code, out.getvalue(), err.getvalue()


def check_every_read_path(rig: FlashRig, ts: int, balances: dict[int, int], service: Any, rel: str,
                          error: type[BaseException]) -> None:
    name = Path(rel).name
    for read in (store_read, session_read):
        got, exc = rows_before_failure(read(rig, ts), error)
        assert name in str(exc), str(exc)
        assert_true_rows(got, balances)
    # HTTP: the session opens (or fails typed), each stream answers the typed error, never a row
    http = HttpReader(service.http_url)
    status, session = http.json("POST", "/v1/read-sessions", {"table": TABLE, "snapshot_ts": ts, "store": rig.store})
    if status == 201:
        for s in session["streams"]:
            code, _, body = http.request("GET", s["url"])
            assert code == 500, (code, body[:300])
            answer = json.loads(body)["error"]
            assert answer["code"] == "store_damaged" and name in answer["message"], answer
        assert http.request("DELETE", f"/v1/read-sessions/{session['id']}")[0] == 204
    else:
        assert status == 500 and session["error"]["code"] == "store_damaged", session
        assert name in session["error"]["message"], session
    # Flight
    reader = FlightReader(service.flight_location)
    try:
        with pytest.raises(flight.FlightError) as failure:
            reader.read({"table": TABLE, "snapshot_ts": ts, "store": rig.store})
        assert str(failure.value).startswith("store_damaged") and name in str(failure.value), str(failure.value)
    finally:
        reader.close()
    code, _out, err = cli("scan", TABLE, "--store", rig.store, "--snapshot-ts", str(ts), "--read",
                          "--upstream", rig.upstream)
    assert code == 2 and name in err and "Traceback" not in err, err
    code, out, err = cli("store", "verify", rig.store)
    assert code == 1 and rel in out, out + err


@pytest.fixture(scope="module")
def service(bank: tuple[FlashRig, int, dict[int, int]]) -> Iterator[Any]:
    rig = bank[0]
    with serve(any_store=True, upstream=rig.upstream) as running:
        yield running


@pytest.mark.parametrize("which", ["oldest (stable, Parquet)", "middle (delta, Arrow IPC)", "newest (delta, Arrow IPC)"])
@pytest.mark.parametrize("how", list(PART_DAMAGE))
def test_a_damaged_part_fails_every_read_path_typed_and_verify_names_it(bank, service, which: str, how: str) -> None:
    rig, ts, balances = bank
    rel = live_parts(rig.store)[["oldest", "middle", "newest"].index(which.split()[0])][0]
    with damaged(Path(rig.store) / rel, PART_DAMAGE[how]):
        check_every_read_path(rig, ts, balances, service, rel, PartFileError)
    assert balances_of(rig.read_at(rig.store, TABLE, ts)) == balances  # put back: whole again
    assert cli("store", "verify", rig.store)[0] == 0


def checkpoint(store: str) -> None:
    """Fold the manifest's write-ahead log into manifest.db, so the damage below is the whole manifest."""
    conn = sqlite3.connect(str(Path(store) / mf.MANIFEST_FILE))
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


MANIFEST_DAMAGE: dict[str, Callable[[Path], None]] = {
    "one byte of the header": flip(lambda n: 3),
    "one byte of the first page's b-tree": flip(lambda n: 100),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 3]),
}


@pytest.mark.parametrize("how", list(MANIFEST_DAMAGE))
def test_a_damaged_manifest_fails_every_read_path_typed_and_verify_names_it(bank, service, how: str) -> None:
    rig, ts, balances = bank
    checkpoint(rig.store)
    with damaged(Path(rig.store) / mf.MANIFEST_FILE, MANIFEST_DAMAGE[how]):
        for read in (store_read, session_read):
            with pytest.raises(StoreError) as failure:
                list(read(rig, ts))
            assert mf.MANIFEST_FILE in str(failure.value), str(failure.value)
        status, answer = HttpReader(service.http_url).json(
            "POST", "/v1/read-sessions", {"table": TABLE, "snapshot_ts": ts, "store": rig.store})
        assert status == 500 and answer["error"]["code"] == "store_damaged", answer
        assert mf.MANIFEST_FILE in answer["error"]["message"]
        code, _out, err = cli("scan", TABLE, "--store", rig.store, "--snapshot-ts", str(ts), "--read",
                              "--upstream", rig.upstream)
        assert code == 2 and mf.MANIFEST_FILE in err and "Traceback" not in err, err
        code, out, err = cli("store", "verify", rig.store)
        assert code == 1 and mf.MANIFEST_FILE in out, out + err
    assert balances_of(rig.read_at(rig.store, TABLE, ts)) == balances


def test_a_part_written_before_checksums_reads_and_verifies_as_before(bank) -> None:
    """A store whose parts have no recorded checksum (written before they were recorded) reads
    whole, and verify checks it for size, rows and order."""
    rig, ts, balances = bank
    conn = sqlite3.connect(str(Path(rig.store) / mf.MANIFEST_FILE))
    try:
        saved = conn.execute("SELECT part_id, checksum FROM parts").fetchall()
        conn.execute("UPDATE parts SET checksum = NULL")
        conn.commit()
        assert balances_of(pa.Table.from_batches(list(store_read(rig, ts)))) == balances
        code, out, _ = cli("store", "verify", rig.store, "--json")
        report = json.loads(out)
        assert code == 0 and report["without_checksum"] == 3 and report["checksums_checked"] == 0
        # a size change is still caught without a checksum
        rel = live_parts(rig.store)[1][0]
        with damaged(Path(rig.store) / rel, truncate):
            with pytest.raises(PartFileError, match="bytes, the manifest recorded"):
                list(store_read(rig, ts))
    finally:
        conn.executemany("UPDATE parts SET checksum = ? WHERE part_id = ?", [(c, p) for p, c in saved])
        conn.commit()
        conn.close()


# -- every page of the manifest ----------------------------------------------------------------------
#
# A copy of the compacted store, with four bytes of manifest.db flipped: on every page at the places
# SQLite's own structure lives (the b-tree page header, its cell pointer array, the start of its first
# cell; an overflow or freelist page's pointers), on page 1 in the database header and inside the
# schema's text (the `leases` table's `expires_at`, issue 38's case), and in the middle of every page
# (often unused space, or a row's value). `store verify` must name manifest.db for every structural
# flip; every reader fails with ManifestDamagedError naming the file (SQLite's integrity_check of the
# pages before a view reads them, manifest.check_pages: a damaged index or table page that SQLite walks
# without an error would hide rows or hand back NULLs), or - a flip that neither SQLite's
# integrity_check nor the schema check can see, and that no read meets - returns exactly the rows of
# the undamaged copy.

FLIPPED = 4


def structural_offsets(data: bytes, page_size: int) -> list[tuple[int, str]]:
    """(offset, what) of the places on each page of ``data`` that SQLite's own structure holds."""
    out: list[tuple[int, str]] = [(0, "page 1: the file's magic string"), (28, "page 1: the database size in pages"),
                                  (44, "page 1: the schema format")]
    leases = data.find(b"CREATE TABLE leases")
    out.append((data.find(b"expires_at", leases), "the schema's text: leases.expires_at"))
    for page in range(len(data) // page_size):
        base = page * page_size
        header = base + (100 if page == 0 else 0)
        kind = data[header]
        label = f"page {page + 1}"
        if kind in (2, 5, 10, 13):  # a b-tree page: interior (12-byte header) or leaf (8)
            pointers = header + (12 if kind in (2, 5) else 8)
            cells = int.from_bytes(data[header + 3:header + 5], "big")
            out.append((header, f"{label}: b-tree page header"))
            if cells:
                out.append((pointers, f"{label}: cell pointer array"))
                out.append((base + int.from_bytes(data[pointers:pointers + 2], "big"), f"{label}: its first cell"))
        else:  # an overflow page (next page, then content) or a freelist page (next trunk, count, leaves)
            out.append((base, f"{label}: next-page pointer"))
    return out


def middle_offsets(data: bytes, page_size: int) -> list[tuple[int, str]]:
    return [(page * page_size + page_size // 2, f"page {page + 1}: its middle")
            for page in range(len(data) // page_size)]


def damaged_copy(source: Path, manifest: bytes, at: int, into: Path, mask: int = 0x5A) -> Path:
    """A copy of the store at ``source`` whose manifest.db is ``manifest`` with FLIPPED bytes at ``at``
    flipped by ``mask`` (a directory of its own: SQLite shares open files of one path within a process)."""
    shutil.copytree(source, into, ignore=shutil.ignore_patterns(f"{mf.MANIFEST_FILE}*"))
    data = bytearray(manifest)
    for i in range(at, min(len(data), at + FLIPPED)):
        data[i] ^= mask
    (into / mf.MANIFEST_FILE).write_bytes(bytes(data))
    return into


def reads_of(store: str, rig: FlashRig, ts: int) -> dict[str, Callable[[], dict[int, int]]]:
    """Every reader of the store, each returning the balances it read."""
    def whole(batches: Iterator[pa.RecordBatch]) -> dict[int, int]:
        return balances_of(pa.Table.from_batches(list(batches)))

    def store_scan() -> dict[int, int]:
        with Store.open(store, readonly=True) as opened:
            return whole(opened.scan(TABLE, ts))

    def read_session() -> dict[int, int]:
        with open_read_session(store, TABLE, snapshot_ts=ts, options={"upstream": rig.upstream}) as s:
            return whole(b for n in range(len(s.streams)) for b in read_stream(s, n))

    return {"Store.scan": store_scan, "read session": read_session}


def test_bytes_flipped_on_any_page_of_the_manifest_are_named_by_verify_and_never_read(bank, tmp_path) -> None:
    rig, ts, balances = bank
    checkpoint(rig.store)
    source = tmp_path / "compacted"
    shutil.copytree(rig.store, source)
    manifest = (source / mf.MANIFEST_FILE).read_bytes()
    page_size = int.from_bytes(manifest[16:18], "big")
    assert len(manifest) // page_size >= 10 and not (source / f"{mf.MANIFEST_FILE}-wal").stat().st_size
    total = str(sum(balances.values()))
    cases = [(at, what, True) for at, what in structural_offsets(manifest, page_size)] + \
            [(at, what, False) for at, what in middle_offsets(manifest, page_size)]
    for n, (at, what, structural) in enumerate(cases):
        store = str(damaged_copy(source, manifest, at, tmp_path / f"case-{n}"))
        named = str(Path(store) / mf.MANIFEST_FILE)
        code, out, err = cli("store", "verify", store)
        assert code in (0, 1) and "Traceback" not in err, (what, out + err)
        found = code == 1
        assert not found or f"{mf.MANIFEST_FILE}: " in out, (what, out)
        assert found or not structural, (what, "verify passed a structural flip", out + err)
        refused = 0
        for reader, read in reads_of(store, rig, ts).items():
            try:
                got = read()
            except ManifestDamagedError as exc:  # anything else (UnknownTableNameError, TypeError) fails the test
                assert named in str(exc), (what, reader, str(exc))
                assert found, (what, reader, "a reader met damage that verify passed", str(exc))
                refused += 1
                continue
            assert got == balances, (what, reader, "read other rows than the undamaged copy")
        code, out, err = cli("scan", TABLE, "--store", store, "--snapshot-ts", str(ts), "--read",
                             "--sum", "balance", "--json", "--upstream", rig.upstream)
        assert "Traceback" not in err, (what, err)
        if code == 0:
            answer = json.loads(out)
            assert (answer["rows"], answer["sum"]) == (ACCOUNTS, total), (what, answer)
        else:
            assert code == 2 and found and err.startswith("theflash scan: ") and named in err, (what, err)
        if refused == 2 and code == 2:
            # every path refused the copy and closed what it opened on the way: no descriptor
            # names it (a read that succeeds keeps its store's latch handle for the next read)
            assert not open_descriptors_under(store), (what, open_descriptors_under(store))
        shutil.rmtree(store)


def open_descriptors_under(directory: str) -> list[str]:
    """The files under ``directory`` this process holds open (Linux's /proc/self/fd)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
        if target.startswith(directory.rstrip("/") + "/"):
            found.append(target)
    return found


def test_the_schema_check_names_what_a_damaged_schema_page_lost(bank, tmp_path) -> None:
    """Issue 38's case: the schema's text of `leases` renamed its `expires_at`: SQLite opens the
    manifest and runs every query that does not name the column; the schema check refuses it."""
    rig, ts, _ = bank
    checkpoint(rig.store)
    manifest = (Path(rig.store) / mf.MANIFEST_FILE).read_bytes()
    at = manifest.find(b"expires_at", manifest.find(b"CREATE TABLE leases"))
    store = damaged_copy(Path(rig.store), manifest, at, tmp_path / "copy", mask=0x01)  # still letters: it parses
    with pytest.raises(ManifestDamagedError, match="table leases has no column expires_at") as failure:
        Store.open(str(store), readonly=True)
    assert str(store / mf.MANIFEST_FILE) in str(failure.value)
    with pytest.raises(ManifestDamagedError, match="table leases has no column expires_at"):
        Store.open(str(store))  # a writer neither: it would create what is missing, empty
    code, out, _ = cli("store", "verify", str(store))
    assert code == 1 and "manifest.db: " in out and "expires_at" in out, out


def live_part_indexed_as_removed(manifest: bytes, store: str) -> tuple[bytes, int, int, int]:
    """``manifest`` with one byte of a `parts_live` entry changed: the row id of the lowest live part
    becomes a removed part's (a well-formed index that lists a removed part as live); the byte's
    offset, the live and the removed part's id."""
    conn = sqlite3.connect(str(Path(store) / mf.MANIFEST_FILE))
    try:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'parts_live'").fetchone()[0]
        live = conn.execute("SELECT MIN(part_id) FROM parts WHERE removed_version IS NULL").fetchone()[0]
        removed = conn.execute("SELECT MIN(part_id) FROM parts WHERE removed_version IS NOT NULL").fetchone()[0]
    finally:
        conn.close()
    assert live < 128 and removed is not None and removed < 128  # row ids of one byte: one byte to change
    data = bytearray(manifest)
    page_size = int.from_bytes(data[16:18], "big")
    base = (root - 1) * page_size
    assert data[base] == 10  # an index leaf page: every entry is on it
    cells = [base + int.from_bytes(data[base + 8 + 2 * i:base + 10 + 2 * i], "big")
             for i in range(int.from_bytes(data[base + 3:base + 5], "big"))]
    # a cell: its payload's size (one byte here), then the record, whose last byte is the row id
    entry = next(c + data[c] for c in cells if data[c + data[c]] == live)
    data[entry] = removed
    return bytes(data), entry, live, removed


def test_an_index_entry_flipped_to_another_row_is_refused_by_readers_and_named_by_verify(bank, tmp_path) -> None:
    """One flipped byte of a `parts_live` entry's row id leaves the index a well-formed b-tree that
    lists a removed part where a live one was: SQLite's quick_check passes it, and a read through the
    index would read the removed part's rows. Readers check every index against its table
    (integrity_check, once per state of the file) and refuse the manifest naming it; so does verify."""
    rig, ts, _ = bank
    checkpoint(rig.store)
    manifest, entry, live, removed = live_part_indexed_as_removed(
        (Path(rig.store) / mf.MANIFEST_FILE).read_bytes(), rig.store)
    store = damaged_copy(Path(rig.store), manifest, entry, tmp_path / "copy", mask=0)  # as changed above
    conn = sqlite3.connect(str(store / mf.MANIFEST_FILE))
    try:
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        assert removed in [r[0] for r in conn.execute(
            "SELECT part_id FROM parts INDEXED BY parts_live WHERE table_id = (SELECT table_id FROM parts "
            "WHERE part_id = ?) AND removed_version IS NULL", (live,))]
    finally:
        conn.close()
    named = str(store / mf.MANIFEST_FILE)
    for reader, read in reads_of(str(store), rig, ts).items():
        with pytest.raises(ManifestDamagedError, match="integrity_check") as failure:
            read()
        assert named in str(failure.value), (reader, str(failure.value))
    code, out, _ = cli("store", "verify", str(store))
    assert code == 1 and "manifest.db: " in out and "parts_live" in out, out


def test_a_manifest_damaged_after_a_reader_passed_it_is_refused_at_its_next_view(bank, tmp_path) -> None:
    """A pass of the page check is remembered per state of manifest.db, not per store: a write into
    the file after a reader's view passed it (a stray write, here the index entry above) has the
    reader's next view check again and refuse it."""
    rig, ts, balances = bank
    checkpoint(rig.store)
    store = tmp_path / "copy"
    shutil.copytree(rig.store, store)
    manifest, entry, _, _ = live_part_indexed_as_removed((store / mf.MANIFEST_FILE).read_bytes(), str(store))
    with Store.open(str(store), readonly=True) as opened:
        assert balances_of(pa.Table.from_batches(list(opened.scan(TABLE, ts)))) == balances
        assert balances_of(pa.Table.from_batches(list(opened.scan(TABLE, ts)))) == balances  # a pass reused
        with open(store / mf.MANIFEST_FILE, "r+b") as f:  # in place, as a stray write would
            f.seek(entry)
            f.write(manifest[entry:entry + 1])
        with pytest.raises(ManifestDamagedError, match="integrity_check") as failure:
            list(opened.scan(TABLE, ts))
        assert str(store / mf.MANIFEST_FILE) in str(failure.value)


def test_a_text_value_of_the_manifest_that_is_no_longer_utf8_is_a_damaged_manifest(bank, tmp_path) -> None:
    """Issue 52's case: four bytes flipped inside a table info (the table's name in its JSON) leave
    SQLite's pages whole, but the value is no longer UTF-8. `store verify` and `scan --read` ended in
    a UnicodeDecodeError; each must say, in one line naming manifest.db, that the manifest is damaged."""
    rig, ts, _balances = bank
    checkpoint(rig.store)
    source = tmp_path / "clean"
    shutil.copytree(rig.store, source)
    manifest = (source / mf.MANIFEST_FILE).read_bytes()
    with sqlite3.connect(str(source / mf.MANIFEST_FILE)) as conn:  # the value the flip lands in is a table info
        infos = [info for (info,) in conn.execute("SELECT info FROM tables")]
    assert any('"accounts"' in info for info in infos), infos
    at = manifest.find(b'"accounts"') + 1
    assert at > 0
    store = damaged_copy(source, manifest, at, tmp_path / "flipped", mask=0x80)  # ASCII to lone UTF-8 lead bytes
    named = str(store / mf.MANIFEST_FILE)
    with pytest.raises(ManifestDamagedError, match="not UTF-8") as failure:
        with Store.open(str(store), readonly=True) as opened:
            list(opened.scan(TABLE, ts))
    assert named in str(failure.value)
    code, out, err = cli("store", "verify", str(store))
    assert code == 1 and "Traceback" not in err, out + err
    assert [line for line in out.splitlines() if mf.MANIFEST_FILE in line and "not UTF-8" in line], out
    code, out, err = cli("scan", TABLE, "--store", str(store), "--snapshot-ts", str(ts), "--read",
                         "--upstream", rig.upstream)
    assert code == 2 and "Traceback" not in err, err
    assert err.startswith("theflash scan: ") and named in err and len(err.strip().splitlines()) == 1, err
