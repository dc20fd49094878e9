"""A Spark session with the connector jar (``spark.jars``), in a process of its own.

One Python process holds one Spark JVM, and the suite's ``spark`` fixture is a session
without the jar (the Python data source). So the JVM connector's tests run their Spark
calls in a spawned worker process whose session loads the jar: ``jvm.call(fn, *args)``
runs ``fn(spark, *args)`` there (``fn`` a module-level function) and returns its result.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import traceback
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

_SPARK: Any = None


class RemoteError(Exception):
    """What ``fn`` raised in the worker: its type's name and its message."""

    def __init__(self, kind: str, message: str, trace: str) -> None:
        super().__init__(f"{kind}: {message}\n{trace}")
        self.kind, self.message, self.trace = kind, message, trace


def _start(jar: str, conf: dict[str, str], log: str | None = None) -> None:
    global _SPARK
    if log is not None:  # the driver JVM inherits this process's standard error: its log goes there
        os.dup2(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), 2)
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("local[2]").appName("theflash-jvm-tests")
    settings = {"spark.jars": jar, "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4",
                "spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1",
                "spark.sql.session.timeZone": "UTC", "spark.driver.memory": "1g",
                "spark.sql.catalog.theflash": "io.theflash.spark.TheFlashCatalog",
                "spark.sql.extensions": "io.theflash.spark.TheFlashExtensions", **conf}
    for key, value in settings.items():
        builder = builder.config(key, value)
    _SPARK = builder.getOrCreate()
    from pyspark_theflash.spark.callback_server import start_callback_server

    start_callback_server(_SPARK)  # foreachBatch's, on a low descriptor while this worker is young


def _run(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[str, Any]:
    try:
        return "ok", fn(_SPARK, *args)
    except BaseException as exc:  # sent back as data: Py4J errors do not pickle
        return "error", (type(exc).__name__, str(exc), traceback.format_exc())


class JvmSpark:
    """``conf``: more Spark settings; ``log``: a file the driver's log (its standard error) goes to."""

    def __init__(self, jar: str, conf: dict[str, str] | None = None, log: str | None = None) -> None:
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_start,
                                         initargs=(jar, dict(conf or {}), log))

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 600) -> Any:
        status, value = self._pool.submit(_run, fn, args).result(timeout)
        if status == "error":
            raise RemoteError(*value)
        return value

    def close(self) -> None:
        try:
            self.call(_stop, timeout=60)
        finally:
            self._pool.shutdown(wait=True)


def _stop(spark: Any) -> None:
    spark.stop()
