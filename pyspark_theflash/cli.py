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

# Subpackages whose ``cli`` module adds commands, in the order of the data flow.
COMMAND_MODULES = ("demo", "codec", "upstream", "binlog", "store", "writer", "latch", "scan", "spark", "service",
                   "engine")


class CommandError(Exception):
    """A user-facing failure: printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="theflash", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"pyspark_theflash.{name}.cli")
        except ModuleNotFoundError as exc:
            if exc.name not in (f"pyspark_theflash.{name}", f"pyspark_theflash.{name}.cli"):
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"theflash {args.command}: {exc}", file=sys.stderr)
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
