"""The ``theflash`` command.

Each subpackage that has commands owns a ``cli`` module with ``register(subparsers)``; this
module only assembles them, so that adding a command never touches another box's code.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from typing import Sequence

from pyspark_theflash.errors import PortInUseError

# Subpackages whose ``cli`` module adds commands, in the order of the data flow.
COMMAND_MODULES = ("demo", "codec", "upstream", "capture", "binlog", "store", "writer", "latch", "scan", "spark", "service",
                   "engine")


class CommandError(Exception):
    """A user-facing failure: printed without a traceback, exit status 2."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``command`` (a name in COMMAND_MODULES), that module's
    commands only: a command starts without importing every other box (the mini cluster,
    pandas, ...)."""
    parser = argparse.ArgumentParser(prog="theflash", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES if command is None else (command,):
        try:
            module = importlib.import_module(f"pyspark_theflash.{name}.cli")
        except ModuleNotFoundError as exc:
            if exc.name not in (f"pyspark_theflash.{name}", f"pyspark_theflash.{name}.cli"):
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(words[0] if words and words[0] in COMMAND_MODULES else None)
    args = parser.parse_args(words)
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"theflash {args.command}: {exc}", file=sys.stderr)
        return 2
    except PortInUseError as exc:  # one line naming the command's own option (pyspark_theflash/ports.py)
        option = getattr(args, "port_options", {}).get(exc.server)
        print(f"theflash {args.command}: {exc.for_option(option) if option else exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `theflash ... | head`: the reader has what it wanted. Point stdout at /dev/null so the
        # interpreter's final flush stays quiet, and exit as a process killed by SIGPIPE would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
