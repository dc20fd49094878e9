"""The catalog from PD alone, as TiSpark's: a JVM Spark session configured with only
``spark.sql.catalog.theflash.pd`` and ``.store`` (no ``server``, no ``theflash serve`` started by
hand) starts the service itself, as a child process of the driver, reads the upstream's rows
through ``SELECT ... FROM theflash.db.t``, and the service ends with the JVM, whether it exits
or is killed. A wrong PD address, an HTTP port given as PD's, a missing store or an interpreter
that cannot run fail the catalog's first use with one sentence naming the setting."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
from pathlib import Path
from typing import Any, Iterator

import pytest

from churn import Churn, churn_rig
from flash_rig import FlashRig, wait_for
from jvm_spark import JvmSpark, RemoteError

pytestmark = pytest.mark.spark

TABLE = "jc.items"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashRig]:
    with churn_rig(tmp_path_factory.mktemp("jvm-catalog-pd"), TABLE) as rig:  # through capture, over PD's wire
        yield rig


def pd_only(rig: FlashRig) -> dict[str, str]:
    """The session's whole theflash configuration (tests/support/jvm_spark.py adds the catalog's class)."""
    return {"spark.sql.catalog.theflash.pd": rig.upstream.removeprefix("pd://"),
            "spark.sql.catalog.theflash.store": rig.store}


def jar() -> str:
    from pyspark_theflash.spark.jar import jar_path

    return str(jar_path())


def services_of(store: str) -> list[tuple[int, int]]:
    """(pid, parent pid) of each ``theflash serve`` of ``store`` a catalog started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv]
        if "serve" in words and "--stop-on-stdin-close" in words and store in words:
            found.append((int(entry.name), int(stat.rsplit(")", 1)[1].split()[1])))
    return found


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"  # exited, not yet reaped by its (dead) parent's reaper


# -- functions run in the Spark worker with the jar (tests/support/jvm_spark.py) ---------------------
def jvm_rows(spark: Any, statements: list[str]) -> list[Any]:
    assert spark.conf.get("theflash.server", None) is None  # nothing but the catalog's pd and store
    return [sorted(tuple(r) for r in spark.sql(s).collect()) for s in statements]


def jvm_failure(spark: Any, catalog: str, options: dict[str, str]) -> str:
    spark.conf.set(f"spark.sql.catalog.{catalog}", "io.theflash.spark.TheFlashCatalog")
    for key, value in options.items():
        spark.conf.set(f"spark.sql.catalog.{catalog}.{key}", value)
    spark.sql(f"SELECT count(*) FROM {catalog}.{TABLE}").collect()
    return "no error"


# -- tests -----------------------------------------------------------------------------------
def upstream_rows(rig: FlashRig, ts: int | None = None) -> list[tuple[Any, ...]]:
    return sorted((r["id"], r["name"], r["qty"]) for r in rig.cluster.scan_table(TABLE, ts=ts))


def test_a_catalog_given_only_pd_and_store_starts_its_service_and_reads_the_upstreams_rows(rig: FlashRig) -> None:
    spark = JvmSpark(jar(), pd_only(rig))
    try:
        with Churn(rig, TABLE, rate=20.0, seed=3) as churn:
            wait_for(lambda: churn.commits >= 20, 60, "the workload to commit")
            ts = int(rig.cluster.get_ts())
            wait_for(lambda: churn.commits >= 40, 60, "the workload to commit after ts")
        at_ts, latest = spark.call(jvm_rows, [f"SELECT id, name, qty FROM theflash.{TABLE} VERSION AS OF {ts}",
                                              f"SELECT id, name, qty FROM theflash.{TABLE}"])
        assert at_ts == upstream_rows(rig, ts) and len(at_ts) >= 10
        assert latest == upstream_rows(rig) and latest != at_ts  # the workload changed rows after ts
        (child, parent), = services_of(rig.store)  # one service, the driver JVM's child
        assert "java" in Path(f"/proc/{parent}/cmdline").read_bytes().decode(errors="replace")
    finally:
        spark.close()
    wait_for(lambda: gone(child), 30, "the catalog's service to end with its JVM")


