"""``theflash capture``: a TiDB cluster's changes into the binlog, over PD, TiKV's change-data
feed and TiDB's status port (docs/capture.md)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark_theflash.capture.errors import CaptureError
from pyspark_theflash.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from pyspark_theflash.capture.capture import Capture, CaptureOptions

# Capture proper (the change-data feed, the binlog writer, pyarrow.compute) is imported when
# first named: `capture stop` and `status`, and any one module of the package, start without it.
if not TYPE_CHECKING:
    __getattr__ = lazy_getattr(__name__, {"pyspark_theflash.capture.capture": ("Capture", "CaptureOptions")})

__all__ = ["Capture", "CaptureOptions", "CaptureError"]
