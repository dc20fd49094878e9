"""``theflash binlog``: look into a change log, serve it, trim it.

    theflash binlog dump <dir|file:///dir|grpc://host:port> [--from S:O] [--limit N] [--follow]
                         [--region ID ...] [--schema-url http://host:port]
    theflash binlog status <dir|file:///dir|grpc://host:port> [--quick] [--deep]
    theflash binlog serve <dir> [--host 127.0.0.1] [--port 0]
    theflash binlog prune <dir> --before S:O

``dump`` prints one block per event: position, region, index, epoch and kind, then the rows
(type, op, start_ts/commit_ts, key as table/handle, values decoded by the schema fetched from
``--schema-url`` at ``/db-table/{table_id}``, else hex), admin commands with region ranges,
snapshot counts and first keys, resolved_ts as a TSO and a UTC time. Without ``--follow`` it
stops at the log's head.
"""
from __future__ import annotations

import argparse
import sys
import threading
from typing import TYPE_CHECKING

from pyspark_theflash.cli import CommandError
from pyspark_theflash.stop_signals import stop_on_signals

if TYPE_CHECKING:
    from pyspark_theflash.binlog.position import Position


def _position(text: str) -> Position:
    from pyspark_theflash.binlog.position import Position

    try:
        return Position.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "binlog", help="dump, inspect, serve or prune a binlog", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="binlog_command", metavar="SUBCOMMAND", required=True)

    dump = sub.add_parser("dump", help="print events human-readably")
    dump.add_argument("source", help="binlog directory, file:///dir or grpc://host:port")
    dump.add_argument("--from", dest="start", type=_position, metavar="S:O",
                      help="start at this position (default: the oldest available)")
    dump.add_argument("--limit", type=int, metavar="N", help="stop after N events (default: no limit)")
    dump.add_argument("--follow", action="store_true", help="keep printing new events until interrupted")
    dump.add_argument("--region", type=int, action="append", metavar="ID",
                      help="only events of this region (repeatable; default: every region)")
    dump.add_argument("--schema-url", metavar="URL",
                      help="TiDB-style status port (http://host:port) to decode row values by /db-table/{id} "
                           "(default: none, row values shown undecoded)")
    dump.set_defaults(func=run_dump)

    status = sub.add_parser(
        "status", help="print head, tail and segments; check every record of every segment",
        description="Print the binlog's head, tail and segments, after walking every record of every segment "
        "(framing and checksum, as the writer and dump read them): damage anywhere exits 2 naming the segment "
        "file and offset, as they do. --quick reads only the head and the tail.")
    status.add_argument("source", help="binlog directory, file:///dir or grpc://host:port")
    status.add_argument("--quick", action="store_true",
                        help="check only the ends (head and tail), not every record: damage in between goes unseen")
    status.add_argument("--deep", action="store_true",
                        help="for grpc://: also pull every event through the service (a directory is always walked)")
    status.set_defaults(func=run_status)

    serve = sub.add_parser("serve", help="serve a binlog directory over gRPC until interrupted")
    serve.add_argument("directory", help="the binlog directory to serve")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    serve.add_argument("--port", type=int, default=0, help="port to listen on; 0: the OS chooses one, printed (default %(default)s)")
    serve.set_defaults(func=run_serve, port_options={"the binlog service": "--port"})

    prune = sub.add_parser("prune", help="delete whole segments before a position (never the newest)")
    prune.add_argument("directory", help="the binlog directory to prune")
    prune.add_argument("--before", type=_position, required=True, metavar="S:O",
                       help="delete the segments wholly before this position (segment:offset, as dump prints it)")
    prune.set_defaults(func=run_prune)


