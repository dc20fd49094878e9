"""``theflash writer run|start|stop|status|ctl`` and ``theflash writer --spark-entry``."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TextIO

from pyspark_theflash.stop_signals import stop_on_signals
from pyspark_theflash.store.options import PART_COMPRESSION
from pyspark_theflash.writer import options as o
from pyspark_theflash.writer.status import REGIONS_SHOWN, region_summary, worst_regions, writer_status

if TYPE_CHECKING:
    from pyspark_theflash.writer.progress import WriterStatus
    from pyspark_theflash.latch.protocol import Latch
    from pyspark_theflash.store import Store

SPARK_ENTRY = Path(__file__).resolve().parent / "spark_entry.py"


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of a writer run (shared with the spark-submit entry)."""
    parser.add_argument("--binlog", required=True, help="binlog source: file:///DIR, a directory, or grpc://host:port")
    parser.add_argument("--store", required=True, help="store directory (created when missing)")
    parser.add_argument("--upstream", help="the upstream, recorded in the store for readers: pd://HOST:PORT[,...] of a TiDB cluster (schemas then come from the binlog or --schema-url) or grpc://host:port of the mini cluster's private service (schemas, region snapshots, GC safe point, lag; default: none recorded, readers take it from their own options)")
    parser.add_argument("--schema-url", help="http://host:port of a TiDB status port for the schemas the binlog does not carry (with --upstream pd://..., or none; default: none, the schemas come from the binlog)")
    parser.add_argument("--tables", default="", help="tables to replicate, e.g. bank.accounts,shop.* (default: all)")
    parser.add_argument("--interval", default=f"{int(o.DEFAULT_INTERVAL_S * 1000)}ms",
                        help="poll interval when caught up; changeable at runtime with `theflash writer ctl` (default %(default)s)")
    parser.add_argument("--batch-events", type=int, default=o.DEFAULT_BATCH_EVENTS,
                        help="events per applied batch (default %(default)s)")
    parser.add_argument("--flush-rows", type=int, default=o.DEFAULT_FLUSH_ROWS,
                        help="flush once this many rows are applied but not flushed (default %(default)s)")
    parser.add_argument("--flush-interval", default=f"{o.DEFAULT_FLUSH_INTERVAL_S:g}s",
                        help="flush applied rows at least this often; at the head of the log a moved resolved ts is "
                             "flushed at once (default %(default)s)")
    parser.add_argument("--compact-interval", default=f"{o.DEFAULT_COMPACT_INTERVAL_S:g}s",
                        help="compaction and GC when idle at most this often (default %(default)s)")
    parser.add_argument("--file-retention", default=f"{o.DEFAULT_FILE_RETENTION_S:g}s",
                        help="keep a compacted-away part's file this long after the last read lease that "
                             "pins it ends: slack for readers whose renewal comes late (default %(default)s)")
    parser.add_argument("--delta-publish-interval", default=f"{o.DEFAULT_DELTA_PUBLISH_INTERVAL_S:g}s",
                        help="publish every table as a Delta table at the store's resolved ts this often; 0s: "
                             "never (default %(default)s; theflash delta publish does one round; docs/delta.md)")
    parser.add_argument("--delta-retention", default="600s",
                        help="how long a published Delta version stays readable: its files pinned, its log entry "
                             "kept; holds GC back as far (default %(default)s; docs/delta.md)")
    parser.add_argument("--delta-to", metavar="LOCATION",
                        help="publish the Delta tables under LOCATION/tables/<id> (a directory or s3://bucket/prefix), "
                             "the parts they name copied there, instead of in the store's directory; credentials "
                             "from the environment / AWS configuration, never this option (default: the store's directory; "
                             "docs/delta.md)")
    parser.add_argument("--parts-to", metavar="LOCATION",
                        help="keep the store's stable parts under LOCATION (a directory or s3://bucket/prefix) as "
                             "well: uploaded before the manifest lists them, fetched when a read finds no local "
                             "copy; the local disk keeps deltas, the manifest and a cache of parts. A store keeps "
                             "the location it was first given; credentials from the environment / AWS "
                             "configuration (default: local only; docs/store.md)")
    parser.add_argument("--local-parts-bytes", default=f"{o.DEFAULT_LOCAL_PARTS_BYTES >> 30}GiB",
                        help="with --parts-to: the local copies of stable parts kept beyond this size are deleted, "
                             "least recently used first (default %(default)s)")
    parser.add_argument("--part-compression", choices=("lz4", "zstd"), default=PART_COMPRESSION,
                        help="Parquet codec of the stable parts compaction writes: lz4 reads fastest, zstd "
                        "makes files about half the size (default %(default)s; docs/store.md)")
    parser.add_argument("--latch-ttl", default=f"{o.DEFAULT_LATCH_TTL_S:g}s",
                        help="write latch TTL: a dead writer's latch is taken over after it (default %(default)s)")
    parser.add_argument("--bootstrap-snapshot", action="store_true",
                        help="seed an empty store from region snapshots even when the binlog reaches back to its start")
    parser.add_argument("--metrics-port", type=int,
                        help="serve Prometheus text at http://127.0.0.1:PORT/metrics (0 = any free port; default: off)")
    parser.add_argument("--serve", type=int, metavar="PORT",
                        help="also serve read sessions from this process: Arrow Flight on PORT, HTTP on PORT+1 "
                        "(0 = any free ports; default: off; see `theflash serve` and docs/service.md)")
    parser.add_argument("--serve-http-port", type=int, metavar="PORT", help="HTTP port of --serve (default: PORT+1)")
    parser.add_argument("--serve-host", default="127.0.0.1", help="interface --serve listens on (default %(default)s)")
    parser.add_argument("--serve-token-file", help="with --serve: require this bearer token (first line of the file; default: no token required)")
    parser.add_argument("--engine", choices=("native", "clickhouse"), default="native",
                        help="store engine: native (TxnMergeTree parts) or clickhouse (in-process ClickHouse via chdb); "
                        "recorded in a new store, and a store opened with the other one is refused (default %(default)s)")
    parser.add_argument("--log", help="append log lines (and progress lines) to FILE (default: progress on stdout, the log on stderr; "
                        "start and --daemon need it)")
    parser.add_argument("--until-caught-up", action="store_true",
                        help="exit once everything in the binlog is applied and flushed (a one-shot run)")