@pytest.fixture(scope="module")
def pd_spark(rig: FlashRig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JvmSpark]:
    spark = JvmSpark(jar(), pd_only(rig))
    yield spark
    with contextlib.suppress(Exception):  # the last test kills its JVM
        spark.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_wrong_pd_address_or_store_fails_the_catalogs_first_use_naming_the_setting(
        rig: FlashRig, pd_spark: JvmSpark, tmp_path: Path) -> None:
    pd = rig.upstream.removeprefix("pd://")
    port = closed_port()
    status = rig.status.removeprefix("http://")  # TiDB's status port: HTTP/1, not PD's gRPC
    missing = tmp_path / "no-store"
    cases = [
        ("wrongpd", {"pd": f"127.0.0.1:{port}", "store": rig.store},
         [f"catalog wrongpd cannot start its theflash service: theflash serve: --upstream pd://127.0.0.1:{port}: "
          f"could not reach PD at 127.0.0.1:{port} (connection refused) within 5 s: give PD's client address "
          "HOST:PORT (2379 by default)", f"(spark.sql.catalog.wrongpd.pd=127.0.0.1:{port}, "
          f"spark.sql.catalog.wrongpd.store={rig.store}; it ran `"]),
        ("statusport", {"pd": status, "store": rig.store},
         [f"{status} answered in HTTP/1, not gRPC: an HTTP port (TiDB's status port, 10080 by default?) given as "
          "PD's address; give PD's client port (HOST:2379 by default)"]),
        ("nostore", {"pd": pd, "store": str(missing)},
         [f"catalog nostore cannot start its theflash service: theflash serve: no store at {missing}: "
          f"{missing}/manifest.db does not exist"]),
        ("nopython", {"pd": pd, "store": rig.store, "python": "/nonexistent/bin/python"},
         ["catalog nopython cannot start its theflash service: cannot run /nonexistent/bin/python "
          "(spark.sql.catalog.nopython.python): Cannot run program \"/nonexistent/bin/python\"",
          "set spark.sql.catalog.nopython.python to a Python that has pyspark_theflash installed"]),
        ("both", {"pd": pd, "store": rig.store, "server": "http://127.0.0.1:8816"},
         ["spark.sql.catalog.both.server and spark.sql.catalog.both.pd are both set: give server to read through a "
          "running `theflash serve`, or pd with store for the catalog to start its own service"]),
        ("bare", {},
         ["catalog bare has no theflash service to read through: set spark.sql.catalog.bare.pd (PD's client "
          "address, host:2379) and spark.sql.catalog.bare.store (the writer's store directory) for the catalog to "
          "start one, or spark.sql.catalog.bare.server"]),
        ("storeless", {"pd": pd},
         ["catalog storeless starts its theflash service from spark.sql.catalog.storeless.pd and a store: set "
          "spark.sql.catalog.storeless.store to the store directory the writer fills (`theflash writer run "
          "--store DIR`)"]),
    ]
    for catalog, options, says in cases:
        with pytest.raises(RemoteError) as caught:
            pd_spark.call(jvm_failure, catalog, options)
        assert caught.value.kind == "IllegalArgumentException", (catalog, caught.value.kind, caught.value.message)
        for part in says:
            assert part in caught.value.message, (catalog, caught.value.message)
    # none of them left a service behind; the session's own catalog still reads
    assert pd_spark.call(jvm_rows, [f"SELECT count(*) FROM theflash.{TABLE}"]) == [[(len(upstream_rows(rig)),)]]
    assert len(services_of(rig.store)) == 1


def test_the_catalogs_service_ends_when_its_jvm_is_killed(rig: FlashRig, pd_spark: JvmSpark) -> None:
    pd_spark.call(jvm_rows, ["SHOW NAMESPACES IN theflash"])
    (child, parent), = services_of(rig.store)
    os.kill(parent, signal.SIGKILL)  # no shutdown hook runs: the service sees its input close
    wait_for(lambda: gone(child), 30, "the catalog's service to end with its killed JVM")
