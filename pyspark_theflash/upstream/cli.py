"""``theflash upstream``: run the embedded mini cluster with workloads.

    theflash upstream --data DIR --binlog DIR [--workload bank,orders] [--rate N] [--duration S]
    theflash upstream --data DIR --serve PORT [...]   # also serves Upstream gRPC, binlog gRPC, HTTP status

With ``--serve`` the binlog goes to ``--binlog`` or, when not given, to ``DIR/binlog``.
Stops cleanly on SIGINT/SIGTERM or when the workloads are done (``--duration``/``--count``).
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark_theflash.cli import CommandError
from pyspark_theflash.errors import TheFlashError
from pyspark_theflash.stop_signals import stop_on_signals

if TYPE_CHECKING:
    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.workloads import Workload


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("upstream", help="run the embedded mini cluster (TiDB+TiKV+PD) writing a binlog",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="cluster state directory (TSO, regions, catalog, data)")
    p.add_argument("--binlog", help="binlog segment directory to write (default: DATA/binlog when --serve is given; one of the two is needed)")
    p.add_argument("--serve", type=int, metavar="PORT",
                   help="serve the Upstream gRPC service on PORT (0 = any) plus the binlog service and HTTP status port "
                        "(default: not served, the binlog is written to --binlog only)")
    p.add_argument("--binlog-port", type=int, default=0, help="with --serve: binlog gRPC port (default: any)")
    p.add_argument("--status-port", type=int, default=0, help="with --serve: HTTP status port (default: any)")
    p.add_argument("--pd-port", type=int, default=0, help="with --serve: PD's gRPC port (pdpb.PD; default: any)")
    p.add_argument("--stores", type=int, default=1,
                   help="with --serve: TiKV stores on the wire, each a gRPC server of its own (tikvpb.Tikv, "
                        "cdcpb.ChangeData; default: 1)")
    p.add_argument("--workload", default="", help="comma list of workloads: bank, orders, types (default: none, the cluster only)")
    p.add_argument("--rate", type=float, default=0.0, help="transactions/s per workload (0 = as fast as possible; default %(default)s)")
    p.add_argument("--duration", type=float, help="seconds to run the workloads (default: until a signal)")
    p.add_argument("--count", type=int, help="transactions per workload (default: unlimited)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed of the workloads (the i-th workload uses seed + i; default %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="threads per workload (default %(default)s)")
    p.add_argument("--accounts", type=int, default=100, help="bank: number of accounts (default %(default)s)")
    p.add_argument("--faults", default="", help="comma list: dying, rollback, large, split_merge, schema (name=probability; default: none)")
    p.add_argument("--segment-bytes", type=int, default=64 << 20,
                   help="start a new binlog segment file past this many bytes (default %(default)s, 64 MiB)")
    p.add_argument("--resolved-ts-interval", type=float, default=0.1, help="seconds between resolved_ts events (default %(default)s)")
    p.add_argument("--region-split-keys", type=int, default=1000, help="split a region past this many keys (0 = never; default %(default)s)")
    p.add_argument("--lock-grace", type=float, default=10.0,
                   help="roll back transactions whose locks expired this many seconds ago (negative = never; "
                        "default %(default)s)")
    p.add_argument("--txn-mode", choices=("async", "2pc"), default="async",
                   help="how workload transactions spanning regions commit: async commit (TiDB >= 5.0's default) "
                        "or 2PC; one-region transactions use 1PC either way (default %(default)s)")
    p.add_argument("--gc-life-time", type=_duration, default="10m",
                   help="GC keeps versions this long (TiDB's tidb_gc_life_time; 500ms, 30s, 10m, 1h; default 10m)")
    p.add_argument("--gc-run-interval", type=_duration, default="10m",
                   help="time between GC runs (TiDB's tidb_gc_run_interval; 0 = never; default 10m)")
    p.set_defaults(func=run, port_options={"the Upstream service": "--serve", "PD": "--pd-port",
                                           "TiDB's status port": "--status-port", "the binlog service": "--binlog-port"})


def _duration(text: str) -> float:
    from pyspark_theflash.scan.errors import ScanOptionError
    from pyspark_theflash.scan.options import parse_duration_s

    try:
        return parse_duration_s("duration", text)
    except ScanOptionError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; write e.g. 500ms, 30s, 10m or 1h") from None


def run(args: argparse.Namespace) -> int:
    from pyspark_theflash.upstream.cluster import MiniCluster
    from pyspark_theflash.upstream.workloads import WORKLOADS, Faults, Workload

    if args.binlog is None and args.serve is None:
        raise CommandError("give --binlog DIR (write segment files) or --serve PORT (serve them too)")
    names = [n.strip() for n in args.workload.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise CommandError(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
    try:
        faults = Faults.parse(args.faults)
    except ValueError as err:
        raise CommandError(str(err)) from err
    binlog_dir = Path(args.binlog) if args.binlog else Path(args.data) / "binlog"

    stop = threading.Event()

    stop_on_signals(stop)  # signals reach the main thread only: elsewhere the caller stops it

    try:
        cluster = MiniCluster(
            args.data, binlog_dir, segment_bytes=args.segment_bytes,
            resolved_ts_interval=args.resolved_ts_interval,
            region_split_keys=args.region_split_keys or None,
            expired_lock_grace_s=args.lock_grace if args.lock_grace >= 0 else None,
            gc_life_time_s=args.gc_life_time, gc_run_interval_s=args.gc_run_interval or None,
        )
    except TheFlashError as err:  # a binlog held by another writer, a foreign log, ...
        raise CommandError(str(err)) from err
    workloads: list[Workload] = []
    try:
        print(f"upstream: data {Path(args.data).resolve()}, binlog file://{binlog_dir.resolve()}", flush=True)
        if args.serve is not None:
            addrs = cluster.serve(port=args.serve, status_port=args.status_port, binlog_port=args.binlog_port,
                                  pd_port=args.pd_port, stores=args.stores)
            print(f"upstream: serving upstream {addrs['upstream']}  binlog {addrs['binlog']}  "
                  f"status http://{addrs['status']}  pd {addrs['pd']}", flush=True)
        for i, name in enumerate(names):
            kw: dict[str, object] = {"accounts": args.accounts} if name == "bank" else {}
            w = WORKLOADS[name](cluster, seed=args.seed + i, rate=args.rate, duration_s=args.duration,
                                count=args.count, threads=args.threads, faults=faults,
                                async_commit=args.txn_mode == "async", **kw)
            w.setup()
            w.start()
            workloads.append(w)
        began = time.monotonic()
        while not stop.wait(1.0):
            _progress(cluster, workloads, time.monotonic() - began)
            if workloads and not any(w.running() for w in workloads):
                break
            if not workloads and args.duration is not None and time.monotonic() - began >= args.duration:
                break
        for w in workloads:
            w.stop()
        _progress(cluster, workloads, time.monotonic() - began)
        for w in workloads:
            if w.stats.errors:
                print(f"upstream: {w.name}: {len(w.stats.errors)} error(s), first: {w.stats.errors[0]}", flush=True)
    finally:
        for w in workloads:
            w.stop()
        cluster.close()
    print("upstream: stopped cleanly", flush=True)
    return 0


def _progress(cluster: MiniCluster, workloads: list[Workload], elapsed: float) -> None:
    parts = [f"{w.name}: {w.stats.summary()}" + (f" errors={len(w.stats.errors)}" if w.stats.errors else "")
             for w in workloads]
    print(f"upstream: {elapsed:6.1f}s ts={cluster.tso.current()} regions={len(cluster.regions())} "
          f"events={cluster.store.events_emitted} | " + " | ".join(parts), flush=True)
    sys.stdout.flush()
