"""Shared fixtures: the TiDB vectors, a local Spark session, the tiers and the slow-test switch.

The suite is three tiers, a folder each: tests/unit (one process, no server, no Spark),
tests/integration (the mini cluster, servers and child processes on loopback) and tests/spark
(a local Spark session, the connector jar, the notebook and the README's blocks). Rigs, models
and child programs the tiers share are in tests/support (on the path: ``import flash_rig``)."""
from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest

# First, before any test module imports grpc: the package turns gRPC's fork support off then
# (pyspark_theflash/grpc_fork.py), which gRPC reads once, when it is imported. This process
# serves gRPC (rigs, mini clusters) and forks children that run Python before exec (PySpark's JVM).
import pyspark_theflash  # noqa: F401,E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("THEFLASH_SHARED", ROOT.parent / "shared"))

# Spark's Python workers must run this interpreter so they import the installed package.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

# Every Spark the run starts (the suite's sessions, the JVMs tests and README blocks start, the
# cluster test's daemons) reads the test machine's Spark configuration, tests/support/
# machine_spark_conf.py, unless this machine has one of its own. Set once, in the first pytest
# process (with -n 3 the workers inherit it), removed when that process exits.
if "SPARK_CONF_DIR" not in os.environ:
    from machine_spark_conf import write_spark_conf

    _spark_conf = Path(tempfile.mkdtemp(prefix="theflash-spark-conf-"))
    atexit.register(shutil.rmtree, _spark_conf, ignore_errors=True)
    os.environ["SPARK_CONF_DIR"] = str(write_spark_conf(_spark_conf))


pytest_plugins = ["service_fixtures"]  # tests/support/service_fixtures.py: service, conn

TIERS = ("unit", "integration", "spark")  # the folders under tests/, each a marker of the same name


def _refuse(what: str) -> Callable[..., Any]:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a unit test {what}: it belongs in tests/integration (the unit tier is one process, "
                             "no server)")
    return refused