def _size(text: str) -> int:
    from pyspark_theflash.scan.errors import ScanOptionError
    from pyspark_theflash.scan.options import parse_size_bytes

    try:
        return parse_size_bytes("--local-parts-bytes", text)
    except ScanOptionError as exc:
        raise ValueError(str(exc).replace("option ", "", 1)) from None


def options_from_args(args: argparse.Namespace) -> o.WriterOptions:
    try:
        return o.WriterOptions(
            binlog=args.binlog,
            store=args.store,
            upstream=args.upstream,
            schema_url=args.schema_url,
            tables=o.TableFilter.parse(args.tables),
            interval_s=o.parse_duration(args.interval),
            batch_events=max(1, args.batch_events),
            flush_rows=max(1, args.flush_rows),
            flush_interval_s=o.parse_duration(args.flush_interval),
            compact_interval_s=o.parse_duration(args.compact_interval),
            file_retention_s=o.parse_duration(args.file_retention, allow_zero=True),
            delta_publish_interval_s=o.parse_duration(args.delta_publish_interval, allow_zero=True),
            delta_retention_s=o.parse_duration(args.delta_retention, allow_zero=True),
            delta_to=args.delta_to,
            part_compression=args.part_compression,
            parts_to=args.parts_to,
            local_parts_bytes=_size(args.local_parts_bytes),
            latch_ttl_s=o.parse_duration(args.latch_ttl),
            metrics_port=args.metrics_port,
            engine=args.engine,
            serve_port=args.serve,
            serve_http_port=args.serve_http_port,
            serve_host=args.serve_host,
            serve_token_file=args.serve_token_file,
            bootstrap_snapshot=args.bootstrap_snapshot,
            until_caught_up=args.until_caught_up,
        )
    except ValueError as exc:
        from pyspark_theflash.cli import CommandError

        raise CommandError(str(exc)) from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "writer",
        help="the background job that applies the binlog to a store",
        description="Apply a binlog to a store: `run` (foreground), `start --daemon` / `stop` (background), "
        "`status`, `ctl`; `--spark-entry` prints the script to spark-submit.",
    )
    parser.add_argument("--spark-entry", action="store_true", help="print the path of the spark-submit entry script and exit")
    parser.set_defaults(func=_no_action, writer_parser=parser)
    sub = parser.add_subparsers(dest="writer_command", metavar="ACTION")

    run = sub.add_parser("run", help="run the writer in the foreground with a live progress line",
                         description="Apply the binlog to the store in the foreground until SIGINT/SIGTERM, with a "
                         "live progress line: the store's write latch is taken first (one writer per store), "
                         "then batches are applied, flushed and compacted; --serve also serves reads.")
    add_run_options(run)
    run.add_argument("--daemon", action="store_true", help="detach (same as `start`)")
    run.set_defaults(func=_run, port_options={"Arrow Flight": "--serve", "the HTTP read service": "--serve-http-port", "the metrics endpoint": "--metrics-port"})

    start = sub.add_parser("start", help="start the writer in the background (pid file in the store directory)")
    add_run_options(start)
    start.add_argument("--daemon", action="store_true", default=True, help="detach (the default for start)")
    start.set_defaults(func=_start)

    stop = sub.add_parser("stop", help="SIGTERM the store's background writer and wait for it to exit")
    stop.add_argument("--store", required=True, help="store directory of the writer to stop")
    stop.add_argument("--timeout", default="60s", help="how long to wait (default %(default)s)")
    stop.set_defaults(func=_stop)

    status = sub.add_parser("status", help="applied index, resolved ts and lag per region, position, rates")
    status.add_argument("--store", help="store directory (default: none; give --store or --address)")
    status.add_argument("--address", help="grpc://host:port of a latch server instead of --store (default: none)")
    status.add_argument("--json", action="store_true", help="print JSON (every region)")
    status.add_argument("--regions", action="store_true",
                        help="list every region (default: the summary line and the 10 regions furthest behind)")
    status.set_defaults(func=_status)

    ctl = sub.add_parser("ctl", help="change a running writer's settings (takes effect without restart)")
    ctl.add_argument("--store", help="store directory (default: none; give --store or --address)")
    ctl.add_argument("--address", help="grpc://host:port of a latch server instead of --store (default: none)")
    ctl.add_argument("--interval", required=True, help="new poll interval, e.g. 200ms")
    ctl.add_argument("--persist", action="store_true",
                     help="keep the interval for later writers too (default: until the running writer stops)")
    ctl.set_defaults(func=_ctl)