def run_dump(args: argparse.Namespace) -> int:
    from pyspark_theflash.binlog.dump import SchemaCache, format_event
    from pyspark_theflash.binlog.errors import BinlogError
    from pyspark_theflash.binlog.open import open_source

    if args.limit is not None and args.limit < 0:
        raise CommandError("--limit must be 0 or more")
    schemas = SchemaCache(args.schema_url) if args.schema_url else None
    printed = 0
    try:
        with open_source(args.source, args.start, args.region) as source:
            head = None if args.follow else source.head()
            while args.limit is None or printed < args.limit:
                wanted = 256 if args.limit is None else min(256, args.limit - printed)
                for record in source.read(wanted, timeout_s=0.5 if args.follow else 0.1):
                    print(format_event(record, schemas))
                    printed += 1
                sys.stdout.flush()
                if head is not None and source.position is not None and source.position >= head:
                    break
    except BinlogError as exc:
        raise CommandError(str(exc)) from None
    return 0  # (`... | head` closing the pipe early is handled by the theflash command itself)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError


def run_status(args: argparse.Namespace) -> int:
    from pyspark_theflash.binlog import segment
    from pyspark_theflash.binlog.errors import BinlogError
    from pyspark_theflash.binlog.open import open_source, parse_source_url

    try:
        kind, where = parse_source_url(args.source)
        checked = None
        if not args.quick and (kind == "file" or args.deep):
            checked = _walk(args.source, kind, where)  # damage raises before anything is printed
        with open_source(args.source) as source:
            print(f"binlog {source.url}")
            print(f"head     {source.head()}")
            print(f"tail     {source.tail()}")
        if kind == "file":
            infos = segment.segments(where)
            print(f"segments {len(infos)} ({_size(sum(i.size for i in infos))})")
            for info in infos:
                print(f"  {info.path.name}  {_size(info.size):>10}  first {info.first}")
        if checked is not None:
            print(f"checked  {checked} records, every segment: framing and checksums whole")
        elif args.quick:
            print("checked  the ends only (--quick): damage between them goes unseen; run without --quick")
        else:
            print("checked  the ends only: the service checks what it serves; --deep pulls every event through it")
    except BinlogError as exc:
        raise CommandError(str(exc)) from None
    return 0


def _walk(url: str, kind: str, where: str) -> int:
    """Every record from the tail to the head, checked as the writer and dump read them (a
    directory's records by framing and checksum, without parsing; a gRPC source's events pulled
    through it). Damage raises the same ``BinlogError``; returns how many records there were."""
    from pyspark_theflash.binlog.segment import SegmentReader
    from pyspark_theflash.binlog.open import open_source

    records = 0
    if kind == "file":
        with SegmentReader(where) as reader:
            while True:
                batch = reader.read_raw_batch(4096)
                if not batch:
                    return records
                records += len(batch)
    with open_source(url) as source:
        head = source.head()
        while True:
            events = source.read(4096, timeout_s=0.5)
            records += len(events)
            if not events or source.position is None or source.position >= head:
                return records


def run_serve(args: argparse.Namespace) -> int:
    from pyspark_theflash.binlog.errors import BinlogError
    from pyspark_theflash.binlog.service import serve_binlog

    try:
        server = serve_binlog(args.directory, args.host, args.port)
    except BinlogError as exc:
        raise CommandError(str(exc)) from None
    # Until SIGINT or SIGTERM, handled explicitly: a process started in the background by a
    # non-interactive shell inherits SIGINT as ignored, and Ctrl-C / kill must stop it anyway.
    stopped = threading.Event()
    received: list[int] = []

    stop_on_signals(stopped, received.append)
    print(f"serving {args.directory} at {server.url}", flush=True)
    try:
        stopped.wait()
    finally:
        server.stop()
    return 128 + received[0]  # as a process ended by that signal: 130 for Ctrl-C


def run_prune(args: argparse.Namespace) -> int:
    from pyspark_theflash.binlog.errors import BinlogError
    from pyspark_theflash.binlog.segment import prune

    try:
        deleted = prune(args.directory, args.before)
    except (BinlogError, OSError) as exc:
        raise CommandError(str(exc)) from None
    for path in deleted:
        print(f"deleted {path}")
    print(f"{len(deleted)} segment(s) deleted")
    return 0
