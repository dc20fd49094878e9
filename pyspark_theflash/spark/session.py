"""A SparkSession set up for TheFlash: workers run this interpreter and Arrow batches are
passed through; with ``jvm=True`` (or a ``server``/``store``) the Spark connector jar is on the
session and reads go through it."""
from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Any

SERVER_CONF = "theflash.server"
_SERVICES: dict[str, Any] = {}  # store -> the in-process service started for it
_SERVICES_LOCK = threading.Lock()


def theflash_session(master: str | None = None, app_name: str = "theflash", *, jvm: bool = False,
                     server: str | None = None, store: str | None = None, **conf: Any):
    """Return (or create) a SparkSession configured for ``format("theflash")``.

    Without ``jvm``: the Python data source, with the package's reader hook (session pin,
    native reads of compacted parts). With ``jvm=True``, or a ``server`` (``http://host:port``
    of ``theflash serve``) or a ``store`` (a service is then started in this process for it):
    the connector jar is added to ``spark.jars`` and ``theflash.server`` is set, so
    ``format("theflash")`` and the catalog (``spark.sql.catalog.theflash``, set unless given)
    read through the JVM connector, with no hook.

    A session that already runs is returned as it is, except for the settings passed here
    (``conf``): its shuffle partitions, UI or memory are the user's. Python filter pushdown
    (``spark.sql.python.filterPushdown.enabled``) is left as it is: the Python source takes no
    pushed filters (see ``spark/datasource.py``).
    """
    jvm = jvm or server is not None or store is not None
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    local = master is None or master.startswith("local")
    if local:
        # A local session serves nothing beyond this machine: bind the driver to loopback
        # (also silences Spark's "hostname resolves to a loopback address" warning).
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    user = {k: str(v) for k, v in conf.items()}
    running = SparkContext._active_spark_context is not None
    if running:
        session = SparkSession.builder.getOrCreate()
        for key, value in user.items():
            session.conf.set(key, value)
    else:
        builder = SparkSession.builder.appName(app_name)
        if master:
            builder = builder.master(master)
        settings = {
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "4",
            "spark.driver.memory": "2g",
            "spark.python.worker.reuse": "true",
        }
        if local:
            settings.update({"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1"})
        if jvm:
            from pyspark_theflash.spark.jar import jar_path

            jars = [j for j in user.get("spark.jars", "").split(",") if j]
            settings["spark.sql.catalog.theflash"] = "io.theflash.spark.TheFlashCatalog"
            user["spark.jars"] = ",".join(jars + [str(jar_path())])
        settings.update(user)
        for key, value in settings.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
    if jvm:
        _refuse_without_connector(session)
        if server is None and store is not None:
            server = in_process_service(store)
        if server is not None:
            session.conf.set(SERVER_CONF, server)
        return session
    # Lets spark.conf.set("theflash.snapshot_ts", ts) reach theflash reads (spark/pin.py) and
    # Spark's Parquet reader read the compacted parts (spark/native.py).
    from pyspark_theflash.spark.hook import install_reader_hook

    install_reader_hook()
    return session


CONNECTOR_CLASS = "io.theflash.spark.TheFlashTableProvider"


def has_connector_jar(session: Any) -> bool:
    """Whether ``format("theflash")`` is the JVM connector in this session: whether the driver
    loads the connector's classes (a Java format name takes precedence over a Python one).

    Naming the jar in ``spark.jars`` is not enough. The driver's class path is fixed when its
    JVM starts, and PySpark keeps one JVM per Python process: a context started with the jar
    after one without it was stopped ships the jar to executors, but the driver resolves
    ``format("theflash")`` to the Python source. Asked once per context (every theflash
    ``load()`` asks)."""
    sc = session.sparkContext
    known = getattr(sc, "_theflash_has_connector_jar", None)
    if known is None:
        known = bool(sc._jvm.org.apache.spark.util.Utils.classIsLoadable(CONNECTOR_CLASS))
        sc._theflash_has_connector_jar = known
    return known


def _refuse_without_connector(session: Any) -> None:
    if has_connector_jar(session):
        return
    jars = session.sparkContext.getConf().get("spark.jars", "") or ""
    why = ("its driver JVM was started without the jar (PySpark keeps the JVM of this process's first session: "
           "a session stopped and started again with the jar still lacks it on the driver)"
           if any(os.path.basename(j).startswith("theflash-spark") for j in jars.split(",")) else
           "the jar is not in spark.jars")
    raise RuntimeError(f"this Spark session cannot load the theflash connector ({CONNECTOR_CLASS}): {why}. "
                       "Start this process's first session with theflash_session(jvm=True) or "
                       "spark.jars = $(theflash jar), or leave out jvm/server/store to read through the Python source")


def in_process_service(store: str) -> str:
    """The HTTP address of a service for ``store`` in this process (started once, on loopback,
    stopped at exit)."""
    from pyspark_theflash.service import serve

    key = os.path.abspath(store)
    with _SERVICES_LOCK:
        running = _SERVICES.get(key)
        if running is None:
            running = _SERVICES[key] = serve(key, port=0)
            atexit.register(running.close)
        return running.http_url