def _no_action(args: argparse.Namespace) -> int:
    if args.spark_entry:
        print(SPARK_ENTRY)
        return 0
    args.writer_parser.print_help()
    return 2


def setup_logging(log_file: str | None, display: "ProgressDisplay | None" = None) -> None:
    """Timestamped log lines to ``log_file`` or stderr; on a terminal each line first clears the
    progress line (``display``) so the two never share a line."""
    handler: logging.Handler
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
    else:
        handler = _ClearingStreamHandler(sys.stderr, display)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        handlers=[handler], force=True)


class _ClearingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    def __init__(self, stream: TextIO, display: "ProgressDisplay | None") -> None:
        super().__init__(stream)
        self.display = display

    def emit(self, record: logging.LogRecord) -> None:
        if self.display is not None:
            self.display.clear()
        super().emit(record)


class ProgressDisplay:
    """One line rewritten with \r on a terminal. Elsewhere (a log file, a pipe, a daemon's log)
    a timestamped log line every ``every_s`` seconds, and when the state changes."""

    def __init__(self, out: TextIO, every_s: float = 30.0) -> None:
        self.out = out
        self.tty = out.isatty()
        self.every_s = every_s
        self._last = float("-inf")
        self._state: str | None = None
        self._width = 0
        self._log = logging.getLogger("theflash.writer.progress")

    def __call__(self, status: WriterStatus) -> None:
        from pyspark_theflash.writer.progress import progress_line

        line = progress_line(status)
        if self.tty:
            self.out.write("\r" + line.ljust(self._width))
            self._width = len(line)
            self.out.flush()
            return
        now = time.monotonic()
        if self._state is None and status.get("state") == "failed":
            return  # failed before its first line (a port in use, a store refused): the error's line says it
        if now - self._last >= self.every_s or status.get("state") != self._state:
            self._last, self._state = now, status.get("state")
            self._log.info("%s", line)

    def clear(self) -> None:
        """Blank the progress line (a log line is about to be written on the terminal)."""
        if self.tty and self._width:
            self.out.write("\r" + " " * self._width + "\r")
            self.out.flush()
            self._width = 0

    def finish(self) -> None:
        if self.tty and self._width:
            self.out.write("\n")
            self.out.flush()


