"""What a Delta publication round costs (pyspark_theflash/lake, docs/delta.md): a table of
``--rows`` rows compacted into stable parts, then ``--rounds`` rounds each after ``--changed``
upserts flushed as one Arrow IPC delta: each round computes the deletion vectors of the changed
partitions, converts the delta to Parquet and commits one version.

    .venv/bin/python bench/delta_publish.py                       # 1M rows, 1,000 changed a round
    .venv/bin/python bench/delta_publish.py --rows 10000000 --partition-rows 2000000

The store is bench/ingest.py's table (id BIGINT PRIMARY KEY, v BIGINT, x DOUBLE, s VARCHAR(16)).
Prints the first round (every part converted or named, every vector computed), each later
round's time, and one JSON line. A round's cost follows the partitions the change touches:
with ``--partition-rows`` below ``--rows`` the untouched partitions are not read at all.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest  # noqa: E402

from pyspark_theflash.binlog.position import Position  # noqa: E402
from pyspark_theflash.lake.publish import Publisher  # noqa: E402
from pyspark_theflash.proto import binlog_pb2  # noqa: E402
from pyspark_theflash.store import Store, StoreOptions  # noqa: E402


def resolved(regions: ingest.Regions, ts: int) -> list[binlog_pb2.Event]:
    out = []
    for i, rid in enumerate(regions.ids()):
        regions.index[i] += 1
        out.append(binlog_pb2.Event(region_id=rid, index=regions.index[i], resolved_ts=ts))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the table (default %(default)s)")
    p.add_argument("--changed", type=int, default=1_000, help="rows upserted before each round (default %(default)s)")
    p.add_argument("--rounds", type=int, default=5, help="rounds after the first (default %(default)s)")
    p.add_argument("--partition-rows", type=int, default=2_000_000,
                   help="StoreOptions.partition_max_rows: compaction splits partitions above it (default %(default)s)")
    p.add_argument("--regions", type=int, default=4, help="regions over the keys (default %(default)s)")
    p.add_argument("--dir", help="where to build the store (default: a temporary directory, removed)")
    args = p.parse_args(argv)

    root = Path(args.dir or tempfile.mkdtemp(prefix="theflash-delta-bench-"))
    try:
        regions = ingest.Regions(bounds=[args.rows * (i + 1) // args.regions for i in range(args.regions - 1)],
                                 index=[0] * args.regions)
        store = Store.open(str(root / "store"), options=StoreOptions(partition_max_rows=args.partition_rows))
        store.put_schema(ingest.DB, ingest.table_info())
        store.write(ingest.initial_events(regions), Position(0, 0))
        ts = ingest.BASE_TS
        for i, b in enumerate(ingest.make_stream(args.rows, args.rows, 500_000, 0.0, 7)):
            events, ts = ingest.batch_events(b, regions, ts, 10_000, False)
            store.write(events, Position(0, i + 1))
            store.flush()
        store.write(resolved(regions, ts), Position(1, 0))
        store.flush()
        store.compact(force=True)
        publisher = Publisher(store.root)
        started = time.perf_counter()
        first = publisher.publish()
        first_s = time.perf_counter() - started
        print(f"first round: {first_s * 1000:.1f} ms ({first.tables[0].files} files)")
        times = []
        rng = np.random.default_rng(11)
        for n in range(args.rounds):
            b = ingest.make_stream(args.changed, args.rows, args.changed, 0.1, int(rng.integers(1 << 30)))[0]
            events, ts = ingest.batch_events(b, regions, ts, 1_000, False)
            store.write(events + resolved(regions, ts), Position(2, n))
            store.flush()
            started = time.perf_counter()
            done = publisher.publish()
            took = time.perf_counter() - started
            times.append(took)
            t = done.tables[0]
            print(f"round {n + 1}: {took * 1000:.1f} ms (version {t.version}, {t.files} files, {t.converted} converted, "
                  f"{t.deleted_rows} rows under vectors, {t.parts_read} part(s) read)")
        store.close()
        print(json.dumps({"rows": args.rows, "changed": args.changed, "partition_rows": args.partition_rows,
                          "first_round_ms": round(first_s * 1000, 1),
                          "round_ms_median": round(statistics.median(times) * 1000, 1),
                          "round_ms_best": round(min(times) * 1000, 1)}))
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
