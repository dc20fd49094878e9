"""``theflash sql`` errors a user meets on day one (issue 41, item 8): through ``--server`` a
wrong table (with the nearest name), ``SELEC 1`` and ``DROP TABLE`` each end in one line that
says what to do, non-zero, no traceback and no internal SQL; ``--snapshot resolved`` reads the
store's resolved ts."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flash_rig import FlashRig
from test_engine_clickhouse_spark import TABLE, advertised_service, orders_served_by_the_writer, theflash_sql_here

pytestmark = pytest.mark.spark


def test_theflash_sql_user_errors_through_the_service_are_one_actionable_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rig = FlashRig(tmp_path / "rig")
    try:
        rig.start_twin_writer()
        ts = orders_served_by_the_writer(rig)
        url = advertised_service(rig.store)
        assert url is not None
        db, name = TABLE.split(".")
        cases = {
            f"SELECT count() FROM {db}.{name}x": f"did you mean {TABLE}?",
            "SELEC 1": "the query is not a valid SELECT: it begins with 'SELEC'",
            f"DROP TABLE {TABLE}": "'DROP' is not one",
            f"SELECT nosuchcolumn FROM {TABLE}": "ClickHouse refused the query: Code:",
        }
        for query, says in cases.items():
            code, _, err = theflash_sql_here(capsys, "--server", url, "--store", rig.store, "--ts", str(ts), query)
            assert code != 0 and says in err, (query, err)
            assert "Traceback" not in err and "None: None" not in err and "500" not in err, err
            assert "SELECT * FROM" not in err and "argMax" not in err.lower(), err  # no rewritten SQL
            assert len(err.strip().splitlines()) == 1, err
        code, _, err = theflash_sql_here(capsys, "--server", url, "--store", rig.store, "--snapshot", "resolved",
                                         f"SELECT count() AS n FROM {TABLE}")
        assert code == 0, err
        # A writer that stopped keeping up: the service's wait for the regions ends in the
        # error a read raises then, and its remedy names this command's flags, not the read
        # options (the service's own phrasing). The service's query is made to meet it at once.
        from pyspark_theflash.scan.errors import RegionWaitTimeoutError

        service = rig.writer.service.service  # type: ignore[union-attr]
        real_sql = service.sql

        def stopped_writer(*args: Any, **kwargs: Any) -> Any:
            raise RegionWaitTimeoutError(TABLE, ts, 30.0, [(2, 5, 9)])

        service.sql = stopped_writer
        try:
            code, _, err = theflash_sql_here(capsys, "--server", url, "--store", rig.store, f"SELECT 1 FROM {TABLE}")
        finally:
            service.sql = real_sql
        assert code != 0 and "did not catch up within 30s" in err, err
        assert "--snapshot resolved" in err and "--max-staleness 5s" in err, err
        assert "snapshot=resolved" not in err and "max_staleness=" not in err, err
        code, _, err = theflash_sql_here(capsys, "--server", url, "--store", rig.store, "--ts", str(ts),
                                         "--snapshot", "resolved", f"SELECT count() FROM {TABLE}")
        assert code != 0 and "give one or the other" in err, err
    finally:
        rig.close()
