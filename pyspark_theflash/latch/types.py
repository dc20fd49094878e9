"""The values the latch service hands out: leases, the write-latch holder, flush requests."""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Lease:
    """A reader's pin on snapshot ``ts`` until ``expires_at`` (unix seconds)."""

    lease_id: int
    ts: int
    holder: str
    expires_at: float


@dataclass(frozen=True)
class WriterHolder:
    """Who holds a store's write latch. ``token`` is a fencing token, bumped on every
    acquisition: renewing with an old token fails, so a writer that was taken over stops."""

    name: str
    host: str
    pid: int
    since: float
    expires_at: float
    token: int

    def describe(self) -> str:
        since = _dt.datetime.fromtimestamp(self.since, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{self.name} (host {self.host}, pid {self.pid}, since {since})"

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "host": self.host,
            "pid": self.pid,
            "since": self.since,
            "expires_at": self.expires_at,
            "token": self.token,
        }


@dataclass(frozen=True)
class FlushRequest:
    """A reader asks the writer to flush ``region_ids``; with ``read_index`` the writer completes
    it only once every listed region has applied at least that index (a learner read)."""

    request_id: int
    region_ids: tuple[int, ...]
    read_index: dict[int, int] = field(default_factory=dict)
    requested_at: float = 0.0
