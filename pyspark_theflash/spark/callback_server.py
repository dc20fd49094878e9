"""py4j's callback server, started with the session while this process's descriptors are few.

Spark's JVM calls back into the driver's Python process for ``foreachBatch`` and streaming
query listeners, through py4j's callback server, which PySpark starts on first use
(``pyspark.java_gateway.ensure_callback_server_started``). That server's accept loop
watches its listening socket with ``select.select``, which refuses a descriptor at or above
FD_SETSIZE (1024): started in a process that already holds 1024 descriptors (a long test
run, a driver with many files, sockets and gRPC channels open), the loop dies at once
("Error while waiting for a connection", ValueError: filedescriptor out of range in
select()) while the socket stays open, so the JVM's connection is accepted by the kernel and
its stream thread waits for an answer that never comes: the query hangs in foreachBatch
(issue 49). Started with the session, early in a process's life, the socket takes a low
descriptor and the server keeps working however many descriptors the process opens later;
it lives as long as the process's gateway, across sessions stopped and started again.

The one module that reaches into the gateway (PySpark's ``SparkContext._gateway``, py4j's
``_callback_server``); ``tests/spark/test_callback_server.py`` fails when they move.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("theflash.spark")

FD_SETSIZE = 1024  # glibc's: select() watches descriptors below it only


def start_callback_server(session: SparkSession) -> int:
    """Start ``session``'s py4j callback server if it is not running (PySpark's own
    ``ensure_callback_server_started``, as ``foreachBatch`` calls it); return the descriptor
    it listens on, after warning when ``select()`` cannot watch it."""
    from pyspark.java_gateway import ensure_callback_server_started

    gateway = session.sparkContext._gateway
    assert gateway is not None, "a running SparkContext has its py4j gateway"
    ensure_callback_server_started(gateway)
    descriptor = int(gateway._callback_server.server_socket.fileno())
    if descriptor >= FD_SETSIZE:
        log.warning("py4j's callback server listens on descriptor %d, which its select() cannot watch (at most %d): "
                    "foreachBatch and streaming query listeners of this process would hang. Start the Spark session "
                    "(theflash_session()) before this process opens %d files and sockets", descriptor,
                    FD_SETSIZE - 1, FD_SETSIZE)
    return descriptor
