"""The writer's live progress off a terminal (issue 52, item 7): in a log, a file or a pipe the
line a terminal rewrites in place becomes a log line every 30 s and at each change of state
(writer/cli.py ProgressDisplay), so a daemon's log shows progress without a terminal."""
from __future__ import annotations

import io
import logging
from typing import Any

import pytest

from pyspark_theflash.writer import cli


def status(state: str = "running") -> dict[str, Any]:
    return {"state": state, "events_per_s": 1200.0, "rows_per_s": 3400.0, "position": "3:1024",
            "read_position": "3:2048", "regions": [{"region_id": 7, "lag_events": 2, "lag_ms": 150}]}


def test_off_a_terminal_progress_is_a_log_line_every_30_s_and_at_each_change_of_state(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    clock = [1000.0]
    monkeypatch.setattr(cli.time, "monotonic", lambda: clock[0])
    out = io.StringIO()  # not a terminal
    display = cli.ProgressDisplay(out)
    with caplog.at_level(logging.INFO, logger="theflash.writer.progress"):
        for step in range(0, 95, 5):  # a status every 5 s for 90 s
            clock[0] = 1000.0 + step
            display(status())
        clock[0] += 1
        display(status("caught up"))  # a new state: said at once
    lines = [(r.getMessage()) for r in caplog.records if r.name == "theflash.writer.progress"]
    assert len(lines) == 5, lines  # at 0, 30, 60 and 90 s, and the new state
    assert lines[0] == "running: 1200 events/s 3400 rows/s | lag r7 2ev/150ms | pos 3:1024 (read 3:2048)"
    assert lines[-1].startswith("caught up: ")
    assert out.getvalue() == ""  # nothing rewritten in place


def test_on_a_terminal_progress_is_one_line_rewritten_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    display = cli.ProgressDisplay(out)
    display(status())
    display(status())
    display.finish()
    assert out.getvalue().count("\r") == 2 and out.getvalue().endswith("\n")
