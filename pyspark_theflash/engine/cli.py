"""``theflash sql``: a whole read-only query at one snapshot ts, computed next to the data: by
ClickHouse on a ClickHouse-engine store, by DuckDB over the read streams on a native one."""
from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    import pyarrow as pa

    from pyspark_theflash.engine.interface import SqlResult


# the read options this command takes, as its flags (an error's remedy names these)
FLAGS = {"snapshot_ts": "--ts", "as_of": "--ts", "snapshot": "--snapshot", "max_staleness": "--max-staleness",
         "upstream": "--upstream"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sql", help="run a read-only SQL query over a store at one snapshot ts",
        description="Run a read-only query (tables named db.table) over a store at one snapshot ts (--ts, or a fresh "
        "one from the upstream), next to the data: every table it reads is read at that ts. On a native store DuckDB "
        "computes it (DuckDB SQL) over the tables' read streams; on a ClickHouse-engine store ClickHouse does "
        "(ClickHouse SQL). A ClickHouse store's directory belongs to one process at a time: while its writer (writer "
        "run --serve), a `theflash serve` or a Spark driver's service holds it, send the query to that service with "
        "--server.")
    parser.add_argument("query", help='e.g. "SELECT status, sum(total) FROM shop.orders GROUP BY status"')
    parser.add_argument("--store", help="store directory (required without --server; with it, the store to ask a "
                        "service that reads any store about, e.g. theflash_session()'s; default: none)")
    parser.add_argument("--server", help="http://host:port of the TheFlash service holding the store (theflash serve, "
                        "writer run --serve, or spark.conf.get('theflash.server') of a theflash_session()): the query "
                        "runs there (POST /v1/sql; default: none, the query runs in this process over --store)")
    parser.add_argument("--token-file", help="with --server: the service's bearer token, on the file's first line "
                        "(default: the THEFLASH_TOKEN environment variable)")
    parser.add_argument("--ts", type=int, help="snapshot ts (default: a fresh ts from the upstream TSO)")
    parser.add_argument("--snapshot", choices=["fresh", "resolved"], default=None,
                        help="without --ts: fresh (default) asks the upstream for a ts; resolved reads at the newest ts "
                        "every table has resolved in the store, without the upstream (a stopped writer's store)")
    parser.add_argument("--max-staleness", help="without --ts: bounded staleness (5s): a fresh ts if the store catches "
                        "up within it, else the resolved ts if no older than it (default: none, a fresh ts the query waits for)")
    parser.add_argument("--upstream", help="the upstream: pd://HOST:PORT[,...] of a TiDB cluster or grpc://host:port of the mini cluster's private service (default: the one the writer recorded)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table",
                        help="output: an aligned table, JSON lines, or CSV (default %(default)s)")
    parser.set_defaults(func=_sql)


def _sql(args: argparse.Namespace) -> int:
    from pyspark_theflash.cli import CommandError

    if args.server:
        out = _sql_through_service(args)
    elif not args.store:
        raise CommandError("give the store (--store DIR), or the service that holds it (--server http://host:port)")
    else:
        out = _sql_here(args)
    write_result(out.result, args.format, sys.stdout)
    print(f"-- {out.result.num_rows} rows at snapshot ts {out.ts} ({', '.join(out.tables)}), {out.seconds * 1000:.1f} ms in "
          f"{out.computed_by}", file=sys.stderr)
    return 0


