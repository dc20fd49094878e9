"""``query.stop()`` on a theflash stream read through the connector jar ends the query quietly
even when it lands while the driver waits for the service (planning a micro-batch's read
session): the query stops without an exception and the driver's log has no ERROR line, where
it used to end with ``ERROR MicroBatchExecution ... IllegalStateException: interrupted while
calling the theflash service`` and forty stack lines."""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from churn import Churn, churn_rig
from flash_rig import FlashRig, wait_for
from jvm_spark import JvmSpark

pytestmark = pytest.mark.spark

TABLE = "jc.items"
WAIT_S = 5.0


class SessionsThatWait:
    """The store's engine, except that once ``waiting`` is set each read session it opens first
    waits ``WAIT_S`` (as a session at a fresh ts waits for the store to reach it): a window in
    which the driver is inside its call to the service, for ``query.stop()`` to land in."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.waiting = threading.Event()
        self.entered = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def open_read_session(self, *args: Any, **kwargs: Any) -> Any:
        if self.waiting.is_set():
            self.entered.set()
            time.sleep(WAIT_S)
        return self._engine.open_read_session(*args, **kwargs)


# -- run in the Spark worker with the jar (tests/support/jvm_spark.py), beside a service of its own ----
def jvm_stop_during_a_call(spark: Any, store: str, upstream: str, log: str) -> dict[str, Any]:
    from pyspark_theflash.engine import open_engine
    from pyspark_theflash.scan.engine_sessions import PlannedSessions
    from pyspark_theflash.service import serve

    engine = SessionsThatWait(open_engine(store, sessions=PlannedSessions(upstream=upstream)))
    try:
        with serve(engine=engine, port=0) as running:
            df = (spark.readStream.format("theflash").option("server", running.http_url)
                  .option("starting_ts", "latest").load(TABLE))
            query = (df.writeStream.format("memory").queryName("stopped_mid_call")
                     .trigger(processingTime="50 milliseconds").start())
            deadline = time.monotonic() + 120
            while not [p for p in query.recentProgress if p["numInputRows"]] and time.monotonic() < deadline:
                time.sleep(0.1)
            batches = len([p for p in query.recentProgress if p["numInputRows"]])
            before = Path(log).stat().st_size
            engine.waiting.set()
            entered = engine.entered.wait(60)  # the driver waits in POST /v1/read-sessions now
            query.stop()
            with open(log, errors="replace") as f:
                f.seek(before)
                logged = f.read()
            return {"batches": batches, "entered": entered, "exception": query.exception() and str(query.exception()),
                    "status": query.status["message"], "active": query.isActive, "logged": logged}
    finally:
        engine.close()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashRig]:
    with churn_rig(tmp_path_factory.mktemp("jvm-stream-stop"), TABLE) as rig:  # through capture, over PD's wire
        yield rig


def test_stopping_a_stream_while_the_driver_calls_the_service_ends_it_quietly(rig: FlashRig, tmp_path: Path) -> None:
    from pyspark_theflash.spark.jar import jar_path

    log = tmp_path / "driver.log"
    log.touch()
    spark = JvmSpark(str(jar_path()), log=str(log))
    try:
        with Churn(rig, TABLE, rate=20.0, seed=17) as churn:
            wait_for(lambda: churn.commits > 0, 30, "the workload to commit")
            got = spark.call(jvm_stop_during_a_call, rig.store, rig.upstream, str(log))
    finally:
        spark.close()
    assert got["batches"] > 0 and got["entered"], got  # the stop landed inside a call to the service
    assert got["exception"] is None and got["status"] == "Stopped" and not got["active"], got
    errors = [line for line in got["logged"].splitlines() if re.search(r"\bERROR\b", line)]
    assert not errors, "\n".join(errors[:5])
    assert "interrupted while calling the theflash service" not in got["logged"], got["logged"][-3000:]
