"""The same snapshot read two ways, side by side in one run: ``spark.read.format("theflash")``
and ``spark.read.parquet`` of the same rows written out once.

    .venv/bin/python bench/scan.py                  # 200k rows of a 16-column table, 8 regions
    .venv/bin/python bench/scan.py --rows 50000     # smaller
    .venv/bin/python bench/scan.py --key clustered  # PRIMARY KEY (id, k) CLUSTERED: a common handle

The table's key is ``id`` as the int handle (``--key int``, the default), or the composite
``(id, k)`` declared ``CLUSTERED`` as TiDB users declare TPC-H's lineitem and partsupp
(``--key clustered``): the handle is then the key's memcomparable bytes.

The rows go the product's whole way: mini cluster transactions → binlog files → the writer →
the store, which is then compacted (as the writer does in the background once upstream's
safe point moves). The mini cluster (with the live updates) and the writer each run in a
process of their own (bench/live_rig.py), as upstream and writer run apart from Spark in
production: only Spark's driver shares this interpreter. One snapshot ts is taken; the
theflash DataFrame at that ts is written to Parquet once. Then each query runs ``--repeat``
times on both, the runs interleaved (a new theflash DataFrame each time: planning, learner read
and lease included — what a user pays), best time kept. Each query prints the ratio of the best
times and the median of the ratios of each round's pair of runs (back to back, so a burst of
the writer's background work tends to fall on both): with ``--live`` on two cores the best
times of identical Parquet queries move by 20% between runs, the paired median less:

* full scan: sum of a BIGINT and a DOUBLE column over every row;
* selective filter: ``id BETWEEN a AND b`` (1% of the rows), pushed down (regions pruned);
* projection: two columns of the wide table, by ``.schema(...)`` with that subset, and by a
  ``select`` after a full-width read.

``--path`` chooses the theflash read:

* ``session`` (default): what a user gets from ``theflash_session()``: the Spark connector jar
  (the JVM DataSource V2: column pruning, filter pushdown, statistics) reading the Arrow
  streams of the service that ``theflash_session()`` starts in the driver's process;
* ``serve``: the same connector reading ``theflash serve``, run in a process of its own as it
  runs beside a writer;
* ``python``: ``theflash_session(jvm=False)``, the Python data source alone (what a session
  without the jar gets: every column of every row through a Python worker, no pruning).

Targets for the connector paths: 1.1x Parquet on a quiet table, 1.25x with ``--live``; the
Python path has none (it is printed for comparison). The connector paths also print the rows/s
the Arrow stream alone reaches (every stream of one session read over HTTP by pyarrow, one
after another) beside the rows/s of the connector's and of Spark's own Parquet full scan.

``--live`` reads while the writer applies a steady update workload over the whole table
(``--live-rate`` commits/s, default 200, each updating ``--live-rows`` random rows, so every
partition carries delta parts and the writer's background compaction runs as it will): after
``--live-warmup`` seconds of updates the snapshot ts is taken — the deltas then hold versions
at and after it — and the queries run at that ts while the updates go on. Parquet is that
snapshot written out once (through the read being measured: the MVCC reference). The service
reads each stable part minus its deletion vector and the deltas' newest versions of the rows
they supersede (docs/reading.md, "merge-on-read").
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(ROOT / "bench"))

from live_rig import TABLE, UpstreamProcess, WriterProcess, columns  # noqa: E402


class ServiceProcess:
    """``theflash serve --store DIR --port 0`` in a process of its own, as it runs beside a writer."""

    def __init__(self, store: str) -> None:
        import re
        import subprocess

        self.process = subprocess.Popen([sys.executable, "-m", "pyspark_theflash.cli", "serve", "--store", store,
                                         "--port", "0"], stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline() if self.process.stdout else ""
        found = re.search(r"http (http://\S+)", line)
        if found is None:
            self.process.kill()
            raise SystemExit(f"theflash serve did not start: {line!r}")
        self.http_url = found.group(1)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def arrow_stream_rate(server: str, token: str | None, store: str, ts: int) -> tuple[float, int]:
    """Rows/s of one session's Arrow streams read over HTTP by pyarrow, one after another; and the rows."""
    import urllib.request

    from pyspark_theflash.scan.stream_body import read_stream_body

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = json.dumps({"table": TABLE, "store": store, "snapshot_ts": ts}).encode()
    request = urllib.request.Request(server + "/v1/read-sessions", data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(request) as answer:
        session = json.loads(answer.read())
    started, got = time.monotonic(), 0
    for n, stream in enumerate(session["streams"]):
        url = server + stream["url"]
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as answer:  # a cut stream raises
            for batch in read_stream_body(answer, session=session["id"], stream=n, url=url):
                got += batch.num_rows
    elapsed = time.monotonic() - started
    urllib.request.urlopen(urllib.request.Request(server + f"/v1/read-sessions/{session['id']}", method="DELETE",
                                                  headers=headers))
    return got / elapsed, got


def same_values(a: Any, b: Any) -> bool:
    """Equal results; floating-point sums to 1e-12 (a sum's last bits depend on the order in
    which Spark's partitions add up, which differs between the read paths)."""
    import math

    return len(tuple(a)) == len(tuple(b)) and all(
        math.isclose(x, y, rel_tol=1e-12) if isinstance(x, float) and isinstance(y, float) else x == y
        for x, y in zip(tuple(a), tuple(b)))


def best_of(repeat: int, *fns: Callable[[], Any]) -> tuple[list[tuple[float, Any]], list[list[float]]]:
    """Each function's best time of ``repeat`` runs and its value, the runs interleaved (round
    r runs them in turn, every other round in reverse): a burst of background work (the
    writer's compaction under ``--live``) falls on the compared reads alike, not on one
    read's whole series. Also every round's times, function by function: the paired ratios."""
    for fn in fns:
        fn()  # warm: Python workers, file cache, JIT
    best = [float("inf")] * len(fns)
    values: list[Any] = [None] * len(fns)
    rounds: list[list[float]] = []
    for r in range(repeat):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        times = [0.0] * len(fns)
        for i in order:
            started = time.monotonic()
            values[i] = fns[i]()
            times[i] = time.monotonic() - started
            best[i] = min(best[i], times[i])
        rounds.append(times)
    return list(zip(best, values)), rounds


def paired_median(rounds: list[list[float]]) -> float:
    """The median over rounds of the first function's time over the second's, each pair run
    back to back: steadier than best over best when background work comes in bursts."""
    import statistics

    return statistics.median(r[0] / r[1] for r in rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--regions", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=10_000, help="rows per upstream transaction")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--key", choices=("int", "clustered"), default="int",
                        help="primary key: id (int handle) or (id, k) CLUSTERED (common handle)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--live", action="store_true", help="read while updates flow (see above)")
    parser.add_argument("--live-rate", type=float, default=200.0, help="update commits per second (--live)")
    parser.add_argument("--live-rows", type=int, default=2, help="rows each update commit changes (--live)")
    parser.add_argument("--live-warmup", type=float, default=10.0, help="seconds of updates before the ts (--live)")
    parser.add_argument("--rounds", action="store_true",
                        help="also print each round's pair of times (theflash, parquet) per query")
    parser.add_argument("--path", choices=("session", "serve", "python"), default="session",
                        help="the theflash read: the connector jar with theflash_session()'s service (default), "
                        "with theflash serve in its own process, or the Python data source (see above)")
    args = parser.parse_args()

    from polling import wait_for
    from pyspark.sql import functions as F

    from pyspark_theflash.spark.session import close_in_process_service, theflash_session

    work = Path(tempfile.mkdtemp(prefix="theflash-bench-scan-"))
    # Spark's JVM first: launching it forks, and a fork while gRPC threads run can lose the
    # gateway ("Java gateway process exited before sending its port number").
    # The jar goes on this first session (unless --path python): the driver's class path is
    # fixed when its JVM starts, and a later session in this process would read through the
    # Python source.
    connector = args.path != "python"
    spark = theflash_session(master="local[2]", app_name="theflash-bench-scan", jvm=connector,
                             **{"spark.ui.showConsoleProgress": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    upstream = UpstreamProcess(work)  # the mini cluster and the live updates: not this interpreter
    store_dir = str(work / "store")
    writer: WriterProcess | None = None
    service: ServiceProcess | None = None
    try:
        print(f"loading {args.rows} rows ({len(columns())} columns, {args.regions} regions, {args.key} key) "
              "through mini cluster → binlog → writer → store (each in its own process) ...", flush=True)
        writer = WriterProcess(upstream, store_dir)
        load_s = upstream.load(args.rows, args.regions, args.chunk, args.key)
        server, token = None, None
        if args.path == "serve":
            service = ServiceProcess(store_dir)
            server = service.http_url
            spark.conf.set("theflash.server", server)
        elif args.path == "session":
            server, token = spark.conf.get("theflash.server"), spark.conf.get("theflash.token")

        def theflash(**options: Any) -> Any:
            read_options = {"store": store_dir, "upstream": upstream.upstream}
            read_options.update({k: str(v) for k, v in options.items()})
            return spark.read.format("theflash").options(**read_options)

        ts = upstream.get_ts()
        wait_for(lambda: theflash(snapshot_ts=ts).load(TABLE).count() == args.rows, 600, "the writer to catch up")
        writer.stop()
        writer = None
        from pyspark_theflash.store import Store

        with Store.open(store_dir) as store:  # what the writer's background compaction does
            store.compact(force=True)
        store_bytes = sum(p.stat().st_size for p in Path(store_dir).rglob("*.parquet"))
        parquet = str(work / "same_rows.parquet")
        if args.live:
            writer = WriterProcess(upstream, store_dir)
            upstream.start_updates(args.rows, args.live_rate, args.live_rows, args.key)
            print(f"live: {args.live_rate:g} update commits/s of {args.live_rows} rows each; "
                  f"{args.live_warmup:g}s before the snapshot ts", flush=True)
            time.sleep(args.live_warmup)
            ts = upstream.get_ts()
            theflash(snapshot_ts=ts).load(TABLE).write.parquet(parquet)
        else:
            theflash(snapshot_ts=ts).load(TABLE).write.parquet(parquet)
            writer = WriterProcess(upstream, store_dir)  # the learner read of every theflash query asks it to flush
        parquet_bytes = sum(p.stat().st_size for p in Path(parquet).rglob("*.parquet"))
        stream_rows_s = 0.0
        if server is not None:
            plan = theflash(snapshot_ts=ts).load(TABLE)._jdf.queryExecution().executedPlan().toString()
            if "TheFlashScan" not in plan:
                raise SystemExit(f"format('theflash') is not the JVM connector in this session: {plan[:400]}")
            stream_rows_s, streamed = arrow_stream_rate(server, token, store_dir, ts)
            if streamed != args.rows:
                raise SystemExit(f"the Arrow streams gave {streamed} rows, not {args.rows}")
            print(f"JVM connector over {server}; the Arrow stream alone (pyarrow over HTTP, one session, "
                  f"streams one after another): {stream_rows_s / 1e6:.2f} M rows/s")
        print(f"loaded in {load_s:.1f}s; snapshot ts {ts}; store {store_bytes / 1e6:.1f} MB, "
              f"parquet {parquet_bytes / 1e6:.1f} MB", flush=True)

        lo, hi = args.rows // 2, args.rows // 2 + args.rows // 100 - 1

        def pq() -> Any:
            return spark.read.parquet(parquet)

        def wide() -> Any:
            return theflash(snapshot_ts=ts).load(TABLE)

        queries: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
            "full_scan_sum": (
                lambda: wide().agg(F.sum("n0"), F.sum("x0")).collect()[0],
                lambda: pq().agg(F.sum("n0"), F.sum("x0")).collect()[0],
            ),
            "selective_filter": (
                lambda: wide().filter(F.col("id").between(lo, hi)).agg(F.count("*"), F.sum("n1")).collect()[0],
                lambda: pq().filter(F.col("id").between(lo, hi)).agg(F.count("*"), F.sum("n1")).collect()[0],
            ),
            "two_column_projection": (
                lambda: theflash(snapshot_ts=ts).schema("id long, s0 string").load(TABLE)
                .agg(F.sum("id"), F.max("s0")).collect()[0],
                lambda: pq().select("id", "s0").agg(F.sum("id"), F.max("s0")).collect()[0],
            ),
            "two_column_select": (
                lambda: wide().select("id", "s0").agg(F.sum("id"), F.max("s0")).collect()[0],
                lambda: pq().select("id", "s0").agg(F.sum("id"), F.max("s0")).collect()[0],
            ),
        }

        results: dict[str, dict[str, float]] = {}
        label = f"theflash {args.path} s"
        print(f"\n{'query':<24}{label:>20}{'parquet s':>11}{'ratio':>7}{'paired':>8}")
        for name, (flash_q, parquet_q) in queries.items():
            ((flash_s, flash_v), (parquet_s, parquet_v)), rounds = best_of(args.repeat, flash_q, parquet_q)
            if not same_values(flash_v, parquet_v):
                raise SystemExit(f"{name}: theflash gave {tuple(flash_v)}, parquet {tuple(parquet_v)}")
            ratio, paired = flash_s / parquet_s, paired_median(rounds)
            results[name] = {"theflash_s": round(flash_s, 3), "parquet_s": round(parquet_s, 3), "ratio": round(ratio, 2),
                             "paired_ratio": round(paired, 2)}
            print(f"{name:<24}{flash_s:>20.3f}{parquet_s:>11.3f}{ratio:>7.2f}{paired:>8.2f}")
            if args.rounds:
                print("    rounds: " + "  ".join(f"{a:.3f}/{b:.3f}" for a, b in rounds))
        live_rate = upstream.finish_updates() if args.live else None
        worst = max(r["ratio"] for r in results.values())
        worst_paired = max(r["paired_ratio"] for r in results.values())
        target = (1.25 if args.live else 1.1) if connector else None
        extra: dict[str, Any] = {"path": args.path}
        if connector:
            full = results["full_scan_sum"]
            extra = {**extra, "arrow_stream_rows_per_s": round(stream_rows_s),
                     "jvm_full_scan_rows_per_s": round(args.rows / full["theflash_s"]),
                     "parquet_full_scan_rows_per_s": round(args.rows / full["parquet_s"])}
            print(f"\nrows/s: Arrow stream {stream_rows_s / 1e6:.2f} M, JVM connector full scan "
                  f"{extra['jvm_full_scan_rows_per_s'] / 1e6:.2f} M, Spark's Parquet full scan "
                  f"{extra['parquet_full_scan_rows_per_s'] / 1e6:.2f} M")
        if live_rate is not None:
            print(f"\nlive updates: {live_rate:.0f} commits/s reached while the queries ran")
        print(f"\nworst ratio {worst:.2f} (best over best), {worst_paired:.2f} (median of the paired runs) "
              + (f"(target <= {target})" if target else "(no target: the jar-less path)"))
        print(json.dumps({"bench": "scan", "key": args.key, "rows": args.rows, "columns": len(columns()), "regions": args.regions,
                          "live": args.live, "live_commits_per_s": None if live_rate is None else round(live_rate),
                          "load_s": round(load_s, 1), "store_bytes": store_bytes, "parquet_bytes": parquet_bytes,
                          **extra, "results": results, "worst_ratio": round(worst, 2),
                          "worst_paired_ratio": round(worst_paired, 2), "target": target}))
        spark.stop()
    finally:
        close_in_process_service()  # its sessions' leases, before the store goes
        if service is not None:
            service.close()
        try:
            if writer is not None:
                writer.stop()
        finally:
            upstream.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
