"""Fixtures the tests of the service share (a plugin: tests/conftest.py's ``pytest_plugins``):
``service``, ``theflash serve`` over the store of the module's own ``rig`` fixture (module
scope), and ``conn``, an ADBC Flight SQL connection to it (per test). A module with a service
of its own defines its own ``service``."""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from pyspark_theflash.service import RunningService, serve


@pytest.fixture(scope="module")
def service(rig: Any) -> Iterator[RunningService]:
    running = serve(rig.store, port=0, keeper_interval_s=0.05)
    yield running
    running.close()


@pytest.fixture()
def conn(service: RunningService) -> Iterator[Any]:
    adbc_flightsql = pytest.importorskip("adbc_driver_flightsql.dbapi")
    with adbc_flightsql.connect(service.flight_location, autocommit=True) as c:
        yield c
