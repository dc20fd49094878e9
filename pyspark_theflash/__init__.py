"""TheFlash for Spark: a columnar, transaction-consistent replica of TiDB/TiKV, read from Spark.

``spark.read.format("theflash")`` finds this package without registration: Spark looks for
importable packages named ``pyspark_*`` that expose ``DefaultSource``. The data source is
imported lazily so that the CLI, the writer and the codec never pay for importing PySpark.

gRPC's fork support is off in every process that imports this package (before it imports
``grpc``; see ``grpc_fork.py``): a process that serves gRPC (the mini cluster, capture, the
writer) also starts child processes with fork() + exec (PySpark's JVM), and gRPC's fork
handlers kill such a child (SIGABRT) now and then.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark_theflash.grpc_fork import disable_grpc_fork_support

disable_grpc_fork_support()

__version__ = "0.1.0"
__all__ = ["DefaultSource", "__version__"]

if TYPE_CHECKING:
    from pyspark_theflash.spark.datasource import TheFlashDataSource


def __getattr__(name: str) -> type[TheFlashDataSource]:
    if name == "DefaultSource":
        from pyspark_theflash.spark.datasource import TheFlashDataSource

        return TheFlashDataSource
    raise AttributeError(f"module 'pyspark_theflash' has no attribute {name!r}")
