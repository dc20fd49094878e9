"""``theflash demo``: mini cluster → binlog → writer → store → Spark, with a report."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the whole loop on the embedded mini cluster and print a report",
        description="Start the embedded mini cluster with the bank and orders workloads (transactions "
        "that die after prewrite and region splits included), the writer on its binlog stream, and a "
        "local Spark session that reads the store while writes continue.",
    )
    p.add_argument("--dir", help="working directory for cluster, binlog and store (default: a new temporary one, removed at the end)")
    p.add_argument("--queries", type=int, default=8, help="bank total queries while the workloads run (default: 8)")
    p.add_argument("--rate", type=float, default=40.0, help="transactions/s per workload (default: 40)")
    p.add_argument("--accounts", type=int, default=200, help="bank accounts (default: 200)")
    p.add_argument("--keep", action="store_true", help="keep the working directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pyspark_theflash.cli import CommandError
    from pyspark_theflash.demo.main_job import DemoConfig, DemoFailure, run_demo

    try:
        return run_demo(DemoConfig(workdir=args.dir, queries=args.queries, rate=args.rate,
                                   accounts=args.accounts, keep=args.keep))
    except DemoFailure as exc:
        raise CommandError(str(exc)) from exc
