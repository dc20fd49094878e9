"""The demo: the whole product on the embedded default, as three processes and a Spark session.

    upstream (mini cluster + bank and orders workloads, dying transactions, region splits),
      serving PD, two TiKV stores and TiDB's status port on the wire
      └─ `theflash capture` (PD, cdcpb.ChangeData, /ddl/history) ─► binlog directory
           └─ writer (`theflash writer run`) ─► store directory
                                                  ▲
    this process: a local Spark session reading `format("theflash")` at fresh snapshot ts,
    through pd:// (TSO from PD, resolved ts for the learner read, locks over TiKV's RPCs)

It prints what a data engineer wants to see: every bank total exact while transfers run,
how far the replica trails the upstream, and two tables read at one ts with no torn
transaction between them. Exit status 0 only when every check held.
"""
from __future__ import annotations

import contextlib
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from pyspark_theflash.demo.deployment import DeploymentError, LocalDeployment, store_lag_ms

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


@dataclass
class DemoConfig:
    workdir: str | None = None
    queries: int = 8
    rate: float = 40.0
    accounts: int = 200
    initial: int = 1000  # the bank workload's opening balance per account
    query_gap_s: float = 1.5
    keep: bool = False


class DemoFailure(DeploymentError):
    """A check of the demo failed, or a step could not run; the message says which."""


def say(text: str = "") -> None:
    print(text, flush=True)


@contextlib.contextmanager
def working_directory(config: DemoConfig) -> Iterator[Path]:
    """The given directory, or a temporary one removed afterwards unless the demo failed
    (its logs are what a user needs then) or ``keep`` was asked for."""
    if config.workdir:
        path = Path(config.workdir).resolve()
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="theflash-demo-"))
    keep = config.keep
    try:
        yield path
    except BaseException:
        keep = True
        raise
    finally:
        if keep:
            say(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def run_demo(config: DemoConfig) -> int:
    with working_directory(config) as work, contextlib.ExitStack() as stack:
        say("TheFlash for Spark: demo on the embedded mini cluster")
        say(f"  working directory {work}")
        say("")
        say("[1/5] upstream: mini cluster with the bank and orders workloads "
            f"({config.rate:g} txn/s each; some transactions die after prewrite; regions split)")
        deployment = LocalDeployment(work, rate=config.rate, accounts=config.accounts)
        stack.callback(deployment.stop)
        say("[2/5] capture: PD + TiKV change-data feed + TiDB status port -> binlog; writer: binlog -> store")
        deployment.start()
        upstream_addr, store_dir = deployment.upstream_address, deployment.store
        say(f"      upstream {upstream_addr}   tidb status {deployment.status_address}   binlog {deployment.binlog_address}")
        say(f"      store {store_dir}")

        say("[3/5] Spark: starting a local session with the connector jar and its read service")
        began = time.monotonic()
        from pyspark.sql import functions as F

        from pyspark_theflash.spark.session import close_in_process_service, theflash_session
        from pyspark_theflash.upstream_client.client import connect

        # Any: mypy matches a ``**`` dict against the named keywords (jvm, ui) as well as ``**conf``
        conf: dict[str, Any] = {"spark.ui.showConsoleProgress": "false"}
        spark = theflash_session(master="local[2]", app_name="theflash-demo", **conf)
        spark.sparkContext.setLogLevel("ERROR")
        stack.callback(close_in_process_service)  # its sessions' leases, while the store is there
        stack.callback(spark.stop)
        client = connect(upstream_addr)
        stack.callback(client.close)

        def read(table: str, ts: int) -> DataFrame:
            # No upstream option: the writer recorded its address in the store.
            return spark.read.format("theflash").option("store", str(store_dir)).option("snapshot_ts", str(ts)).load(table)

        # The first read of a session opens the store in the session's read service and warms
        # the JVM's code paths; do it here so the timed queries below measure TheFlash.
        read("bank.accounts", client.get_ts()).count()
        say(f"      ready in {time.monotonic() - began:.1f}s")

        expected = config.accounts * config.initial
        say(f"[4/5] bank.accounts while transfers run: the total must be {expected} at every snapshot")
        say(f"      {'#':>2}  {'snapshot ts':>20}  {'accounts':>8}  {'total':>9}  {'check':>5}  "
            f"{'query ms':>8}  {'replica lag ms':>14}")
        latencies: list[float] = []
        lags: list[float] = []
        failures = 0
        for i in range(1, config.queries + 1):
            deployment.check_alive()
            ts = client.get_ts()
            began = time.monotonic()
            row = read("bank.accounts", ts).agg(F.count("*").alias("n"), F.sum("balance").alias("total")).first()
            assert row is not None  # an aggregate without GROUP BY has one row
            elapsed_ms = (time.monotonic() - began) * 1000
            lag = store_lag_ms(store_dir, client.get_ts())
            ok = row["n"] == config.accounts and row["total"] == expected
            failures += not ok
            latencies.append(elapsed_ms)
            lags.append(lag)
            say(f"      {i:>2}  {ts:>20}  {row['n']:>8}  {row['total']:>9}  {'ok' if ok else 'FAIL':>5}  "
                f"{elapsed_ms:>8.0f}  {lag:>14.0f}")
            time.sleep(config.query_gap_s)

        say("[5/5] shop.orders and shop.order_items at one snapshot ts")
        ts = client.get_ts()
        orders, items = read("shop.orders", ts), read("shop.order_items", ts)
        orphans = items.join(orders, items.order_id == orders.id, "left_anti").count()
        by_status = (orders.groupBy("status").agg(F.count("*").alias("orders"), F.sum("total").alias("revenue"))
                     .orderBy("status").collect())
        n_items = items.count()
        say(f"      ts {ts}: {sum(r['orders'] for r in by_status)} orders, {n_items} items, "
            f"{orphans} items without their order ({'ok' if orphans == 0 else 'FAIL'})")
        for r in by_status:
            say(f"        {str(r['status']):>10}  {r['orders']:>6} orders  revenue {r['revenue']}")
        failures += orphans != 0

        say("")
        say("Report")
        say(f"  bank totals exact      {config.queries - min(failures, config.queries)}/{config.queries}")
        say(f"  query latency          median {statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms "
            "(includes the learner read: waiting for every region to reach the snapshot)")
        finite = [x for x in lags if x == x]
        if finite:
            say(f"  replica lag            median {statistics.median(finite):.0f} ms, max {max(finite):.0f} ms "
                "(upstream now minus the oldest region's resolved ts in the store)")
        say(f"  cross-table snapshot   {'consistent' if orphans == 0 else 'TORN'}")
        if config.workdir or config.keep:
            say(f"  logs                   {work / 'upstream.log'}, {work / 'capture.log'}, {work / 'writer.log'}")
        if failures:
            raise DemoFailure(f"{failures} checks failed; see the logs above")
        say("DEMO PASSED")
        return 0
