"""The writer job: binlog source → ``Store.write`` (one atomic apply per batch) → flush by
size, deadline or a reader's flush request, with compaction/GC, progress and metrics.

Run it as ``theflash writer run|start|stop|status|ctl`` or as a Spark job
(``spark-submit $(theflash writer --spark-entry) --binlog ... --store ...``); in Python::

    from pyspark_theflash.writer import Writer, WriterOptions
    Writer(WriterOptions(binlog="file:///data/binlog", store="/data/flash")).run()
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark_theflash.lazy_exports import lazy_getattr
from pyspark_theflash.writer.errors import SchemaUnavailableError, WriterConfigError, WriterError, WriterNotRunningError
from pyspark_theflash.writer.options import TableFilter, WriterOptions, parse_duration

if TYPE_CHECKING:
    from pyspark_theflash.writer.loop import Writer

# The loop (the store, the engines, pyarrow.compute) is imported when Writer is first named:
# `writer stop`, `status` and `ctl`, and any one module of the package, start without it.
if not TYPE_CHECKING:
    __getattr__ = lazy_getattr(__name__, {"pyspark_theflash.writer.loop": ("Writer",)})

__all__ = [
    "Writer",
    "WriterOptions",
    "TableFilter",
    "parse_duration",
    "WriterError",
    "WriterConfigError",
    "WriterNotRunningError",
    "SchemaUnavailableError",
]
