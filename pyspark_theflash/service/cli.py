"""``theflash serve``: the TheFlash API service of a store (Arrow Flight and HTTP)."""
from __future__ import annotations

import argparse
import io
import sys
import threading
from typing import TYPE_CHECKING, Any

from pyspark_theflash.stop_signals import stop_on_signals

if TYPE_CHECKING:
    from pyspark_theflash.service.http import HttpLimits

DEFAULT_PORT = 8815  # Arrow Flight's customary port


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    parser.add_argument("--token-file", help="require 'Authorization: Bearer <token>' with the token on the file's first line "
                        "(default: no token required)")
    parser.add_argument("--upstream", help="the upstream: pd://HOST:PORT[,...] of a TiDB cluster or grpc://host:port of the mini cluster's private service (default: the address the writer recorded); checked at start: it must answer and be the cluster the store replicates")
    parser.add_argument("--upstream-timeout", type=float, default=5.0, metavar="S",
                        help="seconds the start waits for --upstream to answer before it exits (default %(default)s)")
    parser.add_argument("--stop-on-stdin-close", action="store_true",
                        help="also stop when standard input closes: a parent process holding the pipe (the JVM "
                        "catalog that started this service) ends it by exiting, even when it is killed")
    add_http_limit_arguments(parser)
    parser.set_defaults(func=_serve, port_options={"Arrow Flight": "--port", "the HTTP read service": "--http-port"})


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


def http_limits(args: argparse.Namespace, prefix: str = "") -> HttpLimits:
    from pyspark_theflash.service.http import HttpLimits

    def get(name: str) -> Any:
        return getattr(args, prefix.replace("-", "_") + name)

    return HttpLimits(max_workers=get("http_workers"), max_queued=get("http_workers"),
                      header_timeout_s=get("http_header_timeout"), idle_timeout_s=get("http_idle_timeout"),
                      body_timeout_s=get("http_body_timeout"), write_timeout_s=get("http_write_timeout"))


def _serve(args: argparse.Namespace) -> int:
    from pyspark_theflash.cli import CommandError
    from pyspark_theflash.errors import PortInUseError, TheFlashError
    from pyspark_theflash.service import serve
    from pyspark_theflash.store.manifest import manifest_path

    if not manifest_path(args.store).exists():
        raise CommandError(f"no store at {args.store}: {manifest_path(args.store)} does not exist "
                           "(a writer creates it on its first run)")
    try:
        if args.upstream:
            check_upstream(args.store, args.upstream, args.upstream_timeout)
        running = serve(args.store, host=args.host, port=args.port, http_port=args.http_port,
                        token_file=args.token_file, upstream=args.upstream, http_limits=http_limits(args))
    except PortInUseError:
        raise  # theflash's main names the option
    except TheFlashError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}: {exc}") from None
    stopped = threading.Event()
    stop_on_signals(stopped)
    if args.stop_on_stdin_close:
        threading.Thread(target=_stop_at_end_of_input, args=(stopped,), name="stdin-close", daemon=True).start()
    print(f"serving store {args.store}: flight {running.flight_location}  http {running.http_url}", flush=True)
    stopped.wait()
    running.close()
    return 0


def _stop_at_end_of_input(stopped: threading.Event) -> None:
    """Set ``stopped`` once standard input reaches its end: the pipe's other end closed, its
    holder (the process that started this one) exited or was killed."""
    try:
        stdin = sys.stdin.buffer
        # a buffered stream (as CPython's stdin always is) answers what the pipe holds now
        read = stdin.read1 if isinstance(stdin, io.BufferedIOBase) else stdin.read
        while read(1 << 16):
            pass  # what the parent writes means nothing: only the end of input counts
    except (OSError, ValueError):
        pass  # a closed or broken input is an end too
    stopped.set()


def check_upstream(store: str, address: str, timeout_s: float) -> int:
    """The upstream at ``address`` answers within ``timeout_s`` and is the cluster the store at
    ``store`` replicates (the id its writer recorded): a wrong address is refused at start in
    one line, never found out by a read, nor read at another cluster's timestamps. Returns the
    cluster's id."""
    from pyspark_theflash.cli import CommandError
    from pyspark_theflash.store import Store
    from pyspark_theflash.upstream_client.errors import UpstreamError

    try:
        if address.startswith("pd://"):
            from pyspark_theflash.upstream_client.pd_client import PDClient

            pd = PDClient(address[len("pd://"):], first_connect_timeout_s=timeout_s)
            cluster_id = pd.cluster_id
            pd.close()
        else:
            from pyspark_theflash.upstream_client.client import GrpcUpstreamClient

            client = GrpcUpstreamClient(address, timeout_s=timeout_s)
            try:
                cluster_id = int(client.cluster_info().cluster_id)
            finally:
                client.close()
    except UpstreamError as exc:
        raise CommandError(f"--upstream {address}: {exc}") from None
    with Store.open(store, readonly=True) as opened, opened.snapshot() as view:
        recorded_id, recorded_address = view.upstream_cluster_id(), view.upstream()
    if recorded_id is not None and recorded_id != cluster_id:
        raise CommandError(f"--upstream {address} is cluster {cluster_id}, but store {store} replicates cluster "
                           f"{recorded_id} (its writer ran with --upstream {recorded_address}): give that cluster's "
                           "address")
    return cluster_id
