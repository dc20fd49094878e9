"""A SparkSession set up for TheFlash: the Spark connector jar on the session and a service
for its reads (or, with ``jvm=False``, the Python data source), workers running this
interpreter."""
from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pyspark_theflash.service.server import RunningService
    from pyspark.sql import SparkSession

log = logging.getLogger("theflash.spark")
SERVER_CONF = "theflash.server"
TOKEN_CONF = "theflash.token"  # Spark redacts conf values whose key says "token"
STORE_CONF = "theflash.store"
_SERVICE: RunningService | None = None  # the loopback service in_process_service() started
_SERVICES: dict[str, RunningService] = {}  # in_process_service()'s services by the address each binds
_SERVICE_LOCK = threading.Lock()


def theflash_session(master: str | None = None, app_name: str = "theflash", *, jvm: bool | None = None,
                     server: str | None = None, store: str | None = None, ui: bool = True,
                     **conf: object) -> SparkSession:
    """Return (or create) a SparkSession configured for ``format("theflash")``.

    By default the Spark connector jar goes on a new session, so ``format("theflash")`` and the
    catalog (``spark.sql.catalog.theflash``) are the JVM connector: column pruning, filter
    pushdown, statistics and the ``theflash.snapshot_ts`` pin come from it, and its session
    extension (``spark.sql.extensions``) reads every table of one query at one snapshot ts. Its reads go to
    ``server`` (``http://host:port`` of ``theflash serve``) or, when none is given, to a service
    this function starts in this process (on loopback, with a token of its own) that reads
    whichever store a read names. ``store`` becomes the session's default store
    (``theflash.store``: reads and the catalog without a ``store`` option use it).

    ``jvm=False`` leaves the jar out: ``format("theflash")`` is then the Python data source,
    whose reads take their options only (no session pin, no pushdown). A session that already
    runs without the jar stays so (PySpark keeps one JVM per process) unless ``jvm=True``
    insists, which is an error then. Such a session's service (``server``, or with a cluster
    master one this function starts as below) is where the Python source reads whenever the
    store is not visible at the read's path (an executor on another host): PySpark hands a
    Python source its options only, so the service's address and token go into this process's
    environment (``THEFLASH_SERVER``, ``THEFLASH_SERVER_TOKEN``) before Spark's JVM starts, and
    Spark's driver-side Python workers find them there (``spark/service_read.py``).

    A session that already runs is returned as it is, except for the settings passed here
    (``conf``) and the theflash ones above: its shuffle partitions, UI or memory are the user's.
    A new session gets a few defaults suited to local work (Arrow, 4 shuffle partitions), each
    only where ``conf`` does not set it; its Spark UI is on (the scan node's theflash metrics
    show there) unless ``ui=False``. A session of the Python source also gets this package's
    Python worker daemon (``spark.python.daemon.module``, ``spark/worker_daemon.py``): its workers
    import the installed PySpark, compiled, where Spark would have them compile pyspark.zip's.

    With a cluster master (``spark://``, ``yarn``, ``k8s://``) executors run on other hosts: for
    ``spark://`` the driver's address (``spark.driver.host``) defaults to this machine's address
    on the route to the master, and the service this function starts binds
    ``spark.driver.bindAddress`` (else ``spark.driver.host``) and is advertised at
    ``spark.driver.host`` in ``theflash.server``; its bearer token, which every call must carry,
    is in the session conf ``theflash.token`` (redacted by Spark) and reaches executors inside
    the planned partitions, never on a command line. One log line says where it serves.

    py4j's callback server (``foreachBatch``, streaming query listeners) is started with the
    session rather than on first use, so that it listens on a low descriptor: started once the
    process holds 1024 descriptors it could not accept the JVM's calls and a ``foreachBatch``
    stream would hang (``spark/callback_server.py``).
    """
    if jvm is False and store is not None:
        raise ValueError("store is the connector jar's default store; with jvm=False give the Python source "
                         "option store on each read")
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
        connector = has_connector_jar(session)
        if jvm and not connector:
            _refuse_without_connector(session)
        if connector and EXTENSIONS_CLASS not in (session.conf.get("spark.sql.extensions", "") or ""):
            log.warning("this Spark session was started without spark.sql.extensions=%s (a session's extensions "
                        "are fixed when it starts): each theflash table of a query takes its own snapshot ts. "
                        "Start the process's first session with theflash_session() for one ts per query",
                        EXTENSIONS_CLASS)
        if jvm is False and connector:
            log.warning("this process's Spark JVM already loads the theflash connector jar, so format('theflash') "
                        "is the connector whatever jvm says: its reads are set up as theflash_session() sets them")
        from pyspark_theflash.spark.service_read import SERVER_ENVIRONMENT

        if not connector and server is not None and os.environ.get(SERVER_ENVIRONMENT) != server:
            log.warning("server=%s reaches the Python source through the environment of Spark's JVM, which started "
                        "before: give option server on its reads", server)
    else:
        builder = SparkSession.builder.appName(app_name)
        if master:
            builder = builder.master(master)
        settings = {
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.ui.enabled": "true" if ui else "false",
            "spark.sql.shuffle.partitions": "4",
            "spark.driver.memory": "2g",
            "spark.python.worker.reuse": "true",
        }
        if local:
            settings.update({"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1"})
        elif "spark.driver.host" not in user and master is not None:
            # executors call the driver back at this address: the one this machine reaches the
            # master from (Spark's default, the host name, may resolve to loopback)
            host = address_towards(master)
            if host is not None:
                settings["spark.driver.host"] = host
        connector = jvm is not False and (jvm or _jar_built())
        if connector:
            from pyspark_theflash.spark.jar import jar_path

            jars = [j for j in user.get("spark.jars", "").split(",") if j]
            settings["spark.sql.catalog.theflash"] = "io.theflash.spark.TheFlashCatalog"
            # one snapshot ts per query across every theflash table it reads (QuerySnapshotRule)
            extensions = [e for e in user.get("spark.sql.extensions", "").split(",") if e.strip()]
            if EXTENSIONS_CLASS not in extensions:
                user["spark.sql.extensions"] = ",".join(extensions + [EXTENSIONS_CLASS])
            user["spark.jars"] = ",".join(jars + [str(jar_path())])
        else:
            # the Python source's workers import PySpark as installed, compiled, not from the
            # sources in Spark's pyspark.zip (0.57 CPU s less per daemon, four a session: spark/
            # worker_daemon.py); its executors import this package for their reads already
            from pyspark_theflash.spark.worker_daemon import DAEMON_CONF, MODULE

            settings[DAEMON_CONF] = MODULE
        settings.update(user)
        # the Python source learns its service from the environment Spark's JVM starts with
        python_source = None if connector else _serve_python_source(master, settings, server, local)
        for key, value in settings.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        if connector:
            _refuse_without_connector(session)
        elif python_source is not None:
            session.conf.set(SERVER_CONF, python_source[0])
            if python_source[1] is not None:
                session.conf.set(TOKEN_CONF, python_source[1])
    if connector:
        _connect(session, server, store, user)
    from pyspark_theflash.spark.callback_server import start_callback_server

    start_callback_server(session)  # now, while this process's descriptors are few (callback_server.py)
    return session


