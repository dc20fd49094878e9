"""What Delta publication costs (pyspark_theflash/lake, docs/delta.md), three figures each beside
its baseline measured in the same run:

* **a round** (``round``): a table of ``--rows`` upserts over as many keys (about two thirds distinct:
  the rest superseded versions) compacted into stable parts (every version kept, or with
  ``--gc`` one version a key), then
  ``--rounds`` rounds each after ``--changed`` upserts flushed as one Arrow IPC delta: each
  round computes the deletion vectors of the changed partitions, converts the delta to Parquet
  and commits one version. Its baseline is the first round, which reads every part (the cost
  of the whole table); the issue's target is 100 ms for 1,000 changed rows of 10M.
* **the writer's rate** (``rate``): ``writer run --until-caught-up`` on one binlog of
  ``--rate-txns`` 10-row 2PC transactions (bench/capture_ceiling.py's rig and feed, through
  capture, before any clock), with publication off and with a round every
  ``--publish-interval``, alternated ``--rate-runs`` times each; committed rows per second
  from the writer's first read to its exit.
* **the lag** (``lag``): ``--lag-rate`` commits/s (10-row transactions) through capture and a
  writer publishing every ``--publish-interval`` for ``--lag-seconds``: ten times a second,
  how far the newest published version's ts trails the store's resolved ts (physical ms).
  Beside it, commit -> readable in the same run, and in a run with publication off (the
  baseline: what publication costs freshness). The issue's target: lag p99 <= 2 s at 5,000
  commits/s.

    .venv/bin/python bench/delta_publish.py                       # 1M rows, 1,000 changed a round; rate; lag
    .venv/bin/python bench/delta_publish.py --rows 10000000 --partition-rows 2000000
    .venv/bin/python bench/delta_publish.py --skip rate,lag       # the round alone

The round's store is bench/ingest.py's table (id BIGINT PRIMARY KEY, v BIGINT, x DOUBLE, s
VARCHAR(16)). A round's cost follows the partitions the change touches: with
``--partition-rows`` below ``--rows`` the untouched partitions are not read at all.
Prints the figures, ending with one JSON line.
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
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import capture_ceiling  # noqa: E402
import ingest  # noqa: E402
from live_rig import print_log_tails  # noqa: E402

from pyspark_theflash.binlog.position import Position  # noqa: E402
from pyspark_theflash.lake.publish import Publisher  # noqa: E402
from pyspark_theflash.proto import binlog_pb2  # noqa: E402
from pyspark_theflash.store import Store, StoreOptions  # noqa: E402

LOGICAL_BITS = 18


def resolved(regions: ingest.Regions, ts: int) -> list[binlog_pb2.Event]:
    out = []
    for i, rid in enumerate(regions.ids()):
        regions.index[i] += 1
        out.append(binlog_pb2.Event(region_id=rid, index=regions.index[i], resolved_ts=ts))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_round(args: argparse.Namespace) -> dict[str, Any]:
    """The first round over the whole table, then ``--rounds`` rounds after ``--changed`` upserts each."""
    root = Path(args.dir or tempfile.mkdtemp(prefix="theflash-delta-bench-"))
    try:
        regions = ingest.Regions(bounds=[args.rows * (i + 1) // args.regions for i in range(args.regions - 1)],
                                 index=[0] * args.regions)
        store = Store.open(str(root / "store"), options=StoreOptions(partition_max_rows=args.partition_rows))
        store.put_schema(ingest.DB, ingest.table_info())
        store.write(ingest.initial_events(regions), Position(0, 0))
        ts = ingest.BASE_TS
        built = time.perf_counter()
        for i, b in enumerate(ingest.make_stream(args.rows, args.rows, 500_000, 0.0, 7)):
            events, ts = ingest.batch_events(b, regions, ts, 10_000, False)
            store.write(events, Position(0, i + 1))
            store.flush()
        store.write(resolved(regions, ts), Position(1, 0))
        store.flush()
        if args.gc:  # the writer's steady state: compaction under a GC safe point keeps one version a key
            store.gc(ts)
        else:        # every version kept (no GC yet): the stable parts' vectors hold the superseded ones
            store.compact(force=True)
        print(f"table of {args.rows:,} rows built and compacted {'under GC at its last ts' if args.gc else 'keeping every version'} "
              f"in {time.perf_counter() - built:.0f} s (not timed)", flush=True)
        publisher = Publisher(store.root)
        started = time.perf_counter()
        first = publisher.publish()
        first_s = time.perf_counter() - started
        t0 = first.tables[0]
        print(f"first round (the baseline: every part read): {first_s * 1000:.1f} ms ({t0.files} files, "
              f"{t0.parts_read} part(s) read)", flush=True)
        times = []
        reads = []
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
            reads.append(t.parts_read)
            print(f"round {n + 1}: {took * 1000:.1f} ms (version {t.version}, {t.files} files, {t.converted} converted, "
                  f"{t.deleted_rows} rows under vectors, {t.parts_read} part(s) read)", flush=True)
        store.close()
        median = statistics.median(times)
        print(f"a round after {args.changed:,} changed rows of {args.rows:,}: median {median * 1000:.1f} ms, "
              f"best {min(times) * 1000:.1f} ms, worst {max(times) * 1000:.1f} ms; {first_s / median:.0f}x less than "
              "the first round's (target 100 ms)", flush=True)
        return {"rows": args.rows, "changed": args.changed, "partition_rows": args.partition_rows, "gc": args.gc,
                "first_round_rows_under_vectors": t0.deleted_rows,
                "first_round_ms": round(first_s * 1000, 1), "first_round_parts_read": t0.parts_read,
                "round_ms_median": round(median * 1000, 1), "round_ms_best": round(min(times) * 1000, 1),
                "round_ms_worst": round(max(times) * 1000, 1), "round_parts_read_max": max(reads),
                "round_ratio_first_over_median": round(first_s / median, 1)}
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


def published_ts(store: Path) -> int:
    """The ts of the newest Delta version of the bench's table in ``store`` (0: none yet): its
    commitInfo's ``theflashTs``, the first line of the newest JSON version."""
    log = store / "tables" / str(ingest.TABLE_ID) / "_delta_log"
    try:
        newest = max((p for p in log.iterdir() if p.suffix == ".json" and p.stem.isdigit()), default=None)
        if newest is None:
            return 0
        with newest.open() as f:
            return int(json.loads(f.readline())["commitInfo"]["theflashTs"])
    except (OSError, ValueError, KeyError):
        return 0


