"""What checking part checksums costs a read (store/integrity.py): the same snapshot reads of the
same parts with and without their recorded checksums.

    .venv/bin/python bench/checksum.py                          # 1M upserts/deletes over 500k keys
    .venv/bin/python bench/checksum.py --rows 300000 --keys 150000

The store is bench/ingest.py's stream (id BIGINT PRIMARY KEY, v BIGINT, x DOUBLE, s VARCHAR(16))
applied with the writer's pipelined flush. Reads are ``read_parts`` of every live part at the last
ts (what a read session's streams do, in one call), full width and a two-column projection, twice:
as flushed (many Arrow IPC delta parts) and after ``gc`` (one Parquet stable part per partition).
Each read runs three ways, interleaved round by round:

* ``none``: the part references with their checksum taken away (the read of a store written before
  checksums: sizes checked, nothing summed) — the baseline;
* ``cold``: checksums recorded, this process's memory of checked files cleared before every read, so
  every part file is summed on every open — a reader process that opens each file once;
* ``warm``: checksums recorded, files summed once per process while unchanged — a long-lived service
  or Spark worker reading the same parts again.

Prints each way's best time, the ratio to ``none`` of the best times and the median of each round's
paired ratios, and ends with one JSON line.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest  # noqa: E402

from pyspark_theflash.binlog.position import Position  # noqa: E402
from pyspark_theflash.store import Store, integrity, read_parts  # noqa: E402
from pyspark_theflash.store.store import table_for_read  # noqa: E402

QUALIFIED = f"{ingest.DB}.{ingest.TABLE}"
WAYS = ("none", "cold", "warm")


def build(path: Path, args: argparse.Namespace) -> tuple[Store, int]:
    stream = ingest.make_stream(args.rows, args.keys, args.batch, args.delete_ratio, args.seed)
    regions = ingest.Regions(bounds=[args.keys * (i + 1) // args.regions for i in range(args.regions - 1)],
                             index=[0] * args.regions)
    store = Store.open(str(path))
    store.put_schema(ingest.DB, ingest.table_info())
    store.write(ingest.initial_events(regions), Position(0, 0))
    store.flush()
    ts = ingest.BASE_TS
    for i, b in enumerate(stream):
        events, ts = ingest.batch_events(b, regions, ts, args.txn_rows, False)
        store.write(events, Position(0, i + 1))
        store.flush(wait=False)
    store.sync()
    return store, ts


def measure(store: Store, ts: int, columns: list[str] | None, rounds: int) -> dict[str, Any]:
    with store.snapshot() as view:
        info = table_for_read(view, QUALIFIED, ts, "current")
        parts = view.parts(info.id)
    bare = [dataclasses.replace(p, checksum=None) for p in parts]
    assert all(p.checksum for p in parts), "every part of a new store has a checksum"

    def read(refs: list[Any]) -> Callable[[], int]:
        return lambda: sum(b.num_rows for b in read_parts(refs, info, ts, columns=columns, root=store.root))

    def cold() -> int:
        integrity._checked = integrity._Checked()  # forget every checked file: each is summed again
        return read(parts)()

    runs = {"none": read(bare), "cold": cold, "warm": read(parts)}
    times: dict[str, list[float]] = {w: [] for w in WAYS}
    rows = {w: runs[w]() for w in WAYS}  # warm-up (page cache, caches); every way reads the same rows
    assert len(set(rows.values())) == 1, rows
    for _ in range(rounds):
        for w in WAYS:
            t0 = time.perf_counter()
            runs[w]()
            times[w].append(time.perf_counter() - t0)
    best = {w: min(times[w]) for w in WAYS}
    paired = {w: statistics.median(t / n for t, n in zip(times[w], times["none"])) for w in ("cold", "warm")}
    return {"rows": rows["none"], "parts": len(parts), "bytes": sum(p.bytes for p in parts),
            "best_s": best, "best_ratio": {w: best[w] / best["none"] for w in ("cold", "warm")},
            "paired_median_ratio": paired}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--delete-ratio", type=float, default=0.1)
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--txn-rows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", help="where to put the store (default: a temp dir, removed after)")
    args = parser.parse_args(argv)

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="theflash-checksum-"))
    out: dict[str, Any] = {"rows": args.rows, "keys": args.keys}
    try:
        store, ts = build(work / "store", args)
        try:
            for phase in ("as_flushed", "after_gc"):
                if phase == "after_gc":
                    store.gc(ts)
                for name, columns in (("full", None), ("projection", ["id", "x"])):
                    r = measure(store, ts, columns, args.rounds)
                    out[f"{phase}.{name}"] = r
                    print(f"{phase:10} {name:10} {r['parts']:4} parts {r['bytes'] / 2**20:7.1f} MiB {r['rows']:>9,} rows  "
                          + "  ".join(f"{w} {r['best_s'][w] * 1000:7.1f} ms" for w in WAYS)
                          + "  cold/none {:.3f} (paired {:.3f})  warm/none {:.3f} (paired {:.3f})".format(
                              r["best_ratio"]["cold"], r["paired_median_ratio"]["cold"],
                              r["best_ratio"]["warm"], r["paired_median_ratio"]["warm"]), flush=True)
        finally:
            store.close()
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
