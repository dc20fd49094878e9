"""theflash capture: replicate a TiDB cluster's changes into the binlog (docs/capture.md)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
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


ACTIONS = ("run", "start", "stop", "status")


def register(sub: Any) -> None:
    p = sub.add_parser("capture", help="replicate a TiDB cluster's changes into the binlog (PD, TiKV CDC, TiDB status)",
                       description="Replicate a TiDB cluster's changes into the binlog (docs/capture.md): `run` "
                                   "(the default: `theflash capture --pd ...` runs it), `start` (the same in the "
                                   "background), `stop`, `status`.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    run_p = actions.add_parser("run", help="capture in this process until stopped (SIGINT/SIGTERM) or --until-ts",
                               description="Capture in this process until SIGINT/SIGTERM (a stop line, the state "
                                           "saved) or --until-ts.", epilog=EPILOG,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_options(run_p)
    run_p.add_argument("--daemon", action="store_true", help="detach, as `start` does (default: off)")
    run_p.set_defaults(func=run)
    start_p = actions.add_parser("start", help="capture in the background (the log in --log; `capture stop` ends it)",
                                 description="Start `capture run` detached, its output in --log; returns once it "
                                             "holds --binlog.", epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_options(start_p)
    start_p.set_defaults(func=_start)
    stop_p = actions.add_parser("stop", help="stop the capture that writes --binlog (SIGTERM, then wait for it)",
                                description="SIGTERM the capture whose pid file is in --binlog and wait until it "
                                            "saved its state and exited.")
    stop_p.add_argument("--binlog", required=True, metavar="DIR", help="the binlog directory capture writes")
    stop_p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long to wait for it to exit (default: 60)")
    stop_p.set_defaults(func=_stop)
    status_p = actions.add_parser("status", help="whether a capture writes --binlog, and its last status",
                                  description="Whether a capture process writes --binlog, and the status it wrote "
                                              "last (regions, least resolved ts and lag, rows written, errors).")
    status_p.add_argument("--binlog", required=True, metavar="DIR", help="the binlog directory capture writes")
    status_p.add_argument("--json", action="store_true", help="print the status as JSON (default: text)")
    status_p.set_defaults(func=_status)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pd", required=True, metavar="HOST:PORT[,HOST:PORT...]",
                   help="PD members' client addresses, the gRPC client port (2379 by default; pd:// prefix allowed)")
    p.add_argument("--pd-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="how long the start waits for a PD member to answer before it exits (default: 5)")
    p.add_argument("--tidb", required=True, metavar="http://HOST:STATUS_PORT",
                   help="a TiDB server's status port (10080 by default): table infos and DDL history")
    p.add_argument("--binlog", required=True, metavar="DIR", help="binlog segment directory to write (created)")
    p.add_argument("--tables", metavar="db.t1,db.t2", help="tables to capture (default: every user table)")
    p.add_argument("--until-ts", type=int, metavar="TS",
                   help="exit 0 once every captured region has a resolved ts >= TS durable in the binlog "
                        "(default: run until stopped)")
    p.add_argument("--serve-binlog", type=int, metavar="PORT",
                   help="also serve the binlog over gRPC on 127.0.0.1:PORT (0 = any), for writer run --binlog "
                        "grpc://... (default: off)")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve Prometheus text at http://127.0.0.1:PORT/metrics, JSON at /status and a health "
                        "check at /healthz (0 = any free port; default: off)")
    p.add_argument("--log", metavar="FILE",
                   help="append the log and progress lines to FILE (default: progress on stdout, the log on stderr; "
                        "`start` and --daemon: DIR/capture.log)")
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
    p.add_argument("--scan-limit", type=int, default=4096, metavar="N",  # (registration_pacer.DEFAULT_SCAN_LIMIT)
                   help="registrations in flight per TiKV store (sent, initial scan not yet done); the others wait, "
                        "so a restart or a store's return does not swamp TiKV's scan queue (10,000) (default: 4096)")
    p.set_defaults(port_options={"the binlog service": "--serve-binlog", "the metrics endpoint": "--metrics-port"})


def _run_argv(args: argparse.Namespace) -> list[str]:
    """The run options of ``args`` as arguments again (for the detached process)."""
    probe = argparse.ArgumentParser(add_help=False)
    _add_run_options(probe)
    argv: list[str] = []
    for action in probe._actions:
        value = getattr(args, action.dest, None)
        if action.option_strings and value is not None and value != action.default:
            argv += [action.option_strings[0], str(value)]
    return argv


def _log_file(args: argparse.Namespace) -> str:
    return args.log or str(Path(args.binlog) / "capture.log")


def _start(args: argparse.Namespace) -> int:
    from pyspark_theflash.capture.daemon import running_pid, start_detached
    from pyspark_theflash.capture.errors import CaptureError
    from pyspark_theflash.cli import CommandError

    Path(args.binlog).mkdir(parents=True, exist_ok=True)
    pid = running_pid(args.binlog)
    if pid is not None:
        raise CommandError(f"a capture (pid {pid}) already writes --binlog {args.binlog}; `theflash capture stop "
                           f"--binlog {args.binlog}` first, or give this one another --binlog")
    log_file = _log_file(args)
    argv = _without_option(_run_argv(args), "--log") + ["--log", log_file]
    try:
        pid = start_detached(argv, args.binlog, log_file)
    except CaptureError as exc:
        raise CommandError(str(exc)) from None
    print(f"capture started (pid {pid}) writing {args.binlog}; log {log_file}; stop with `theflash capture stop "
          f"--binlog {args.binlog}`")
    return 0


def _without_option(argv: list[str], flag: str) -> list[str]:
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        else:
            out.append(a)
    return out


def _stop(args: argparse.Namespace) -> int:
    from pyspark_theflash.capture.daemon import stop
    from pyspark_theflash.capture.errors import CaptureError
    from pyspark_theflash.cli import CommandError

    try:
        pid = stop(args.binlog, args.timeout)
    except CaptureError as exc:
        raise CommandError(str(exc)) from None
    print(f"capture (pid {pid}) stopped; its state is saved in {args.binlog}")
    return 0


def _status(args: argparse.Namespace) -> int:
    import json
    import time

    from pyspark_theflash.capture.daemon import running_pid
    from pyspark_theflash.capture.status import read_status
    from pyspark_theflash.cli import CommandError

    if not Path(args.binlog).is_dir():
        raise CommandError(f"no binlog directory {args.binlog}; give the --binlog a capture writes")
    pid = running_pid(args.binlog)
    status = read_status(Path(args.binlog)) or {}
    if pid is None and status.get("state") == "running":
        status = {**status, "state": "stopped (killed: it wrote no stop)"}
    if args.json:
        print(json.dumps({"running": pid is not None, "pid": pid, **status}))
        return 0 if pid is not None else 3
    if pid is not None:
        print(f"capture running (pid {pid}) writing {args.binlog}")
    else:
        print(f"no capture running for {args.binlog}")
    if status:
        age = time.time() - float(status.get("at") or time.time())
        lag = status.get("lag_s")
        errors = ", ".join(f"{k} {v}" for k, v in sorted((status.get("errors") or {}).items())) or "none"
        print(f"last status ({age:,.0f} s ago, {status.get('state')}): {status.get('regions', 0):,} regions "
              f"({status.get('initialised', 0):,} initialised, {status.get('pending_lookups', 0)} to look up), "
              f"least resolved ts {status.get('least_resolved_ts')}"
              + (f" ({lag:,.1f} s behind PD)" if lag is not None else "")
              + f"; {status.get('rows_written', 0):,} rows, {status.get('events_written', 0):,} events written; "
              f"{status.get('held_events', 0)} held for the DDL frontier; errors: {errors}")
        if not status.get("healthy", True) and status.get("unhealthy_reason"):
            print(f"unhealthy: {status['unhealthy_reason']}")
    return 0 if pid is not None else 3


def run(args: argparse.Namespace) -> int:
    if args.daemon:
        return _start(args)
    from pyspark_theflash.capture import Capture, CaptureError, CaptureOptions
    from pyspark_theflash.capture.daemon import remove_pid_file, write_pid_file
    from pyspark_theflash.upstream_client.errors import UpstreamError
    from pyspark_theflash.cli import CommandError

    if args.log:
        Path(args.log).parent.mkdir(parents=True, exist_ok=True)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s",
                            filename=args.log)
        progress_log = logging.getLogger("theflash.capture.progress")

        def say(msg: str) -> None:
            progress_log.info("%s", msg)
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)

        def say(msg: str) -> None:
            print(f"capture: {msg}", flush=True)

    tables = [t.strip() for t in args.tables.split(",") if t.strip()] if args.tables else None
    for t in tables or ():
        if t.count(".") != 1:
            raise CommandError(f"--tables wants db.table names, got {t!r}")
    if args.scan_limit < 1:
        raise CommandError(f"--scan-limit wants a number of registrations >= 1, got {args.scan_limit}")
    if args.ddl_poll <= 0 or args.ddl_poll_min < 0:
        raise CommandError(f"--ddl-poll wants seconds > 0 and --ddl-poll-min seconds >= 0, got {args.ddl_poll} "
                           f"and {args.ddl_poll_min}")
    opts = CaptureOptions(pd=args.pd, tidb=args.tidb, binlog=args.binlog, tables=tables, until_ts=args.until_ts,
                          serve_binlog=args.serve_binlog, gc_ttl_s=args.gc_ttl, ddl_poll_s=args.ddl_poll,
                          ddl_poll_min_s=args.ddl_poll_min,
                          resolve_locks_after_s=args.resolve_locks_after,
                          pd_first_connect_timeout_s=args.pd_timeout, metrics_port=args.metrics_port,
                          scan_limit=args.scan_limit)
    from pyspark_theflash.binlog.errors import BinlogLockedError

    def locked(exc: BinlogLockedError) -> CommandError:
        return CommandError(f"{exc}: another `theflash capture` (or a writer) already appends to --binlog "
                            f"{args.binlog}; stop it first, or give this capture another --binlog directory")

    try:
        capture = Capture(opts, progress=say)
    except BinlogLockedError as exc:
        raise locked(exc) from None
    except (CaptureError, UpstreamError) as exc:
        raise CommandError(str(exc)) from None
    # capture.stop() sets an Event the main thread waits on: never inside the handler itself
    from pyspark_theflash.stop_signals import run_from_handler

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        def stop() -> None:
            say(f"signal {signum}: stopping (the state is saved, then capture exits)")
            capture.stop()

        run_from_handler(stop)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        # the pid file once capture is up (it holds the binlog, its ports listen, the tables are
        # checked): `capture start` waits for it, so a capture that fails on its way up is the
        # start's error, not a "started" followed by a dead process
        code = capture.run(on_up=lambda: write_pid_file(args.binlog))
    except BinlogLockedError as exc:
        raise locked(exc) from None
    except (CaptureError, UpstreamError) as exc:
        raise CommandError(str(exc)) from None
    finally:
        remove_pid_file(args.binlog)
    say(f"stopped: {capture.events_written:,} events, {capture.rows_written:,} rows written this run; least "
        f"resolved ts {capture.table.least_resolved()}; state saved in {args.binlog}")
    return code