@pytest.fixture(autouse=True)
def _unit_tier_rule(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit tier's rule, checked: a unit test runs in this one process, and starts no child
    process and no server (no socket bound, no gRPC server)."""
    if request.node.get_closest_marker("unit") is None:
        return
    import grpc

    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("starts a child process"))
    monkeypatch.setattr(socket.socket, "bind", _refuse("binds a socket"))
    monkeypatch.setattr(grpc, "server", _refuse("starts a gRPC server"))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` (pyproject.toml), with the modules that share a process's Spark sessions,
    or its delta-spark session and S3 server, kept on one worker (tests/support/session_groups.py)."""
    if config.getoption("dist") != "loadfile":
        return None
    from session_groups import SessionGroupScheduling

    return SessionGroupScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test carries its tier's marker (``-m unit``, ``-m "not spark"``); slow tests run
    with ``-m slow`` or THEFLASH_SLOW=1, so the default run stays fast. A module that takes a
    session kept on one worker is in its group (tests/support/session_groups.py)."""
    from session_groups import check_session_groups

    check_session_groups(items)
    for item in items:
        tier = Path(str(item.fspath)).relative_to(ROOT / "tests").parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: a test lives in one of tests/{{{','.join(TIERS)}}}/")
        item.add_marker(getattr(pytest.mark, tier))
    if os.environ.get("THEFLASH_SLOW") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with THEFLASH_SLOW=1 or -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tidb_vectors() -> list[dict]:
    path = SHARED / "tidb_vectors.json"
    if not path.exists():
        pytest.fail(f"{path} is missing: CI clones ../shared beside the repository")
    return json.loads(path.read_text())


# Low descriptors kept free for the ``spark`` fixture's session, which a full run starts late, when
# this process may hold over 1024 descriptors: py4j's callback server (foreachBatch) watches its
# socket with select(), which cannot watch a descriptor >= 1024, and a foreachBatch stream would
# then hang (pyspark_theflash/spark/callback_server.py).
_LOW_DESCRIPTORS = [os.open(os.devnull, os.O_RDONLY) for _ in range(32)]


# The shared sessions' (spark, jvm_spark, delta_spark) execution mode: Spark's plans interpreted, no
# Java source generated and compiled for each query. Their queries are many (the differentials,
# TPC-H's 22 twice, delta-spark's log replays) over small data, where compiling each plan's code
# was most of the work: six modules of the first two, 226 -> 179 CPU s and 231 -> 180 s (issue
# 54). How Spark evaluates, not what it reads: the connector hands Spark Arrow batches either way,
# and every Spark a test starts in a process of its own (the README's blocks, the quick starts, the
# notebook, the cluster test, theflash_session's tests) runs with Spark's defaults, code generated.
INTERPRETED: dict[str, str] = {"spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN"}

# The delta-spark session's JVM compiles hot code with C2, as a JVM does by default: the machine's
# Spark configuration stops every JVM at C1 (tests/support/machine_spark_conf.py), which pays for
# the suite's many short-lived JVMs, but this one lives for the whole run replaying Delta logs, the
# same code over and over, where C2's faster code pays back its compiles. The Delta group's seven
# modules in one process on a quiet machine: 276-296 -> 263 CPU s, 213-227 -> 182 s. Not for the
# spark and jvm_spark sessions: their queries are many and different, and C2 compiled more than it
# saved (tpch, spark_differential, jvm_query_snapshot: 302 -> 383 CPU s; issue 54). (The machine's
# options come first: this later -XX:TieredStopAtLevel is the one the JVM keeps.)
C2_COMPILED: dict[str, str] = {"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=4"}


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the whole run (starting one costs seconds)."""
    from pyspark_theflash.spark.callback_server import FD_SETSIZE, start_callback_server
    from pyspark_theflash.spark.session import theflash_session

    session = theflash_session(master="local[2]", app_name="theflash-tests", jvm=False, ui=False, **INTERPRETED)
    descriptor = start_callback_server(session)  # theflash_session started it: this says where
    if descriptor >= FD_SETSIZE:
        # The process held 1024 descriptors before the session (its earlier tests' rigs): the
        # callback server listens again on a reserved low one, released only now, just before
        # its socket is made: released before the session, the session's start and the
        # threads still running took them (a full run saw descriptor 1212 and 62 errors).
        gateway = session.sparkContext._gateway
        gateway.shutdown_callback_server()
        gateway._callback_server = None  # (py4j's shutdown leaves it set; PySpark starts one when None)
        while _LOW_DESCRIPTORS:
            os.close(_LOW_DESCRIPTORS.pop())
        descriptor = start_callback_server(session)
    while _LOW_DESCRIPTORS:
        os.close(_LOW_DESCRIPTORS.pop())
    if descriptor >= FD_SETSIZE:
        pytest.fail(f"py4j's callback server listens on descriptor {descriptor}: foreachBatch would hang")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def jvm_spark():
    """A local Spark session with the connector jar, in a worker process (tests/support/jvm_spark.py)."""
    from jvm_spark import JvmSpark
    from pyspark_theflash.spark.jar import JarError, jar_path

    try:
        jar = str(jar_path())
    except JarError as exc:
        pytest.fail(str(exc))
    session = JvmSpark(jar, conf=INTERPRETED)
    yield session
    session.close()


@pytest.fixture(scope="session")
def delta_spark(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A plain Spark session with delta-spark and hadoop-aws (no TheFlash jar), in a worker process
    (tests/support/jvm_spark.py), for the whole run: the Delta tests (tests/spark/test_delta_spark*.py)
    read through it, local paths and ``s3a://`` on this process's S3 server (its S3A settings in the
    session's conf, its keys in the JVM's environment, never a command line). One JVM per test
    process, not one per test: its start took 8-11 s, and a warm JVM reads the same versions in about
    half the time of a cold one (issue 54). The jars come from the set-up command's cache: missing,
    the test fails (it does not skip)."""
    from jvm_spark import JvmSpark
    from pyspark_theflash.lake.errors import LakeSetupError
    from pyspark_theflash.lake.jars import delta_spark_jars, s3a_jars

    try:
        jars = ",".join(str(j) for j in [*delta_spark_jars(), *s3a_jars()])
    except LakeSetupError as exc:
        pytest.fail(str(exc))
    # delta-spark's snapshot of these small logs in 2 tasks, not its default 50 (each a round trip to
    # the S3 server): the reads fit their call's time on a loaded 2-core machine
    session = JvmSpark(jars, conf={"spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
                                   "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
                                   "spark.databricks.delta.snapshotPartitions": "2",
                                   # (INTERPRETED) each task of a log replay generated the code of
                                   # the Delta actions' projection again (the cache is keyed by that
                                   # code): 44% of this JVM's JFR samples (issue 54). test_delta_spark
                                   # {,_column_mapping,_ddl}.py, projections interpreted: this JVM
                                   # 70.5 -> 55.4 CPU s, 94 -> 86 s.
                                   **INTERPRETED, **C2_COMPILED,
                                   # a version checksum (.crc) that disagrees with the log fails
                                   # (delta-spark's default, said here: the tests rely on it)
                                   "spark.databricks.delta.checksum.mismatch.fatal": "true",
                                   **s3_server.hadoop_conf()},
                       log=str(tmp_path_factory.mktemp("delta-spark") / "spark.log"), env=s3_server.env())
    yield session
    session.close()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real S3-compatible server (SeaweedFS, tests/support/s3_server.py) on 127.0.0.1, free
    ports, for the whole run; built by the set-up command: missing, the test fails saying so."""
    from s3_server import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3")).start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the S3 server, with the server's endpoint and keys in this process's
    environment, where pyarrow, delta-rs, DuckDB's secret and S3A read them (never a command line)."""
    import secrets

    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    bucket = f"theflash-{secrets.token_hex(4)}"
    s3_server.create_bucket(bucket)
    return bucket
