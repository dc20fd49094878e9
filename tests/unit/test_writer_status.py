"""`theflash writer status` on a store of hundreds of regions: a summary line (how many regions,
the least resolved ts and how far behind now it is, how many lag), then the ten regions furthest
behind; --regions lists every one, --json keeps them all."""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from pyspark_theflash.cli import main
from pyspark_theflash.codec.tso import compose_ts
from pyspark_theflash.writer import cli as writer_cli
from pyspark_theflash.writer.status import region_summary, worst_regions

NOW_MS = 1_780_000_000_000


def regions(now_ms: int) -> list[dict[str, Any]]:
    """285 regions 0.5s behind now, but three: 20s, 40s and 60s behind (regions 7, 8, 9)."""
    behind = {7: 20_000, 8: 40_000, 9: 60_000}
    return [{"region_id": rid, "applied_index": 10 + rid, "resolved_ts": compose_ts(now_ms - behind.get(rid, 500)),
             "lag_events": 0, "lag_ms": behind.get(rid, 500)} for rid in range(1, 286)]


def test_the_summary_names_the_least_resolved_ts_its_lag_and_the_lagging_regions() -> None:
    line = region_summary(regions(NOW_MS), NOW_MS)
    ts = compose_ts(NOW_MS - 60_000)
    assert line.startswith(f"regions: 285  least resolved ts: {ts} (")
    assert "1m00s behind now) in region 9" in line and line.endswith("events unapplied): 3")
    assert region_summary([], NOW_MS) == "regions: none yet"
    worst = worst_regions(regions(NOW_MS), NOW_MS, 10)
    assert [r["region_id"] for r in worst[:3]] == [9, 8, 7] and len(worst) == 10


@pytest.fixture
def store_of_285_regions(monkeypatch: pytest.MonkeyPatch) -> None:
    @contextlib.contextmanager
    def latch(args: Any) -> Iterator[Any]:
        yield type("Latch", (), {"status": lambda self: {}})()

    now_ms = int(time.time() * 1000)
    monkeypatch.setattr(writer_cli, "_latch", latch)
    monkeypatch.setattr(writer_cli, "writer_status", lambda store, latch_status: {
        "writer": None, "state": "not running", "position": "3:1024", "regions": regions(now_ms)})


def test_writer_status_prints_a_summary_and_the_ten_regions_furthest_behind(
        store_of_285_regions: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["writer", "status", "--store", "/nowhere"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("regions: 285  least resolved ts: ") and "in region 9" in lines[1]
    table = lines[lines.index(next(line for line in lines if line.lstrip().startswith("region "))) + 1:]
    assert [int(line.split()[0]) for line in table[:10]][:3] == [9, 8, 7]
    assert table[10] == "... and 275 more region(s): --regions lists every one" and len(table) == 11

    assert main(["writer", "status", "--store", "/nowhere", "--regions"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len([line for line in lines if line.split() and line.split()[0].isdigit()]) == 285
    assert lines[-1] == lines[1]  # 285 lines of regions end with the summary they began with
    assert main(["writer", "status", "--store", "/nowhere", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["regions"]) == 285


def test_a_status_that_takes_long_to_publish_is_published_less_often(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every region is in the status: at 10,000 regions a publish took 44 ms of the loop that
    applies, each second. The next publish waits 50 times as long as the last one took (at
    least the progress interval), so the status costs the loop at most 2% of its time. The
    writer's clock is a fake one that the status advances: no sleep."""
    from types import SimpleNamespace

    from pyspark_theflash.writer import loop
    from pyspark_theflash.writer.loop import Writer
    from pyspark_theflash.writer.options import WriterOptions

    writer = Writer(WriterOptions(binlog=(tmp_path / "binlog").as_uri(), store=str(tmp_path / "store"),
                                  progress_interval_s=1.0))
    clock = [1000.0]
    monkeypatch.setattr(loop, "time", SimpleNamespace(monotonic=lambda: clock[0], time=time.time))
    published: list[dict[str, Any]] = []
    writer.on_progress = published.append
    to_status = writer.progress.to_status
    cost = [0.05]

    def costly_status() -> dict[str, Any]:
        clock[0] += cost[0]
        return to_status()

    monkeypatch.setattr(writer.progress, "to_status", costly_status)
    writer._publish(force=True)
    assert writer._publish_every == pytest.approx(2.5) and len(published) == 1
    clock[0] += 1.5  # past the progress interval, not past 50x the publish
    writer._publish()
    assert len(published) == 1
    clock[0] += 1.0
    writer._publish()
    assert len(published) == 2
    cost[0] = 0.001  # a quick one: back to the interval
    writer._publish(force=True)
    assert writer._publish_every == 1.0


def test_a_writer_asked_to_serve_without_a_service_to_start_says_how(tmp_path: Path) -> None:
    """The service box sits above the writer: its entry points hand it ``serve``. Built from
    Python without one, option serve_port is refused at once, naming the option and both ways
    to run it, not at the first batch."""
    from pyspark_theflash.service import serve_beside_writer
    from pyspark_theflash.writer.errors import WriterConfigError
    from pyspark_theflash.writer.loop import Writer
    from pyspark_theflash.writer.options import WriterOptions

    opts = WriterOptions(binlog=(tmp_path / "binlog").as_uri(), store=str(tmp_path / "store"), serve_port=0)
    with pytest.raises(WriterConfigError, match=r"option serve_port needs the read service: run `theflash writer "
                                                r"run --serve`, or give Writer\(serve=pyspark_theflash.service"):
        Writer(opts)
    assert Writer(opts, serve=serve_beside_writer).serve is serve_beside_writer
