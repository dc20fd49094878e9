"""What capture tells an operator every few seconds: during the initial copy, regions scanned
of all, rows received, the rate and an estimate of the time left; after it, rows written, the
rate and how far the least resolved ts lags. Counts only: the caller passes them in, so this
module knows nothing of feeds or the binlog."""
from __future__ import annotations

from dataclasses import dataclass, field

from pyspark_theflash.codec.tso import physical_ms


@dataclass
class ProgressLine:
    """Turns successive counts into progress lines (``line``), keeping what the rates need."""

    started: float  # time.monotonic() when capture began registering regions
    _last_at: float = field(init=False)
    _last_scanned: int = 0
    _last_written: int = 0

    def __post_init__(self) -> None:
        self._last_at = self.started

    def line(self, now: float, *, regions: int, initialised: int, rows_scanned: int, rows_written: int,
             events_written: int, min_resolved_ts: int, frontier_ts: int, held_events: int) -> str:
        """The line for ``now``: the copy's while a region is still scanning, else the feed's."""
        elapsed = max(now - self._last_at, 1e-9)
        scan_rate = max(0, rows_scanned - self._last_scanned) / elapsed
        write_rate = max(0, rows_written - self._last_written) / elapsed
        self._last_at, self._last_scanned, self._last_written = now, rows_scanned, rows_written
        if initialised < regions:
            text = (f"initial copy: {initialised}/{regions} regions scanned, {rows_scanned:,} rows received "
                    f"({scan_rate:,.0f} rows/s)")
            if initialised:  # by regions: a rough estimate, regions differ in size
                spent = now - self.started
                text += f", about {spent * (regions - initialised) / initialised:,.0f} s left"
            return text
        lag = ""
        if min_resolved_ts and frontier_ts > min_resolved_ts:
            lag = f" ({(physical_ms(frontier_ts) - physical_ms(min_resolved_ts)) / 1000:,.1f} s behind PD)"
        held = f"; {held_events} events held for the DDL frontier" if held_events else ""
        return (f"{events_written:,} events, {rows_written:,} rows written ({write_rate:,.0f} rows/s); {regions} regions; "
                f"least resolved ts {min_resolved_ts}{lag}{held}")
