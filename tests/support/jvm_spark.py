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


def _start(jar: str, conf: dict[str, str], log: str | None = None, env: dict[str, str] | None = None) -> None:
    global _SPARK
    os.environ.update(env or {})  # the driver JVM's environment (e.g. S3 keys its credential chain reads)
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


def _run(fn: Callable[..., Any], args: tuple[Any, ...], session: int | None = None) -> tuple[str, Any]:
    try:
        return "ok", fn(_SPARK if session is None else _SESSIONS[session], *args)
    except BaseException as exc:  # sent back as data: Py4J errors do not pickle
        return "error", (type(exc).__name__, str(exc), traceback.format_exc())


_SESSIONS: dict[int, Any] = {}


def _new_session(conf: dict[str, str]) -> int:
    session = _SPARK.newSession()
    for key, value in conf.items():
        session.conf.set(key, value)
    _SESSIONS[id(session)] = session
    return id(session)


def _drop_session(key: int) -> None:
    _SESSIONS.pop(key, None)


class JvmSpark:
    """``conf``: more Spark settings; ``log``: a file the driver's log (its standard error) goes to;
    ``env``: more environment for the worker and its JVM."""

    def __init__(self, jar: str, conf: dict[str, str] | None = None, log: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_start,
                                         initargs=(jar, dict(conf or {}), log, dict(env or {})))

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 600) -> Any:
        return self._call(fn, args, None, timeout)

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], session: int | None, timeout: float) -> Any:
        status, value = self._pool.submit(_run, fn, args, session).result(timeout)
        if status == "error":
            raise RemoteError(*value)
        return value

    def session(self, conf: dict[str, str] | None = None) -> "JvmSession":
        """A new SparkSession in this worker's JVM (``SparkSession.newSession()``): its own SQL conf,
        temporary views and catalogs (a catalog reads its ``spark.sql.catalog.*`` settings once, when a
        session first uses it), the JVM, the jar and the extensions shared. Starts no JVM."""
        return JvmSession(self, self._pool.submit(_new_session, dict(conf or {})).result(120))

    def close(self) -> None:
        try:
            self.call(_stop, timeout=60)
        finally:
            self._pool.shutdown(wait=True)


def _stop(spark: Any) -> None:
    spark.stop()


class JvmSession:
    """One of a ``JvmSpark``'s sessions (``JvmSpark.session()``): ``call`` runs ``fn(session, *args)``."""

    def __init__(self, jvm: JvmSpark, key: int) -> None:
        self._jvm, self._key = jvm, key

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 600) -> Any:
        return self._jvm._call(fn, args, self._key, timeout)

    def close(self) -> None:
        """Forgets the session (its SparkContext is the JVM's: it goes on)."""
        self._jvm._pool.submit(_drop_session, self._key).result(60)
