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
            "SELEC 1": "theflash sql runs read-only queries",
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
        code, _, err = theflash_sql_here(capsys, "--server", url, "--store", rig.store, "--ts", str(ts),
                                         "--snapshot", "resolved", f"SELECT count() FROM {TABLE}")
        assert code != 0 and "give one or the other" in err, err
    finally:
        rig.close()