def versions(store: Path) -> int:
    log = store / "tables" / str(ingest.TABLE_ID) / "_delta_log"
    return sum(1 for p in log.glob("*.json")) if log.is_dir() else 0


def run_rate(rig: Any, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The writer alone on one binlog, publication off and on, alternated."""
    base = rig.get_ts() - (1 << 30)  # below PD's clock: the DDL frontier never holds the feed back
    feed = capture_ceiling.live_feed(args.rate_txns, 10, rig.regions, 64, base, 5000)
    binlog = work / "rate-binlog"
    capture_ceiling.run_capture(rig, feed, binlog, work / "rate-capture.log")
    print(f"binlog of {args.rate_txns:,} 10-row transactions ({feed.committed:,} rows) captured (not timed)", flush=True)
    on_args = ["--delta-publish-interval", args.publish_interval]
    rates: dict[str, list[float]] = {"off": [], "on": []}
    rounds: list[int] = []
    for _ in range(args.rate_runs):
        for mode in ("off", "on"):
            store = work / f"rate-store-{mode}"
            w = capture_ceiling.run_writer(binlog, store, work / f"rate-writer-{mode}.log", feed.committed,
                                           on_args if mode == "on" else [])
            rates[mode].append(w["committed_per_s"])
            extra = ""
            if mode == "on":
                rounds.append(versions(store))
                extra = f", {rounds[-1]} version(s) published"
            print(f"writer, publication {mode:>3}: {w['committed_per_s']:>12,.0f} committed rows/s "
                  f"({w['apply_s']:.1f} s from its first read{extra})", flush=True)
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    print(f"writer's rate: {off:,.0f} committed rows/s with publication off, {on:,.0f} with a round every "
          f"{args.publish_interval} ({on / off:.2f}x)", flush=True)
    return {"rate_txns": args.rate_txns, "writer_off_committed_per_s": round(off),
            "writer_on_committed_per_s": round(on), "writer_ratio_on_over_off": round(on / off, 3),
            "writer_on_versions": rounds, "writer_runs": {k: [round(v) for v in vs] for k, vs in rates.items()}}


def run_lag(rig: Any, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Commits at ``--lag-rate``/s through capture and a writer: publication off, then on."""
    out: dict[str, Any] = {"lag_rate": args.lag_rate, "publish_interval": args.publish_interval}
    off = capture_ceiling.run_latency(rig, work, args.lag_rate, args.lag_seconds, 10, 0.05, name="lag-off")
    print(f"publication off: commit -> readable p50 {off['p50_ms']:.0f} ms, p99 {off['p99_ms']:.0f} ms "
          f"({off['probes']} probes; the baseline)", flush=True)
    lags: list[float] = []

    def sample(store: Path) -> None:
        published = published_ts(store)
        if published:
            lags.append(max(0, (capture_ceiling.min_resolved(store, rig.regions) >> LOGICAL_BITS) - (published >> LOGICAL_BITS)))

    on = capture_ceiling.run_latency(rig, work, args.lag_rate, args.lag_seconds, 10, 0.05, name="lag-on",
                                     writer_args=["--delta-publish-interval", args.publish_interval], sample=sample)
    published = versions(work / "lag-on-store")
    if not lags:
        raise SystemExit("no Delta version was published during the lag run")
    p50, p99 = percentile(lags, 0.5), percentile(lags, 0.99)
    print(f"publication on:  commit -> readable p50 {on['p50_ms']:.0f} ms, p99 {on['p99_ms']:.0f} ms "
          f"({on['probes']} probes)", flush=True)
    print(f"published version behind the store's resolved ts at {args.lag_rate:g} commits/s, a round every "
          f"{args.publish_interval}: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(lags):.0f} ms ({len(lags)} samples, "
          f"{published} versions; target p99 2000 ms)", flush=True)
    out.update({"lag_p50_ms": round(p50, 1), "lag_p99_ms": round(p99, 1), "lag_max_ms": round(max(lags), 1),
                "lag_samples": len(lags), "lag_versions": published,
                "readable_p99_ms_publication_off": round(off["p99_ms"], 1),
                "readable_p99_ms_publication_on": round(on["p99_ms"], 1)})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the round's table (default %(default)s)")
    p.add_argument("--changed", type=int, default=1_000, help="rows upserted before each round (default %(default)s)")
    p.add_argument("--rounds", type=int, default=5, help="rounds after the first (default %(default)s)")
    p.add_argument("--partition-rows", type=int, default=2_000_000,
                   help="StoreOptions.partition_max_rows: compaction splits partitions above it (default %(default)s)")
    p.add_argument("--regions", type=int, default=4, help="regions over the keys (default %(default)s)")
    p.add_argument("--dir", help="where to build the round's store (default: a temporary directory, removed)")
    p.add_argument("--gc", action="store_true",
                   help="compact the built table under a GC safe point at its last ts (one version a key, as the "
                        "writer keeps a table GC has passed) instead of keeping every version")
    p.add_argument("--publish-interval", default="1s",
                   help="the writer's --delta-publish-interval in the rate and lag parts (default %(default)s)")
    p.add_argument("--rate-txns", type=int, default=300_000,
                   help="10-row transactions of the writer's binlog (default %(default)s)")
    p.add_argument("--rate-runs", type=int, default=2, help="runs of the writer each way, alternated (default %(default)s)")
    p.add_argument("--lag-rate", type=float, default=5000.0, help="commits/s of the lag part (default %(default)s)")
    p.add_argument("--lag-seconds", type=float, default=20.0, help="seconds of each lag run (default %(default)s)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: round,rate,lag")
    args = p.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))

    fig: dict[str, Any] = {"bench": "delta_publish"}
    if "round" not in skip:
        fig.update(run_round(args))
    if not {"rate", "lag"} <= skip:
        work = Path(tempfile.mkdtemp(prefix="theflash-delta-bench-"))
        rig = capture_ceiling.Rig(8)
        try:
            if "rate" not in skip:
                fig.update(run_rate(rig, work, args))
            if "lag" not in skip:
                fig.update(run_lag(rig, work, args))
        except BaseException:
            print_log_tails(work)
            raise
        finally:
            rig.close()
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
