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
        if jvm and not has_connector_jar(session):
            raise RuntimeError("this Spark session runs without the theflash connector jar: stop it, or start it "
                               "with spark.jars = $(theflash jar)")
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


def has_connector_jar(session: Any) -> bool:
    """Whether the session's ``spark.jars`` holds the connector jar (then ``format("theflash")``
    is the JVM connector: a Java format name takes precedence over a Python one). A context's
    jars are fixed when it starts: asked once per context (every theflash ``load()`` asks)."""
    sc = session.sparkContext
    known = getattr(sc, "_theflash_has_connector_jar", None)
    if known is None:
        jars = sc.getConf().get("spark.jars", "") or ""
        known = any(os.path.basename(j).startswith("theflash-spark") for j in jars.split(","))
        sc._theflash_has_connector_jar = known
    return known


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
