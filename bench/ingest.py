"""Ingest the same change stream into TheFlash's store and into a Delta table (MERGE), side by side.

    .venv/bin/python bench/ingest.py                 # 1M upserts/deletes over 500k keys, 50k a batch
    .venv/bin/python bench/ingest.py --rows 200000   # a smaller run

The stream: ``--rows`` operations in batches of ``--batch``; each batch touches distinct keys
drawn from ``--keys`` handles, ``--delete-ratio`` of them deletes, the rest upserts of a row
(id BIGINT PRIMARY KEY, v BIGINT, x DOUBLE, s VARCHAR(16)).

* TheFlash: each batch is binlog events (per region, transactions of ``--txn-rows`` rows as
  COMMITTED 1PC rows, or PREWRITE + COMMIT with ``--two-phase``) given to ``Store.write`` and
  then ``Store.flush(wait=False)``, the pipelined flush the writer job uses: a background thread
  sorts and writes the batch's part files, fsyncs them and commits the manifest edit while the
  next batch is applied (a flush called while the previous one is in flight follows it: edits
  commit in order, at most two in flight). The clock stops after ``Store.sync()``, i.e. once
  the last batch is durable, so every timed row is as durable as with ``Store.flush()``;
  ``--no-pipeline`` flushes synchronously (``Store.flush()`` per batch). The events are built before the clock starts, in the columnar form the upstream
  emits (``RowBatch``), with NumPy writing the row values (TiDB row format v2) and
  record keys (checked byte for byte against the codec's own encoder, through the rows the
  first events read back as), so event construction is not timed.
* Delta: each batch is one Arrow table and one ``MERGE`` (matched & deleted -> delete, matched
  -> update all, not matched & not deleted -> insert all).

TheFlash is read once as flushed (delta parts) and again after ``Store.gc(last ts)`` (timed apart:
the writer runs GC and compaction in the background once upstream's safe point moves; it leaves
one stable part per partition with one version per key, which reads skip MVCC filtering for);
the latter is the figure compared. Then both are
read at their latest snapshot (``Store.scan_table`` -> one Arrow table; Delta's
``DeltaTable(path).to_pyarrow_table()``; best of five), compared row for row, and the figures are printed, ending with one
JSON line.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas  # noqa: F401  (pyarrow imports it on a first conversion: not inside the timed loops)
import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash.binlog import rows
from pyspark_theflash.binlog.position import Position
from pyspark_theflash.proto import binlog_pb2

DB = "bench"
TABLE = "kv"
TABLE_ID = 500
BASE_TS = 1_700_000_000_000 << 18  # a realistic TSO: 9-byte varints for every ts below
STRING_WIDTH = 16
ROW_VALUE_BYTES = 6 + 3 + 3 * 2 + 8 + 8 + STRING_WIDTH  # v2 header, ids, offsets, v, x, s


def table_info() -> dict[str, Any]:
    def col(cid: int, name: str, tp: int, flag: int, flen: int, dec: int, charset: str) -> dict[str, Any]:
        return {"id": cid, "name": {"O": name, "L": name}, "offset": cid - 1, "state": 5,
                "origin_default": None, "default": None,
                "type": {"Tp": tp, "Flag": flag, "Flen": flen, "Decimal": dec, "Charset": charset,
                         "Collate": "binary" if charset == "binary" else "utf8mb4_bin", "Elems": None}}

    return {
        "id": TABLE_ID, "name": {"O": TABLE, "L": TABLE}, "pk_is_handle": True, "is_common_handle": False,
        "schema_version": 1, "update_timestamp": 1, "state": 5, "charset": "utf8mb4", "collate": "utf8mb4_bin",
        "cols": [
            col(1, "id", 8, 1 | 2, 20, 0, "binary"),   # BIGINT NOT NULL PRIMARY KEY (the handle)
            col(2, "v", 8, 1, 20, 0, "binary"),        # BIGINT NOT NULL
            col(3, "x", 5, 1, 22, -1, "binary"),       # DOUBLE NOT NULL
            col(4, "s", 15, 1, STRING_WIDTH, 0, "utf8mb4"),  # VARCHAR(16) NOT NULL
        ],
    }


# ---------------------------------------------------------------------------------------------
# The change stream, as columns.
# ---------------------------------------------------------------------------------------------

@dataclass
class Batch:
    ids: np.ndarray  # int64, distinct
    deleted: np.ndarray  # bool
    v: np.ndarray  # int64, always 8 bytes in row v2 (|v| >= 2**31)
    x: np.ndarray  # float64
    s: np.ndarray  # (n, 16) uint8, ASCII


def make_stream(rows: int, keys: int, batch: int, delete_ratio: float, seed: int) -> list[Batch]:
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, rows, batch):
        n = min(batch, rows - start)
        ids = rng.choice(keys, size=n, replace=False).astype(np.int64)
        s = rng.integers(ord("a"), ord("z") + 1, size=(n, STRING_WIDTH), dtype=np.uint8)
        out.append(Batch(
            ids=ids,
            deleted=rng.random(n) < delete_ratio,
            v=rng.integers(2**31, 2**62, size=n, dtype=np.int64),
            x=np.round(rng.normal(size=n) * 1000, 3),
            s=s,
        ))
    return out


# ---------------------------------------------------------------------------------------------
# Binlog events, built with NumPy: row v2 values, record keys, columnar RowBatch events.
# ---------------------------------------------------------------------------------------------

def row_values_v2(b: Batch) -> np.ndarray:
    """(n, ROW_VALUE_BYTES) uint8: TiDB row v2 of (v, x, s), all not null, small layout."""
    n = len(b.ids)
    out = np.empty((n, ROW_VALUE_BYTES), dtype=np.uint8)
    header = bytes([0x80, 0x00, 3, 0, 0, 0, 2, 3, 4]) + np.array([8, 16, 16 + STRING_WIDTH], "<u2").tobytes()
    out[:, : len(header)] = np.frombuffer(header, np.uint8)
    at = len(header)
    out[:, at : at + 8] = b.v.astype("<i8").view(np.uint8).reshape(n, 8)
    bits = b.x.view(np.uint64)
    # memcomparable float: positive -> flip the sign bit, negative -> flip every bit
    cmp = np.where(bits >> np.uint64(63) == 0, bits | np.uint64(1 << 63), ~bits)
    out[:, at + 8 : at + 16] = cmp.astype(">u8").view(np.uint8).reshape(n, 8)
    out[:, at + 16 :] = b.s
    return out


def record_keys(ids: np.ndarray) -> np.ndarray:
    """(n, 19) uint8 raw record keys t{TABLE_ID}_r{id}."""
    n = len(ids)
    out = np.empty((n, 19), dtype=np.uint8)
    prefix = b"t" + np.array([TABLE_ID ^ (1 << 63)], ">u8").tobytes() + b"_r"
    out[:, :11] = np.frombuffer(prefix, np.uint8)
    out[:, 11:] = (ids.view(np.uint64) ^ np.uint64(1 << 63)).astype(">u8").view(np.uint8).reshape(n, 8)
    return out


@dataclass
class Regions:
    bounds: list[int]  # handle boundaries between regions
    index: list[int]

    def ids(self) -> list[int]:
        return list(range(1, len(self.bounds) + 2))


def initial_events(regions: Regions) -> list[binlog_pb2.Event]:
    from pyspark_theflash.codec import encode_region_key

    def bound(h: int | None) -> bytes:
        return b"" if h is None else encode_region_key(bytes(record_keys(np.array([h], np.int64))[0]))

    edges: list[int | None] = [None, *regions.bounds, None]
    events = []
    for i, rid in enumerate(regions.ids()):
        regions.index[i] += 1
        region = binlog_pb2.Region(id=rid, start_key=bound(edges[i]), end_key=bound(edges[i + 1]),
                                   epoch=binlog_pb2.RegionEpoch(version=1, conf_version=1))
        events.append(binlog_pb2.Event(region_id=rid, index=regions.index[i], epoch=region.epoch,
                                       snapshot=binlog_pb2.RegionSnapshot(region=region)))
    return events


def batch_events(b: Batch, regions: Regions, ts: int, txn_rows: int, two_phase: bool) -> tuple[list[binlog_pb2.Event], int]:
    """One batch as events: per region, transactions of ``txn_rows`` rows. Returns the next ts."""
    values = row_values_v2(b)
    keys = record_keys(b.ids)
    region_of = np.searchsorted(np.array(regions.bounds, np.int64), b.ids, side="right")
    events: list[binlog_pb2.Event] = []
    for r, rid in enumerate(regions.ids()):
        sel = np.flatnonzero(region_of == r)
        for lo in range(0, len(sel), txn_rows):
            chunk = sel[lo : lo + txn_rows]
            start_ts, commit_ts = ts + 1, ts + 2
            ts += 2
            starts = np.full(len(chunk), start_ts, np.uint64)
            commits = np.full(len(chunk), commit_ts, np.uint64)
            if two_phase:
                prewrite = rows.pack_columns(
                    types=binlog_pb2.Row.PREWRITE, ops=np.where(b.deleted[chunk], binlog_pb2.DELETE, binlog_pb2.PUT),
                    start_ts=starts, keys=keys[chunk], values=_values_or_empty(values, chunk, b.deleted[chunk]),
                    primaries=np.broadcast_to(keys[chunk[0]], (len(chunk), keys.shape[1])), ttl=3000,
                    txn_size=len(chunk))
                commit = rows.pack_columns(types=binlog_pb2.Row.COMMIT, ops=binlog_pb2.PUT, start_ts=starts,
                                           commit_ts=commits, keys=keys[chunk])
                batches = [prewrite, commit]
            else:
                batches = [rows.pack_columns(
                    types=binlog_pb2.Row.COMMITTED, ops=np.where(b.deleted[chunk], binlog_pb2.DELETE, binlog_pb2.PUT),
                    start_ts=starts, commit_ts=commits, keys=keys[chunk],
                    values=_values_or_empty(values, chunk, b.deleted[chunk]))]
            for batch in batches:
                regions.index[r] += 1
                events.append(binlog_pb2.Event(
                    region_id=rid, index=regions.index[r], epoch=binlog_pb2.RegionEpoch(version=1, conf_version=1),
                    entries=binlog_pb2.Entries(batch=batch)))
    return events, ts


def _values_or_empty(values: np.ndarray, chunk: np.ndarray, deleted: np.ndarray) -> pa.Array:
    """The row values of ``chunk`` as Arrow binary, empty for the deleted rows."""
    n, width = len(chunk), values.shape[1]
    lengths = np.where(deleted, 0, width).astype(np.int32)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = values[chunk[~deleted]].tobytes()
    return pa.BinaryArray.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data)])


def check_events(b: Batch, events: list[binlog_pb2.Event], info: dict[str, Any]) -> None:
    """The rows the first events carry are byte for byte what the codec writes for them."""
    from pyspark_theflash.codec import encode_record_key
    from pyspark_theflash.codec.row_v2 import encode_row_for_table
    from pyspark_theflash.schema import TableInfo, row_columns

    table = TableInfo.from_json(info, db=DB)
    by_id = {int(h): i for i, h in enumerate(b.ids)}
    checked = 0
    for event in events[:2]:
        for row in rows.iter_rows(event.entries):
            if row.type == binlog_pb2.Row.COMMIT:  # a commit carries no value
                continue
            i = by_id[int.from_bytes(row.key[11:19], "big") - (1 << 63)]  # memcomparable int64 handle
            assert row.key == encode_record_key(TABLE_ID, int(b.ids[i]))
            expected = b"" if b.deleted[i] else encode_row_for_table(
                row_columns(table), {"v": int(b.v[i]), "x": float(b.x[i]), "s": bytes(b.s[i]).decode()})
            assert row.value == expected, (i, row.value.hex(), expected.hex())
            checked += 1
            if checked % 25 == 0:
                break
    assert checked >= 25, checked


def check_encoding(b: Batch, info: dict[str, Any]) -> None:
    """The NumPy row values and keys are byte for byte what the codec writes."""
    from pyspark_theflash.codec import encode_record_key
    from pyspark_theflash.codec.row_v2 import encode_row_for_table
    from pyspark_theflash.schema import TableInfo, row_columns

    table = TableInfo.from_json(info, db=DB)
    values, keys = row_values_v2(b), record_keys(b.ids)
    for i in range(min(50, len(b.ids))):
        row = {"v": int(b.v[i]), "x": float(b.x[i]), "s": bytes(b.s[i]).decode()}
        expected = encode_row_for_table(row_columns(table), row)
        assert bytes(values[i]) == expected, (i, bytes(values[i]).hex(), expected.hex())
        assert bytes(keys[i]) == encode_record_key(TABLE_ID, int(b.ids[i]))


# ---------------------------------------------------------------------------------------------
# The two sides.
# ---------------------------------------------------------------------------------------------

def run_theflash(path: Path, stream: list[Batch], args: argparse.Namespace) -> dict[str, Any]:
    from pyspark_theflash.store import Store

    info = table_info()
    check_encoding(stream[0], info)
    n_regions = args.regions
    regions = Regions(bounds=[args.keys * (i + 1) // n_regions for i in range(n_regions - 1)], index=[0] * n_regions)
    t0 = time.perf_counter()
    opening = initial_events(regions)  # first: the regions' raft indices continue from these
    prepared: list[list[binlog_pb2.Event]] = []
    ts = BASE_TS
    for b in stream:
        events, ts = batch_events(b, regions, ts, args.txn_rows, args.two_phase)
        prepared.append(events)
    check_events(stream[0], prepared[0], info)
    build_s = time.perf_counter() - t0
    print(f"theflash: built {sum(len(e) for e in prepared)} events in {build_s:.2f}s (not timed)", flush=True)

    store = Store.open(str(path))
    store.put_schema(DB, info)
    store.write(opening, Position(0, 0))
    store.flush()
    t0, c0 = time.perf_counter(), time.process_time()
    for i, events in enumerate(prepared):
        store.write(events, Position(0, i + 1))
        store.flush(wait=args.no_pipeline)
    store.sync()  # the last edit is durable: only now does the clock stop
    ingest_s, ingest_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    prepared.clear()
    # read as flushed (delta parts only); then once upstream's GC safe point reaches the last
    # commit, the writer's background GC compacts every partition to one version per key
    _, read_deltas_s = timed_read(lambda: store.scan_table(f"{DB}.{TABLE}", ts))
    t0 = time.perf_counter()
    store.gc(ts)
    compact_s = time.perf_counter() - t0
    table, read_s = timed_read(lambda: store.scan_table(f"{DB}.{TABLE}", ts))
    store.close()
    return {"ingest_s": ingest_s, "ingest_cpu_s": ingest_cpu_s, "read_s": read_s, "read_deltas_s": read_deltas_s,
            "compact_s": compact_s,
            "table": table, "last_ts": ts}


def run_delta(path: Path, stream: list[Batch]) -> dict[str, Any]:
    from deltalake import DeltaTable, write_deltalake

    schema = pa.schema([("id", pa.int64()), ("v", pa.int64()), ("x", pa.float64()), ("s", pa.string())])
    write_deltalake(str(path), schema.empty_table(), mode="overwrite")
    sources = []
    for b in stream:
        sources.append(pa.table({
            "id": b.ids, "v": b.v, "x": b.x,
            "s": pa.array(b.s.view(f"S{STRING_WIDTH}").ravel().astype(str)),
            "deleted": b.deleted,
        }))
    t0, c0 = time.perf_counter(), time.process_time()
    for source in sources:
        dt = DeltaTable(str(path))
        (dt.merge(source, predicate="t.id = s.id", source_alias="s", target_alias="t")
           .when_matched_delete(predicate="s.deleted")
           .when_matched_update_all(except_cols=["deleted"])
           .when_not_matched_insert_all(predicate="NOT s.deleted", except_cols=["deleted"])
           .execute())
    ingest_s, ingest_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    table, read_s = timed_read(lambda: DeltaTable(str(path)).to_pyarrow_table())
    return {"ingest_s": ingest_s, "ingest_cpu_s": ingest_cpu_s, "read_s": read_s, "table": table}


def timed_read(read: Any, repeat: int = 5) -> tuple[pa.Table, float]:
    """The best of ``repeat`` full snapshot reads (the first also pays one-time imports)."""
    best = float("inf")
    table = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        table = read()
        best = min(best, time.perf_counter() - t0)
    assert table is not None
    return table, best


def canonical(table: pa.Table) -> pa.Table:
    table = table.select(["id", "v", "x", "s"])
    table = table.cast(pa.schema([("id", pa.int64()), ("v", pa.int64()), ("x", pa.float64()), ("s", pa.string())]))
    return table.take(pc.sort_indices(table, [("id", "ascending")])).combine_chunks()


def expected_rows(stream: list[Batch]) -> int:
    live: dict[int, bool] = {}
    for b in stream:
        live.update(zip(b.ids.tolist(), (~b.deleted).tolist()))
    return sum(live.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="upserts + deletes in the stream")
    parser.add_argument("--keys", type=int, default=500_000, help="distinct handles the stream touches")
    parser.add_argument("--batch", type=int, default=50_000, help="operations per batch (one write+flush, one MERGE)")
    parser.add_argument("--delete-ratio", type=float, default=0.1)
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--txn-rows", type=int, default=1000, help="rows per upstream transaction")
    parser.add_argument("--two-phase", action="store_true", help="PREWRITE + COMMIT instead of 1PC rows")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", help="where to put the store and the Delta table (default: a temp dir)")
    parser.add_argument("--skip-delta", action="store_true", help="TheFlash only (profiling)")
    parser.add_argument("--no-pipeline", action="store_true",
                        help="Store.flush() per batch (durable before the next write) instead of flush(wait=False)")
    args = parser.parse_args(argv)
    if args.batch > args.keys:
        parser.error("--batch must not exceed --keys (a batch touches distinct keys)")

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="theflash-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        stream = make_stream(args.rows, args.keys, args.batch, args.delete_ratio, args.seed)
        live = expected_rows(stream)
        print(f"stream: {args.rows} ops over {args.keys} keys, {len(stream)} batches of {args.batch}, "
              f"{args.delete_ratio:.0%} deletes, {live} live rows at the end", flush=True)
        flash = run_theflash(work / "theflash", stream, args)
        flash_rate = args.rows / flash["ingest_s"]
        print(f"theflash: ingest {flash['ingest_s']:.2f}s ({flash['ingest_cpu_s']:.2f}s CPU) = {flash_rate:,.0f} "
              f"rows/s; snapshot read "
              f"{flash['read_deltas_s']:.3f}s from delta parts; GC+compaction {flash['compact_s']:.2f}s; then "
              f"snapshot read {flash['read_s']:.3f}s ({flash['table'].num_rows} rows)", flush=True)
        result: dict[str, Any] = {
            "rows": args.rows, "keys": args.keys, "batch": args.batch, "two_phase": args.two_phase,
            "pipelined_flush": not args.no_pipeline,
            "theflash_ingest_s": round(flash["ingest_s"], 3), "theflash_ingest_cpu_s": round(flash["ingest_cpu_s"], 3),
            "theflash_rows_per_s": round(flash_rate),
            "theflash_read_s": round(flash["read_s"], 4), "theflash_read_before_compaction_s":
                round(flash["read_deltas_s"], 4), "theflash_compact_s": round(flash["compact_s"], 3),
            "theflash_rows_per_s_incl_compaction": round(args.rows / (flash["ingest_s"] + flash["compact_s"])),
            "live_rows": live,
        }
        assert flash["table"].num_rows == live, (flash["table"].num_rows, live)
        if not args.skip_delta:
            delta = run_delta(work / "delta", stream)
            delta_rate = args.rows / delta["ingest_s"]
            print(f"delta:    ingest {delta['ingest_s']:.2f}s ({delta['ingest_cpu_s']:.2f}s CPU, all threads) = "
                  f"{delta_rate:,.0f} rows/s; "
                  f"snapshot read {delta['read_s']:.3f}s ({delta['table'].num_rows} rows)", flush=True)
            same = canonical(flash["table"]).equals(canonical(delta["table"]))
            assert same, "TheFlash and Delta ended with different rows"
            ratio = flash_rate / delta_rate
            print(f"ingest ratio theflash/delta: {ratio:.1f}x (target >= 10x); snapshot read "
                  f"theflash {flash['read_s']:.3f}s vs delta {delta['read_s']:.3f}s", flush=True)
            result.update({
                "delta_ingest_s": round(delta["ingest_s"], 3), "delta_ingest_cpu_s": round(delta["ingest_cpu_s"], 3),
                "delta_rows_per_s": round(delta_rate),
                "delta_read_s": round(delta["read_s"], 4), "ingest_ratio": round(ratio, 2),
                "read_ratio_delta_over_theflash": round(delta["read_s"] / flash["read_s"], 2),
                "same_rows": same,
            })
        print(json.dumps(result))
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