def install_stop_signals(stop: threading.Event) -> None:
    """SIGTERM/SIGINT finish the batch in hand, flush and release the latch."""

    stop_on_signals(stop, lambda signum: logging.getLogger("theflash.writer").info(
        "signal %d: stopping after the batch in hand", signum))


def run_writer(opts: o.WriterOptions, log_file: str | None, *,
               configure_store: Callable[[Store], None] | None = None) -> int:
    """Run the writer loop in this process until a signal; shared by the CLI and spark_entry."""
    from pyspark_theflash.cli import CommandError
    from pyspark_theflash.errors import PortInUseError, TheFlashError, storage_failure
    from pyspark_theflash.latch.errors import WriteLatchHeldError
    from pyspark_theflash.writer.loop import Writer

    display = ProgressDisplay(sys.stdout)
    setup_logging(log_file, display)
    stop = threading.Event()
    install_stop_signals(stop)
    from pyspark_theflash.service import serve_beside_writer

    writer = Writer(opts, stop, on_progress=display, configure_store=configure_store, serve=serve_beside_writer)
    try:
        writer.run()
    except WriteLatchHeldError as exc:
        raise CommandError(str(exc)) from None
    except PortInUseError as exc:
        _log_to_file(log_file, exc)
        raise  # theflash's main names the option
    except TheFlashError as exc:  # (the writer recorded and published it)
        _log_to_file(log_file, exc)
        raise CommandError(str(exc)) from None
    except Exception as exc:  # before the run began: taking the latch, the pid file
        failure = storage_failure(exc, f"the writer of store {opts.store}")
        if failure is None:
            raise
        _log_to_file(log_file, failure)
        raise CommandError(str(failure)) from None
    finally:
        display.finish()
    return 0


def _log_to_file(log_file: str | None, exc: BaseException) -> None:
    """The error that ends a run, in the log file too (on stderr the command prints it once)."""
    if log_file:
        logging.getLogger("theflash.writer").error("%s", exc)


def _run(args: argparse.Namespace) -> int:
    if args.daemon:
        return _start(args)
    return run_writer(options_from_args(args), args.log)


def _run_argv(args: argparse.Namespace) -> list[str]:
    argv = ["--binlog", args.binlog, "--store", args.store, "--interval", args.interval,
            "--batch-events", str(args.batch_events), "--flush-rows", str(args.flush_rows),
            "--flush-interval", args.flush_interval, "--compact-interval", args.compact_interval,
            "--file-retention", args.file_retention, "--part-compression", args.part_compression,
            "--delta-publish-interval", args.delta_publish_interval, "--delta-retention", args.delta_retention,
            "--local-parts-bytes", args.local_parts_bytes, "--latch-ttl", args.latch_ttl, "--engine", args.engine]
    for flag, value in (("--upstream", args.upstream), ("--schema-url", args.schema_url), ("--tables", args.tables),
                        ("--log", args.log), ("--delta-to", args.delta_to), ("--parts-to", args.parts_to)):
        if value:
            local = flag == "--log" or (flag == "--parts-to" and "://" not in value)
            argv += [flag, str(Path(value).resolve()) if local else value]
    if args.metrics_port is not None:
        argv += ["--metrics-port", str(args.metrics_port)]
    if args.serve is not None:
        argv += ["--serve", str(args.serve), "--serve-host", args.serve_host]
        if args.serve_http_port is not None:
            argv += ["--serve-http-port", str(args.serve_http_port)]
        if args.serve_token_file:
            argv += ["--serve-token-file", str(Path(args.serve_token_file).resolve())]
    if args.bootstrap_snapshot:
        argv.append("--bootstrap-snapshot")
    if args.until_caught_up:
        argv.append("--until-caught-up")
    return argv


