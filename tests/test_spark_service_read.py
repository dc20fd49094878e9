"""The Python source with option ``server``: its reads are the service's read sessions (the
service holds their leases, executors read streams over HTTP), and they answer what a read of
the store's files answers at the same ts. (The cluster test, tests/test_spark_cluster.py, runs
the same with executors that cannot see the store.)"""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Iterator

import pytest

from flash_rig import FlashRig
from pyspark_theflash.service import serve
from test_spark_read import make_table

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashRig]:
    r = FlashRig(tmp_path_factory.mktemp("flash"))
    r.start_writer(interval_s=0.05)
    yield r
    r.close()


@pytest.fixture(scope="module")
def service(rig: FlashRig) -> Iterator[Any]:
    running = serve(any_store=True, port=0, token=secrets.token_urlsafe(16))
    yield running
    running.close()


def rows(df: Any) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in df.collect())


def test_a_read_through_the_service_equals_the_files_read_at_the_same_ts(spark: Any, rig: FlashRig,
                                                                         service: Any) -> None:
    make_table(rig, "svc.accounts", 40, regions=4)
    remote = (spark.read.format("theflash").option("server", service.http_url)
              .option("token", service.service.auth.token).option("store", rig.store))
    got = remote.load("svc.accounts")
    pinned = got.select("id", "balance", "owner")
    first = rows(pinned)
    assert [r[0] for r in first] == list(range(40)) and sum(r[1] for r in first) == sum(100 + i for i in range(40))
    # at one ts, the service's streams and the store's files give the same rows
    from pyspark_theflash.spark import service_read

    streams = service_read.open_session(service.http_url, {"store": rig.store, "table": "svc.accounts",
                                                           "token": service.service.auth.token}, ["id", "balance", "owner"])
    at = streams[0].ts
    by_service = rows(remote.option("snapshot_ts", str(at)).load("svc.accounts"))
    by_files = rows(spark.read.format("theflash").options(**rig.options(snapshot_ts=at)).load("svc.accounts"))
    assert by_service == by_files


def test_the_service_holds_the_lease_and_the_read_needs_the_token(spark: Any, rig: FlashRig, service: Any) -> None:
    make_table(rig, "svc.tokens", 10)
    from pyspark_theflash.spark.service_read import ServiceReadError

    before = len(service.service.sessions.sessions())
    df = spark.read.format("theflash").option("server", service.http_url).option("store", rig.store)
    with pytest.raises(Exception, match="401"):
        df.load("svc.tokens").collect()
    ok = df.option("token", service.service.auth.token).load("svc.tokens")
    assert len(ok.collect()) == 10
    assert len(service.service.sessions.sessions()) > before  # the session (and its lease) is the service's
    assert ServiceReadError  # the error type callers catch


def test_options_the_service_decides_are_refused_with_server(spark: Any, rig: FlashRig, service: Any) -> None:
    df = (spark.read.format("theflash").options(**rig.options()).option("server", service.http_url)
          .option("token", service.service.auth.token))
    with pytest.raises(Exception, match="upstream"):
        df.load("svc.accounts").collect()


def test_a_read_without_the_store_on_the_planner_takes_the_schema_from_the_service(
        spark: Any, rig: FlashRig, service: Any, tmp_path: Path) -> None:
    make_table(rig, "svc.schema", 3)
    one = serve(rig.store, port=0, token="t0ken")
    try:
        got = spark.read.format("theflash").option("server", one.http_url).option("token", "t0ken").load("svc.schema")
        assert [f.name for f in got.schema.fields] == ["id", "balance", "owner"]
        assert rows(got.select("id")) == [(0,), (1,), (2,)]
    finally:
        one.close()
