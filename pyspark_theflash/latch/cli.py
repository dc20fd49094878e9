"""``theflash latch serve|status``: the latch service of one store over gRPC."""
from __future__ import annotations

import argparse
import json
import sys
import threading


from pyspark_theflash.stop_signals import stop_on_signals


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "latch", help="read leases, the write latch and flush requests of a store",
        description="The latch of a store: the read leases that pin its snapshots, the write latch its one writer "
        "holds, and readers' flush requests. `serve` offers it over gRPC (for readers on other machines); `status` "
        "prints it as JSON.")
    sub = parser.add_subparsers(dest="latch_command", metavar="ACTION", required=True)

    serve = sub.add_parser("serve", help="serve a store's latch over gRPC on 127.0.0.1 until SIGTERM/SIGINT")
    serve.add_argument("--store", required=True, help="store directory")
    serve.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default 0: the OS picks one)")
    serve.set_defaults(func=_serve, port_options={"the latch service": "--port"})

    status = sub.add_parser("status", help="print the latch status (writer, leases, flushes) as JSON")
    status.add_argument("--store", help="store directory, read in this process (default: none; give --store or --address)")
    status.add_argument("--address", help="grpc://host:port of a latch server instead of --store (default: none)")
    status.set_defaults(func=_status)


def _serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pyspark_theflash.cli import CommandError
    from pyspark_theflash.latch.remote import serve

    if not (Path(args.store) / "manifest.db").is_file():  # a mistyped path would be served, made a latch.db
        raise CommandError(f"no store at {args.store} (no manifest.db): check the path, or create the store by "
                           f"running its writer first, `theflash writer run --binlog ... --store {args.store}`")
    server, port, latch = serve(args.store, args.port)
    stopped = threading.Event()
    stop_on_signals(stopped)
    print(f"latch serving grpc://127.0.0.1:{port} for store {args.store}", flush=True)
    stopped.wait()
    server.stop(grace=1.0).wait()
    latch.close()
    return 0


def _status(args: argparse.Namespace) -> int:
    from pyspark_theflash.cli import CommandError
    from pyspark_theflash.latch import connect

    if not args.store and not args.address:
        raise CommandError("give --store DIR or --address grpc://host:port")
    with connect(args.store, args.address) as latch:
        json.dump(latch.status(), sys.stdout, indent=2, sort_keys=True)
    print()
    return 0
