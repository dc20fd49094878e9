"""``theflash capture``: a TiDB cluster's changes into the binlog, over PD, TiKV's change-data
feed and TiDB's status port (docs/capture.md)."""
from pyspark_theflash.capture.capture import Capture, CaptureOptions
from pyspark_theflash.capture.errors import CaptureError

__all__ = ["Capture", "CaptureOptions", "CaptureError"]