def _serve_python_source(master: str | None, conf: dict[str, str], server: str | None,
                         local: bool) -> tuple[str, str | None] | None:
    """The Python source's service for a session about to start: ``server``, or with a cluster
    master a service in this process bound as the connector's is (``spark.driver.bindAddress``,
    else ``spark.driver.host``, which executors call), put in
    this process's environment (``THEFLASH_SERVER``, ``THEFLASH_SERVER_TOKEN``) for Spark's JVM
    and its Python workers to inherit. (url, token), or None: a local session's executors see
    the store."""
    from pyspark_theflash.spark.service_read import SERVER_ENVIRONMENT, SERVER_TOKEN_ENVIRONMENT

    if server is not None:
        os.environ[SERVER_ENVIRONMENT] = server
        os.environ.pop(SERVER_TOKEN_ENVIRONMENT, None)  # its token: option token, or THEFLASH_TOKEN
        return server, None
    if local or master is None:
        return None
    host = conf.get("spark.driver.host") or address_towards(master)
    if host is None:
        log.warning("theflash: no service for the Python source: set spark.driver.host (the address executors reach "
                    "this driver at) for one in this process, or give option server to reads whose executors do "
                    "not see the store")
        return None
    bind = conf.get("spark.driver.bindAddress") or host
    running = in_process_service(bind)
    url = f"http://{_url_host(host)}:{running.http.port}"
    os.environ[SERVER_ENVIRONMENT] = url
    os.environ[SERVER_TOKEN_ENVIRONMENT] = _service_token(running)
    log.info("theflash: this session's read service serves %s (bound to %s:%d), requiring the bearer token in the "
             "session conf %s; the Python source reads through it where the store is not visible", url, bind,
             running.http.port, TOKEN_CONF)
    return url, running.service.auth.token


def _jar_built() -> bool:
    from pyspark_theflash.spark.jar import JAR

    if JAR.exists():
        return True
    log.warning("the theflash connector jar %s is not built (scripts/bootstrap.sh builds it): this session reads "
                "through the Python data source, without pushdown or the session's snapshot pin", JAR)
    return False


def _connect(session: SparkSession, server: str | None, store: str | None, user: dict[str, str]) -> None:
    """Point the session's connector reads at ``server``, or at this process's service."""
    if server is None and SERVER_CONF not in user and not session.conf.get(SERVER_CONF, None):
        bind, advertised = service_address(session)
        running = in_process_service(bind)
        url = f"http://{_url_host(advertised)}:{running.http.port}"
        session.conf.set(SERVER_CONF, url)
        session.conf.set(TOKEN_CONF, _service_token(running))  # executors get it in the planned partitions
        log.info("theflash: this session's read service serves %s (bound to %s:%d), requiring the bearer token "
                 "in the session conf %s", url, bind, running.http.port, TOKEN_CONF)
    elif server is not None:
        session.conf.set(SERVER_CONF, server)
    if store is not None:
        session.conf.set(STORE_CONF, os.path.abspath(store))


