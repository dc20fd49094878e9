"""Every ``--help`` of ``theflash`` tells a user what each option does and what it defaults to:
the whole argparse tree (``cli.build_parser``) is walked, every subcommand has a description,
every option a help, every option that may be left out states what it defaults to (None too: what
leaving it out does), and no help shows reStructuredText markup. ``theflash --version`` names the package's and the connector jar's."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterator

import pytest

from pyspark_theflash.cli import build_parser, main
from pyspark_theflash.spark.jar import describe


def commands(parser: argparse.ArgumentParser, path: str = "theflash") -> Iterator[tuple[str, argparse.ArgumentParser, str | None]]:
    """(command path, its parser, the help its parent lists it with) for the tree under ``parser``."""
    yield path, parser, None
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {a.dest: a.help for a in action._get_subactions()}
            for name, sub in action.choices.items():
                for p, child, _ in commands(sub, f"{path} {name}"):
                    yield p, child, listed.get(name) if child is sub else _


def states_default(action: argparse.Action) -> bool:
    text = action.help or ""
    if "%(default)" in text or "default" in text.lower():
        return True
    return isinstance(action.default, bool) and isinstance(action, (argparse._StoreTrueAction,
                                                                    argparse._StoreFalseAction))


def problems() -> list[str]:
    found = []
    for path, parser, listed in commands(build_parser()):
        if not parser.description:
            found.append(f"{path}: no description")
        for text in (parser.description or "", listed or ""):
            if "``" in text:
                found.append(f"{path}: a description with ``")
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            name = "/".join(action.option_strings) or action.dest
            if not action.help or action.help == argparse.SUPPRESS:
                if action.help != argparse.SUPPRESS:
                    found.append(f"{path} {name}: no help")
                continue
            if "``" in action.help:
                found.append(f"{path} {name}: help with ``")
            if action.option_strings and action.default is not argparse.SUPPRESS and not states_default(action):
                # an option that takes a value and may be left out says what leaving it out does,
                # a default of None included ("default: none, ...", "default: every region")
                if action.default is not None or (not action.required and action.nargs != 0):
                    found.append(f"{path} {name}: default {action.default!r} not stated")
    return found


def test_every_command_and_option_of_theflash_says_what_it_does_and_its_default() -> None:
    assert problems() == []


def test_theflash_version_names_the_package_and_the_connector_jar(capsys: pytest.CaptureFixture[str]) -> None:
    from pyspark_theflash import __version__

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"theflash {__version__} ") and lines[1].startswith("connector jar: ")


def test_a_jar_not_built_is_said_to_be_not_built(tmp_path: Path) -> None:
    assert describe(tmp_path / "theflash-spark.jar").startswith(
        f"connector jar: not built ({tmp_path / 'theflash-spark.jar'}); build it with scripts/bootstrap.sh")


def test_each_command_builds_its_own_boxs_parser_only() -> None:
    """``theflash WORD ...`` builds only the parser of the box that adds WORD (cli.COMMAND_WORDS
    names the boxes whose command word is not their name): a word it does not know builds every
    box's, which imports every box at the start of each process (`serve`, `sql` and `jar` did)."""
    from pyspark_theflash.cli import COMMAND_MODULES, COMMAND_WORDS

    def words(parser: argparse.ArgumentParser) -> set[str]:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return set(sub.choices)

    every = words(build_parser())
    for word in sorted(every):
        box = COMMAND_WORDS.get(word, word)
        assert box in COMMAND_MODULES, f"theflash {word}: no box named {box!r}; add it to cli.COMMAND_WORDS"
        assert word in words(build_parser(box)), word
