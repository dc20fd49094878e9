"""The README promises what the code does: its test command is CI's, and every read option
is documented with its default."""
from __future__ import annotations

import re

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_demo_and_test_commands_and_ci_runs_the_second() -> None:
    block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert block is not None and README.index(block.group(0)) < README.index("\n## ")
    commands = [line.split("#")[0].strip() for line in block.group(1).strip().splitlines()]
    assert len(commands) == 2
    assert commands[0].endswith("theflash demo")
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci


def test_every_read_option_is_documented_with_its_default() -> None:
    from pyspark_theflash.scan.options import OPTION_DOCS

    rows = {m.group(1): (m.group(2).strip(), m.group(3).strip())
            for m in re.finditer(r"^\| `(\w+)` \| ([^|]+)\| ([^|]+)\|$", README, re.M)}
    for name, default, meaning in OPTION_DOCS:
        assert rows.get(name) == (default, meaning), (
            f"README's row for option {name} is {rows.get(name)}; the code says {(default, meaning)} "
            "(the table is OPTION_DOCS of pyspark_theflash/scan/options.py)")
