"""Errors of the change log. Each message names the segment file, the offset or the position
involved and what the reader can do about it."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pyspark_theflash.errors import TheFlashError

if TYPE_CHECKING:
    from pyspark_theflash.binlog.position import Position


class BinlogError(TheFlashError):
    """Base class of the change log's errors."""


class BinlogCorruptError(BinlogError):
    """A record that cannot be trusted: bad checksum, impossible length, unparsable event.

    Never skipped silently: the events after it may depend on it (raft order per region).
    """

    def __init__(self, path: Path | str, offset: int, reason: str) -> None:
        self.path = Path(path)
        self.offset = offset
        self.reason = reason
        super().__init__(
            f"binlog segment {self.path} is corrupt at byte offset {offset}: {reason}; "
            "restore the segment from a replica or re-seed the store from a region snapshot"
        )


class BinlogTruncatedError(BinlogCorruptError):
    """A segment ends in the middle of a record although newer segments follow it: bytes the
    writer had finished were lost (a crash without fsync, or a copied/cut file)."""


class BinlogFormatError(BinlogError):
    """A file that is not a binlog segment of a version this code reads (wrong directory?)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path} is not a TheFlash binlog segment: {reason}; check the binlog directory")


class BinlogVersionError(BinlogFormatError):
    """A binlog segment of a format version this code does not read (written by a newer
    TheFlash, or damaged)."""

    def __init__(self, path: Path | str, version: int, readable: tuple[int, ...]) -> None:
        self.version = version
        newer = version > max(readable)
        what = ("upgrade TheFlash where this process runs to the version that wrote it (capture and writer "
                "must read the same binlog format)" if newer else "the file is damaged or not written by TheFlash")
        BinlogError.__init__(self, f"{Path(path)} is a binlog segment of format version {version}; this code reads "
                                   f"versions {', '.join(map(str, readable))}: {what}")
        self.path, self.reason = Path(path), f"format version {version}"


class BinlogPositionGoneError(BinlogError):
    """The requested position lies in a segment that retention already deleted."""

    def __init__(self, requested: "Position", oldest: "Position", where: str = "") -> None:
        self.requested = requested
        self.oldest = oldest
        at = f" in {where}" if where else ""
        super().__init__(
            f"binlog position {requested} is no longer available{at}: the oldest position is {oldest}; "
            "the segments before it were pruned. Re-seed the replica from region snapshots or "
            f"restart from {oldest} knowing that the events in between are lost"
        )


class BinlogPositionError(BinlogError):
    """A position that never was a record boundary of this log (beyond its head, or inside a
    record): usually a position from a different binlog directory."""


class BinlogLockedError(BinlogError):
    """Another SegmentWriter (in this or another process) holds the directory."""


class BinlogSourceError(BinlogError):
    """A source URL this code cannot open, or a source that is closed."""
