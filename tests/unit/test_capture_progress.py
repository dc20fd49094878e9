"""Capture's progress lines (capture/progress.py): the initial copy's regions, rows, rate and
time left, then the feed's rows, rate and lag behind PD."""
from __future__ import annotations

from pyspark_theflash.capture.progress import ProgressLine
from pyspark_theflash.codec.tso import compose_ts


def test_the_copy_shows_regions_rows_rate_and_time_left_then_the_feed_its_rate_and_lag() -> None:
    p = ProgressLine(started=100.0)
    counts = dict(regions=8, rows_written=0, events_written=0, min_resolved_ts=0, frontier_ts=0, held_events=0)
    first = p.line(105.0, initialised=0, rows_scanned=2_000_000, **counts)
    assert first == "initial copy: 0/8 regions scanned, 2,000,000 rows received (400,000 rows/s)"
    # 2 of 8 regions in 10 s: 6 more take about 30 s at that pace
    second = p.line(110.0, initialised=2, rows_scanned=3_000_000, **counts)
    assert second == "initial copy: 2/8 regions scanned, 3,000,000 rows received (200,000 rows/s), about 30 s left"
    counts.update(rows_written=3_000_000, events_written=40, min_resolved_ts=compose_ts(1_000_000),
                  frontier_ts=compose_ts(1_002_500), held_events=3)
    done = p.line(115.0, initialised=8, rows_scanned=3_000_000, **counts)
    assert done == (f"40 events, 3,000,000 rows written (600,000 rows/s); 8 regions; least resolved ts "
                    f"{compose_ts(1_000_000)} (2.5 s behind PD); 3 events held for the DDL frontier")
    counts.update(rows_written=3_500_000, frontier_ts=compose_ts(1_000_000), held_events=0)
    steady = p.line(120.0, initialised=8, rows_scanned=3_000_000, **counts)
    assert steady == f"40 events, 3,500,000 rows written (100,000 rows/s); 8 regions; least resolved ts {compose_ts(1_000_000)}"