def write_result(result: pa.Table, fmt: str, out: TextIO) -> None:
    """A query's result (an Arrow table) as ``fmt``: ``table`` (aligned columns, NULL for a
    null), ``csv`` (a header line; a null is an empty field) or ``json`` (one object a row; a
    null is null). Bytes (BINARY, BLOB) are hexadecimal, ``0x`` then two digits a byte, in
    every format; DECIMAL keeps its digits (a JSON string, not a float); dates and times are
    ISO 8601 (TIME as [-]HH:MM:SS[.ffffff]); JSON columns are their JSON text."""
    names = result.column_names
    columns = [[_cell(v) for v in column.to_pylist()] for column in result.columns]
    rows = [[c[i] for c in columns] for i in range(result.num_rows)]
    if fmt == "json":
        numeric = [_json_number(f.type) for f in result.schema]
        for row in rows:
            out.write(json.dumps({n: (v if v is None or not isinstance(v, str) or not num else json.loads(v))
                                  for n, v, num in zip(names, row, numeric)}, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        import csv

        w = csv.writer(out, lineterminator="\n")
        w.writerow(names)
        w.writerows([["" if v is None else v for v in row] for row in rows])
    else:
        cells: list[list[str]] = [["NULL" if v is None else v for v in row] for row in rows]
        widths = [max([len(n)] + [len(line[i]) for line in cells]) for i, n in enumerate(names)]
        out.write("  ".join(n.ljust(w) for n, w in zip(names, widths)).rstrip() + "\n")
        for line in cells:
            out.write("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() + "\n")


def _json_number(t: object) -> bool:
    """Whether a column's values are JSON numbers or booleans (DECIMAL is not: a float would
    round it)."""
    import pyarrow as pa

    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))


def _cell(v: object) -> str | None:
    """One value as text (None for a null)."""
    import datetime

    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "0x" + bytes(v).hex()
    if isinstance(v, float):
        return repr(v) if v == v and v not in (float("inf"), float("-inf")) else json.dumps(v)
    if isinstance(v, datetime.timedelta):
        micros = abs(v) // datetime.timedelta(microseconds=1)
        seconds, us = divmod(micros, 1_000_000)
        text = f"{'-' if v < datetime.timedelta(0) else ''}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        return text + (f".{us:06d}" if us else "")
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat(sep=" ") if isinstance(v, datetime.datetime) else v.isoformat()
    if isinstance(v, (list, dict)):  # ClickHouse arrays, tuples and maps
        return json.dumps(v, default=lambda x: _cell(x), ensure_ascii=False)
    return str(v)


def _sql_here(args: argparse.Namespace) -> SqlResult:
    """The query in this process, which opens the store (a ClickHouse store's directory too)."""
    from pyspark_theflash.cli import CommandError
    from pyspark_theflash.engine import open_engine
    from pyspark_theflash.engine.clickhouse.errors import ClickHouseDirectoryBusyError
    from pyspark_theflash.errors import TheFlashError
    from pyspark_theflash.scan.engine_sessions import PlannedSessions
    from pyspark_theflash.scan.errors import ScanError, as_flags, spelled

    try:
        engine = open_engine(args.store, readonly=True, sessions=PlannedSessions(upstream=args.upstream))
    except ClickHouseDirectoryBusyError as exc:
        raise CommandError(f"{exc}\nRun the query through that process's service instead: theflash sql --server "
                           f"http://HOST:PORT --store {args.store} \"...\" (the address it serves at; a Spark "
                           "driver's theflash_session() has it in spark.conf.get('theflash.server'), its token "
                           "in 'theflash.token')") from None
    except TheFlashError as exc:
        raise CommandError(str(exc)) from None
    try:
        try:
            with spelled(as_flags(FLAGS)):
                return engine.run_sql(args.query, args.ts, _snapshot_choice(args))
        except ScanError as exc:  # its remedy in this command's flags
            raise CommandError(exc.phrased(as_flags(FLAGS))) from None
        except TheFlashError as exc:
            raise CommandError(str(exc)) from None
    finally:
        engine.close()


def _snapshot_choice(args: argparse.Namespace) -> dict[str, str]:
    """--snapshot / --max-staleness as the read options snapshot / max_staleness."""
    from pyspark_theflash.cli import CommandError

    if args.ts is not None and (args.snapshot or args.max_staleness):
        raise CommandError("--ts names the snapshot; --snapshot and --max-staleness choose one: give one or the other")
    if args.snapshot == "resolved" and args.max_staleness:
        raise CommandError("--snapshot resolved reads the resolved ts whatever its age; --max-staleness chooses between "
                           "a fresh and the resolved ts: give one or the other")
    return {k: v for k, v in (("snapshot", args.snapshot), ("max_staleness", args.max_staleness)) if v}


def _sql_through_service(args: argparse.Namespace) -> SqlResult:
    """The query sent to the service at ``--server`` (``POST /v1/sql``), its answer as
    ``run_sql`` gives it."""
    import http.client
    import os
    from urllib.parse import urlparse

    import pyarrow as pa

    from pyspark_theflash.cli import CommandError
    from pyspark_theflash.engine import SqlResult
    from pyspark_theflash.scan.bearer_token import BearerToken

    url = urlparse(args.server if "://" in args.server else "http://" + args.server)
    if url.scheme != "http" or not url.hostname:
        raise CommandError(f"--server {args.server!r}: give the service's HTTP address, http://host:port")
    try:
        token = BearerToken.from_options(None, args.token_file) or BearerToken.from_environment()
    except Exception as exc:  # an unreadable token file
        raise CommandError(str(exc)) from None
    body: dict[str, object] = {"sql": args.query, "option_flags": FLAGS}  # remedies name this command's flags
    if args.ts is not None:
        body["snapshot_ts"] = args.ts
    body.update(_snapshot_choice(args))
    if args.store:
        body["store"] = os.path.abspath(args.store)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = token.header()
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=600)
    try:
        conn.request("POST", "/v1/sql", body=json.dumps(body).encode(), headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    except OSError as exc:
        raise CommandError(f"the service at {args.server} did not answer: {exc}; is it running?") from None
    finally:
        conn.close()
    if resp.status != 200:
        try:
            err = json.loads(data)
            err = err.get("error", err) if isinstance(err, dict) else {}  # {"error": {"code", "status", "message"}}
            detail = f"{err.get('message')} ({err.get('code')})"
        except ValueError:
            detail = data[:500].decode(errors="replace")
        if 400 <= resp.status < 500:  # the query's to fix: the message says how
            raise CommandError(detail)
        raise CommandError(f"the service at {args.server} answered {resp.status}: {detail}")
    result = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    tables = resp.getheader("X-TheFlash-Tables") or ""
    return SqlResult(int(resp.getheader("X-TheFlash-Snapshot-Ts") or 0), tuple(t for t in tables.split(",") if t),
                     result, float(resp.getheader("X-TheFlash-Seconds") or 0.0),
                     resp.getheader("X-TheFlash-Computed-By") or "ClickHouse")