CONNECTOR_CLASS = "io.theflash.spark.TheFlashTableProvider"
EXTENSIONS_CLASS = "io.theflash.spark.TheFlashExtensions"


def has_connector_jar(session: SparkSession) -> bool:
    """Whether ``format("theflash")`` is the JVM connector in this session: whether the driver
    loads the connector's classes (a Java format name takes precedence over a Python one).

    Naming the jar in ``spark.jars`` is not enough. The driver's class path is fixed when its
    JVM starts, and PySpark keeps one JVM per Python process: a context started with the jar
    after one without it was stopped ships the jar to executors, but the driver resolves
    ``format("theflash")`` to the Python source. Asked once per context."""
    sc = session.sparkContext
    known = getattr(sc, "_theflash_has_connector_jar", None)
    if known is None:
        jvm = sc._jvm
        assert jvm is not None, "a running SparkContext has its JVM"
        known = bool(jvm.org.apache.spark.util.Utils.classIsLoadable(CONNECTOR_CLASS))
        setattr(sc, "_theflash_has_connector_jar", known)
    return known


def _refuse_without_connector(session: SparkSession) -> None:
    if has_connector_jar(session):
        return
    jars = session.sparkContext.getConf().get("spark.jars", "") or ""
    why = ("its driver JVM was started without the jar (PySpark keeps the JVM of this process's first session: "
           "a session stopped and started again with the jar still lacks it on the driver)"
           if any(os.path.basename(j).startswith("theflash-spark") for j in jars.split(",")) else
           "the jar is not in spark.jars")
    raise RuntimeError(f"this Spark session cannot load the theflash connector ({CONNECTOR_CLASS}): {why}. "
                       "Start this process's first session with theflash_session() or "
                       "spark.jars = $(theflash jar), or pass jvm=False to read through the Python source")


def address_towards(master: str) -> str | None:
    """This machine's address on the route to the master of ``spark://host:port[,host:port]``
    (a UDP socket's local address after ``connect``: no packet is sent), or None for a master
    that names no host (``yarn``, ``k8s://`` leave the driver's address to Spark)."""
    import socket
    from urllib.parse import urlparse

    if not master.startswith("spark://"):
        return None
    first = master[len("spark://"):].split(",")[0]
    where = urlparse("spark://" + first)
    if not where.hostname:
        return None
    try:
        with socket.socket(socket.AF_INET6 if ":" in where.hostname else socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((where.hostname, where.port or 7077))
            return str(probe.getsockname()[0])
    except OSError as exc:
        log.warning("cannot find this machine's address towards the Spark master %s (%s): set spark.driver.host",
                    master, exc)
        return None


def service_address(session: SparkSession) -> tuple[str, str]:
    """Where this process's service for ``session`` listens and what executors call: loopback
    for a local master; else Spark's ``spark.driver.bindAddress`` (bound) and
    ``spark.driver.host`` (advertised), the addresses executors already reach the driver at."""
    conf = session.sparkContext.getConf()
    master = conf.get("spark.master", "local") or "local"
    if master.startswith("local"):
        return "127.0.0.1", "127.0.0.1"
    host = conf.get("spark.driver.host", None) or address_towards(master) or "127.0.0.1"
    return conf.get("spark.driver.bindAddress", None) or host, host


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def in_process_service(host: str = "127.0.0.1") -> RunningService:
    """This process's service for the connector (``service.serve(any_store=True)``) on ``host``
    (loopback unless the session's executors run elsewhere): started once per address, with a
    random bearer token that every call must carry (it reads any store this process can), stopped
    at exit."""
    import secrets

    from pyspark_theflash.service import serve

    global _SERVICE
    with _SERVICE_LOCK:
        running = _SERVICES.get(host)
        if running is None:
            running = _SERVICES[host] = serve(any_store=True, host=host, port=0, token=secrets.token_urlsafe(32))
            atexit.register(running.close)
        if host == "127.0.0.1":
            _SERVICE = running
        return running


def _service_token(running: RunningService) -> str:
    token = running.service.auth.token
    assert token is not None, "in_process_service starts its services with a token"
    return token


def close_in_process_service() -> None:
    """Stop this process's service, releasing its sessions' leases now (it stops at exit
    otherwise): before deleting a store it has read, say."""
    global _SERVICE
    with _SERVICE_LOCK:
        stopping = list(_SERVICES.values())
        _SERVICES.clear()
        _SERVICE = None
    for running in stopping:
        atexit.unregister(running.close)
        running.close()
