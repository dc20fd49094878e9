"""``theflash serve``: the TheFlash API service of a store (Arrow Flight and HTTP)."""
from __future__ import annotations

import argparse
import threading
from typing import Any

from pyspark_theflash.stop_signals import stop_on_signals

DEFAULT_PORT = 8815  # Arrow Flight's customary port


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve a store's read sessions over Arrow Flight and HTTP",
        description="Serve read sessions of a store: Arrow Flight on --port, HTTP (Arrow IPC streams) on "
        "--http-port, until SIGTERM/SIGINT. Runs beside the store's writer. See docs/service.md.")
    parser.add_argument("--store", required=True, help="store directory (the writer's)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="Arrow Flight port (default %(default)s; 0: any free port)")
    parser.add_argument("--http-port", type=int,
                        help="HTTP port (default: --port + 1; any free port when --port is 0)")
    parser.add_argument("--token-file", help="require 'Authorization: Bearer <token>' with the token on the file's first line")
    parser.add_argument("--upstream", help="the upstream: pd://HOST:PORT[,...] of a TiDB cluster or grpc://host:port of the mini cluster's private service (default: the address the writer recorded)")
    add_http_limit_arguments(parser)
    parser.set_defaults(func=_serve)


def add_http_limit_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The HTTP front end's limits (``service.http.HttpLimits``) as options, defaults from it."""
    from pyspark_theflash.service.http import HttpLimits

    d = HttpLimits()
    parser.add_argument(f"--{prefix}http-workers", type=int, default=d.max_workers, metavar="N",
                        help="HTTP connections served at once, one thread each (default %(default)s; as many more wait, "
                        "past that: 503 busy)")
    parser.add_argument(f"--{prefix}http-header-timeout", type=float, default=d.header_timeout_s, metavar="S",
                        help="seconds a request's line and headers may take (default %(default)s)")
    parser.add_argument(f"--{prefix}http-idle-timeout", type=float, default=d.idle_timeout_s, metavar="S",
                        help="seconds a kept-alive HTTP connection may wait for its next request (default %(default)s)")
    parser.add_argument(f"--{prefix}http-body-timeout", type=float, default=d.body_timeout_s, metavar="S",
                        help="seconds a request body may take once its headers are in (default %(default)s)")
    parser.add_argument(f"--{prefix}http-write-timeout", type=float, default=d.write_timeout_s, metavar="S",
                        help="seconds a client may read nothing of an answer or stream (default %(default)s)")


def http_limits(args: argparse.Namespace, prefix: str = "") -> Any:
    from pyspark_theflash.service.http import HttpLimits

    get = lambda name: getattr(args, prefix.replace("-", "_") + name)  # noqa: E731
    return HttpLimits(max_workers=get("http_workers"), max_queued=get("http_workers"),
                      header_timeout_s=get("http_header_timeout"), idle_timeout_s=get("http_idle_timeout"),
                      body_timeout_s=get("http_body_timeout"), write_timeout_s=get("http_write_timeout"))


def _serve(args: argparse.Namespace) -> int:
    from pyspark_theflash.cli import CommandError
    from pyspark_theflash.errors import TheFlashError
    from pyspark_theflash.service import serve
    from pyspark_theflash.store.manifest import manifest_path

    if not manifest_path(args.store).exists():
        raise CommandError(f"no store at {args.store}: {manifest_path(args.store)} does not exist "
                           "(a writer creates it on its first run)")
    try:
        running = serve(args.store, host=args.host, port=args.port, http_port=args.http_port,
                        token_file=args.token_file, upstream=args.upstream, http_limits=http_limits(args))
    except TheFlashError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}: {exc}") from None
    stopped = threading.Event()
    stop_on_signals(stopped)
    print(f"serving store {args.store}: flight {running.flight_location}  http {running.http_url}", flush=True)
    stopped.wait()
    running.close()
    return 0
