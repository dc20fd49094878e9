"""Errors of ``theflash capture``: what went wrong, against which address, and what to do."""
from __future__ import annotations

from pyspark_theflash.errors import TheFlashError


class CaptureError(TheFlashError):
    """Capture cannot go on (bad arguments, an unreachable or wrong cluster, GC past the data)."""


class GCPassedError(CaptureError):
    """TiDB's GC already collected versions the binlog still needs."""
