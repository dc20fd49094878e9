"""theflash capture: replicate a TiDB cluster's changes into the binlog (docs/capture.md)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

EPILOG = """\
Capture registers every region of the captured tables on TiKV's change-data feed (one stream
per store), writes each region's retained versions and open locks as a snapshot, then its
changes in raft order, batched resolved ts and TiDB's DDL jobs (from the status port's
/ddl/history) into the binlog's segment files in DIR. It holds a PD service GC safe point
(service id theflash-capture-...) at the oldest ts the binlog still needs, and resumes from
DIR after a crash or SIGKILL. The writer then applies DIR:

  theflash writer run --binlog file://DIR --store STORE [--until-caught-up]

The binlog carries the table infos (every DDL job of the captured tables that TiDB's history
still lists); give the writer --schema-url http://HOST:STATUS_PORT for tables created before
the oldest job TiDB keeps (2048).
"""


def register(sub: Any) -> None:
    p = sub.add_parser("capture", help="replicate a TiDB cluster's changes into the binlog (PD, TiKV CDC, TiDB status)",
                       description=__doc__.splitlines()[0], epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pd", required=True, metavar="HOST:PORT[,HOST:PORT...]",
                   help="PD members' client addresses, the gRPC client port (2379 by default; pd:// prefix allowed)")
    p.add_argument("--pd-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="how long the start waits for a PD member to answer before it exits (default: 5)")
    p.add_argument("--tidb", required=True, metavar="http://HOST:STATUS_PORT",
                   help="a TiDB server's status port (10080 by default): table infos and DDL history")
    p.add_argument("--binlog", required=True, metavar="DIR", help="binlog segment directory to write (created)")
    p.add_argument("--tables", metavar="db.t1,db.t2", help="tables to capture (default: every user table)")
    p.add_argument("--until-ts", type=int, metavar="TS",
                   help="exit 0 once every captured region has a resolved ts >= TS durable in the binlog")
    p.add_argument("--serve-binlog", type=int, metavar="PORT",
                   help="also serve the binlog over gRPC on 127.0.0.1:PORT (0 = any), for writer run --binlog grpc://...")
    p.add_argument("--gc-ttl", type=int, default=3600, metavar="SECONDS",
                   help="TTL of capture's PD service GC safe point, renewed every 10 s (default: 3600)")
    p.add_argument("--ddl-poll", type=float, default=0.2, metavar="SECONDS",
                   help="how often /ddl/history (with a PD ts: the DDL frontier) is read while no row waits for it "
                        "(default: 0.2)")
    p.add_argument("--ddl-poll-min", type=float, default=0.05, metavar="SECONDS",
                   help="while rows wait for the DDL frontier it is read again at once, but at most this often "
                        "(default: 0.05); rows wait about this long for it under a steady feed")
    p.add_argument("--resolve-locks-after", type=float, default=4.0, metavar="SECONDS",
                   help="resolve the locks of a region whose resolved ts lags PD's clock this long, as TiCDC does "
                        "for stuck regions (KvScanLock, then client-go's lock resolver rules), at most every 10 s per "
                        "region; 0 = never (default: 4)")
    p.set_defaults(func=run, port_options={"the binlog service": "--serve-binlog"})


def run(args: argparse.Namespace) -> int:
    from pyspark_theflash.capture import Capture, CaptureError, CaptureOptions
    from pyspark_theflash.upstream.errors import UpstreamError
    from pyspark_theflash.cli import CommandError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    tables = [t.strip() for t in args.tables.split(",") if t.strip()] if args.tables else None
    for t in tables or ():
        if t.count(".") != 1:
            raise CommandError(f"--tables wants db.table names, got {t!r}")
    if args.ddl_poll <= 0 or args.ddl_poll_min < 0:
        raise CommandError(f"--ddl-poll wants seconds > 0 and --ddl-poll-min seconds >= 0, got {args.ddl_poll} "
                           f"and {args.ddl_poll_min}")
    opts = CaptureOptions(pd=args.pd, tidb=args.tidb, binlog=args.binlog, tables=tables, until_ts=args.until_ts,
                          serve_binlog=args.serve_binlog, gc_ttl_s=args.gc_ttl, ddl_poll_s=args.ddl_poll,
                          ddl_poll_min_s=args.ddl_poll_min,
                          resolve_locks_after_s=args.resolve_locks_after,
                          pd_first_connect_timeout_s=args.pd_timeout)
    from pyspark_theflash.binlog.errors import BinlogLockedError

    def locked(exc: BinlogLockedError) -> CommandError:
        return CommandError(f"{exc}: another `theflash capture` (or a writer) already appends to --binlog "
                            f"{args.binlog}; stop it first, or give this capture another --binlog directory")

    try:
        capture = Capture(opts, progress=lambda msg: print(f"capture: {msg}", flush=True))
    except BinlogLockedError as exc:
        raise locked(exc) from None
    except (CaptureError, UpstreamError) as exc:
        raise CommandError(str(exc)) from None
    # capture.stop() sets an Event the main thread waits on: never inside the handler itself
    from pyspark_theflash.stop_signals import run_from_handler

    signal.signal(signal.SIGTERM, lambda *_: run_from_handler(capture.stop))
    signal.signal(signal.SIGINT, lambda *_: run_from_handler(capture.stop))
    try:
        return capture.run()
    except BinlogLockedError as exc:
        raise locked(exc) from None
    except (CaptureError, UpstreamError) as exc:
        raise CommandError(str(exc)) from None
