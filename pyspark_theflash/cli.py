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

from pyspark_theflash.errors import PortInUseError, TheFlashError

# Subpackages whose ``cli`` module adds commands, in the order of the data flow.
COMMAND_MODULES = ("demo", "codec", "upstream", "capture", "binlog", "store", "writer", "latch", "scan", "lake", "spark",
                   "service", "engine")
# A command whose word is not its subpackage's name: `theflash delta` is the lake box's (a
# subpackage named delta would read as the store's delta parts), `serve` the service's, `sql`
# the engine's, `jar` the Spark connector's. (A word missing here builds every box's parser:
# correct, but ~70 more modules imported at every start of the process.)
COMMAND_WORDS = {"delta": "lake", "serve": "service", "sql": "engine", "jar": "spark"}
# A command with actions whose first action may be left out: `theflash capture --pd ...` is
# `theflash capture run --pd ...` (as it was before capture had start, stop and status)
DEFAULT_ACTIONS = {"capture": ("run", ("run", "start", "stop", "status"))}
# The commands that run PySpark in this process, which uses pandas: pyarrow's probe for pandas is
# left alone in them and answered without pandas in all others (pandas_probe.py)
PANDAS_COMMANDS = ("demo",)


class CommandError(Exception):
    """A user-facing failure: printed without a traceback, exit status 2."""


class _PrintVersion(argparse.Action):
    """``--version``: the package's version and the connector jar's, then exit."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from pyspark_theflash.spark.jar import describe, package_version

        print(f"theflash {package_version()} (pyspark_theflash, Python {sys.version.split()[0]})")
        print(describe())
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``command`` (a name in COMMAND_MODULES), that module's
    commands only: a command starts without importing every other box (the mini cluster,
    pandas, ...)."""
    parser = argparse.ArgumentParser(prog="theflash", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=_PrintVersion, nargs=0,
                        help="print the version of theflash and of its Spark connector jar, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES if command is None else (command,):
        try:
            module = importlib.import_module(f"pyspark_theflash.{name}.cli")
        except ModuleNotFoundError as exc:
            if exc.name not in (f"pyspark_theflash.{name}", f"pyspark_theflash.{name}.cli"):
                raise
            continue
        module.register(sub)
    _as_help_text(parser)
    return parser


def _as_help_text(parser: argparse.ArgumentParser) -> None:
    """Descriptions come from docstrings: shown as plain text (``x`` as `x`), and a subcommand
    registered with a help only is described by it at the top of its own --help."""
    for text in ("description", "epilog"):
        if getattr(parser, text):
            setattr(parser, text, getattr(parser, text).replace("``", "`"))
    for action in parser._actions:
        if action.help and action.help is not argparse.SUPPRESS:
            action.help = action.help.replace("``", "`")
        if isinstance(action, argparse._SubParsersAction):
            listed = {a.dest: a.help for a in action._get_subactions()}
            for name, child in action.choices.items():
                if not child.description and listed.get(name):
                    child.description = listed[name]
                _as_help_text(child)


# Set to any value: log at debug level on stderr, with the whole stack of an error a command
# otherwise reports in one line.
DEBUG_ENVIRONMENT = "THEFLASH_DEBUG"


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] in DEFAULT_ACTIONS:
        action, actions = DEFAULT_ACTIONS[words[0]]
        if len(words) > 1 and words[1] not in actions and words[1] not in ("-h", "--help"):
            words.insert(1, action)
    first = COMMAND_WORDS.get(words[0], words[0]) if words else None
    parser = build_parser(first if first in COMMAND_MODULES else None)
    args = parser.parse_args(words)
    if os.environ.get(DEBUG_ENVIRONMENT):
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                            stream=sys.stderr)
    log = logging.getLogger("theflash.cli")
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        log.debug("theflash %s failed", args.command, exc_info=_whole(exc))
        print(f"theflash {args.command}: {exc}", file=sys.stderr)
        return 2
    except PortInUseError as exc:  # one line naming the command's own option (pyspark_theflash/ports.py)
        log.debug("theflash %s failed", args.command, exc_info=exc)
        option = getattr(args, "port_options", {}).get(exc.server)
        print(f"theflash {args.command}: {exc.for_option(option) if option else exc}", file=sys.stderr)
        return 2
    except TheFlashError as exc:  # raised on purpose, its message says what to do: one line, as a CommandError
        log.debug("theflash %s failed", args.command, exc_info=_whole(exc))
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


def _whole(exc: BaseException) -> BaseException:
    """``exc`` with the error it was raised from shown too (a command raises its one line
    ``from None``, which hides the error it reports)."""
    if exc.__suppress_context__ and exc.__context__ is not None:
        exc.__cause__ = exc.__context__
    return exc


def entry() -> None:
    """The ``theflash`` program (the console script, ``python -m pyspark_theflash``): ``main()`` in
    a process of its own. Unlike ``main()``, which a caller may run inside its own process, it
    answers pyarrow's probe for pandas without pandas (pandas_probe.py), but in the commands of
    PANDAS_COMMANDS."""
    words = sys.argv[1:]
    if not words or COMMAND_WORDS.get(words[0], words[0]) not in PANDAS_COMMANDS:
        from pyspark_theflash.pandas_probe import skip_pandas_probe_when_pyarrow_loads

        skip_pandas_probe_when_pyarrow_loads()
    sys.exit(main())


if __name__ == "__main__":
    entry()