def _start(args: argparse.Namespace) -> int:
    from pyspark_theflash.cli import CommandError
    from pyspark_theflash.errors import TheFlashError
    from pyspark_theflash.writer.daemon import start_detached

    options_from_args(args)  # validate before detaching
    if not args.log:
        raise CommandError("a background writer needs --log FILE for its output")
    args.store = str(Path(args.store).resolve())
    if not args.binlog.startswith(("grpc://", "file://")):
        args.binlog = str(Path(args.binlog).resolve())
    try:
        pid = start_detached(_run_argv(args), args.store, args.log)
    except TheFlashError as exc:
        raise CommandError(str(exc)) from None
    print(f"writer started: pid {pid}, store {args.store}, log {args.log}; stop with: theflash writer stop --store {args.store}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    from pyspark_theflash.cli import CommandError
    from pyspark_theflash.errors import TheFlashError
    from pyspark_theflash.writer.daemon import stop

    try:
        pid = stop(args.store, o.parse_duration(args.timeout))
    except TheFlashError as exc:
        raise CommandError(str(exc)) from None
    print(f"writer pid {pid} stopped")
    return 0


def _latch(args: argparse.Namespace) -> Latch:
    from pyspark_theflash.cli import CommandError
    from pyspark_theflash.latch import connect

    if not args.store and not args.address:
        raise CommandError("give --store DIR or --address grpc://host:port")
    if not args.address:
        from pyspark_theflash.store.manifest import manifest_path

        if not manifest_path(args.store).exists():  # never create a mistyped store directory
            raise CommandError(f"no store at {args.store}: {manifest_path(args.store)} does not exist "
                               f"(a writer creates it on its first run)")
    return connect(args.store, args.address)


def _status(args: argparse.Namespace) -> int:
    with _latch(args) as latch:
        status = writer_status(args.store, latch.status())
    if args.json:
        json.dump(status, sys.stdout, indent=2, sort_keys=True)
        print()
        return 0
    writer = status.get("writer")
    who = f"{writer['name']} pid {writer['pid']} on {writer['host']}" if writer else "none"
    interval = status.get("interval_s")
    print(f"writer: {who}  state: {status.get('state', '?')}  interval: {'-' if interval is None else f'{interval:g}s'}")
    regions = status.get("regions", [])
    now_ms = int(time.time() * 1000)
    print(region_summary(regions, now_ms))
    print(f"position: {status.get('position') or '-'}  read: {status.get('read_position') or '-'}")
    error = status.get("last_error")
    if error:
        at = dt.datetime.fromtimestamp(float(error["at"]), dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        print(f"last error ({at}): {error['message']}")
    last = " (last run)" if writer is None else ""
    print(f"events/s{last}: {status.get('events_per_s', 0)}  rows/s: {status.get('rows_per_s', 0)}  "
          f"flushes: {status.get('flushes', 0)} (last {status.get('last_flush_s', 0)}s)  "
          f"compactions: {status.get('compactions', 0)} (last {status.get('last_compact_s', 0)}s)")
    if not regions:
        return 0
    shown = worst_regions(regions, now_ms, None if args.regions else REGIONS_SHOWN)
    left = len(regions) - len(shown)
    print(f"{'region':>8} {'applied':>10} {'resolved_ts':>20} {'lag_events':>10} {'lag_ms':>10}"
          f"{'  (the furthest behind)' if left else ''}")
    for r in shown:
        lag_events = "-" if r.get("lag_events") is None else r["lag_events"]
        lag_ms = "-" if r.get("lag_ms") is None else r["lag_ms"]
        print(f"{r['region_id']:>8} {r['applied_index']:>10} {r['resolved_ts']:>20} {lag_events:>10} {lag_ms:>10}")
    if left:
        print(f"... and {left} more region(s): --regions lists every one")
    elif len(shown) > REGIONS_SHOWN:  # a long list (--regions) ends as it began, with its summary
        print(region_summary(regions, now_ms))
    return 0


def _ctl(args: argparse.Namespace) -> int:
    from pyspark_theflash.cli import CommandError

    try:
        interval = o.parse_duration(args.interval)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    with _latch(args) as latch:
        latch.set_writer_interval(interval, persist=args.persist)
    lasts = "for this and every later writer" if args.persist else "until the running writer stops"
    print(f"writer interval set to {interval:g}s, {lasts} (a running writer applies it at its next poll)")
    return 0
