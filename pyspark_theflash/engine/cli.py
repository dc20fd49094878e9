"""``theflash sql``: a whole query at one snapshot ts, computed by the ClickHouse engine."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sql", help="run a SQL query over a ClickHouse-engine store at one snapshot ts",
        description="Run a query (ClickHouse SQL; tables named db.table) over a store whose engine is clickhouse, "
        "at one snapshot ts (--ts, or a fresh one from the upstream), next to the data. The store's ClickHouse "
        "directory must not be held by another process (stop its writer, or ask its service).")
    parser.add_argument("query", help='e.g. "SELECT status, sum(total) FROM shop.orders GROUP BY status"')
    parser.add_argument("--store", required=True, help="store directory")
    parser.add_argument("--ts", type=int, help="snapshot ts (default: a fresh ts from the upstream TSO)")
    parser.add_argument("--upstream", help="the upstream: pd://HOST:PORT[,...] of a TiDB cluster or grpc://host:port of the mini cluster's private service (default: the one the writer recorded)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table",
                        help="output: an aligned table, JSON lines, or CSV (default %(default)s)")
    parser.set_defaults(func=_sql)


def _sql(args: argparse.Namespace) -> int:
    from pyspark_theflash.cli import CommandError
    from pyspark_theflash.engine import open_engine
    from pyspark_theflash.engine.clickhouse.calculator import run_sql
    from pyspark_theflash.errors import TheFlashError

    try:
        engine = open_engine(args.store, readonly=True, upstream=args.upstream)
    except TheFlashError as exc:
        raise CommandError(str(exc)) from None
    try:
        if engine.kind != "clickhouse":
            raise CommandError(f"store {args.store} uses the {engine.kind} engine: `theflash sql` runs on the "
                               "clickhouse engine (a writer started with --engine clickhouse)")
        try:
            out = run_sql(engine, args.query, args.ts)
        except TheFlashError as exc:
            raise CommandError(str(exc)) from None
    finally:
        engine.close()
    rows = out.result.to_pylist()
    if args.format == "json":
        for r in rows:
            print(json.dumps(r, default=str))
    elif args.format == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(out.result.column_names)
        for r in rows:
            w.writerow([r[c] for c in out.result.column_names])
    else:
        names = out.result.column_names
        cells = [[("NULL" if r[c] is None else str(r[c])) for c in names] for r in rows]
        widths = [max([len(n)] + [len(row[i]) for row in cells]) for i, n in enumerate(names)]
        print("  ".join(n.ljust(w) for n, w in zip(names, widths)))
        for row in cells:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    print(f"-- {len(rows)} rows at snapshot ts {out.ts} ({', '.join(out.tables)}), {out.seconds * 1000:.1f} ms in "
          "ClickHouse", file=sys.stderr)
    return 0
