"""`theflash store verify --online`: a store whose writer runs is checked clean — the writer's
in-flight files (temporary files of a live process, parts renamed in before their edit commits,
parts removed while the check ran) are passed over — while real damage and old strays are still
reported."""
from __future__ import annotations

import contextlib
import io
import json
import os
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from flash_rig import FlashRig, wait_for
from pyspark_theflash.cli import main as theflash
from pyspark_theflash.store import manifest as mf
from pyspark_theflash.upstream.tidb import make_column

TABLE = "bank.accounts"
ACCOUNTS = 200


def live_parts(store: str) -> list[str]:
    conn = mf.connect(store, create=False)
    try:
        return [r[0] for r in conn.execute("SELECT file FROM parts WHERE removed_version IS NULL ORDER BY part_id")]
    finally:
        conn.close()


def verify(*argv: str) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = theflash(["store", "verify", "--json", *argv])
    return code, json.loads(out.getvalue())


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlashRig]:
    """A store whose writer runs (fast flushes, background compaction, delta merges) while
    updates flow from a thread until the module ends."""
    rig = FlashRig(tmp_path_factory.mktemp("online"))
    stop = threading.Event()
    updater = None
    try:
        rig.cluster.create_table(TABLE, [make_column("id", "BIGINT", not_null=True),
                                         make_column("balance", "BIGINT")], primary_key=["id"])
        with rig.cluster.txn() as t:
            for i in range(ACCOUNTS):
                t.insert(TABLE, {"id": i, "balance": 0})
        rig.start_writer(interval_s=0.02)
        rig.wait_replicated(TABLE)
        wait_for(lambda: live_parts(rig.store), 30, "the writer's first flush")

        def update() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                with rig.cluster.txn() as t:
                    for i in range(n % 7, ACCOUNTS, 13):
                        t.update(TABLE, {"id": i, "balance": n})
                stop.wait(0.005)

        updater = threading.Thread(target=update, name="updates", daemon=True)
        updater.start()
        yield rig
    finally:
        stop.set()
        if updater is not None:
            updater.join(30)
        rig.close()


def test_a_store_whose_writer_runs_verifies_clean_online(live: FlashRig) -> None:
    # checks until the store has changed under them at least twice (capture hands the writer
    # its rows as the DDL frontier moves, a few times a second, not as each commit lands)
    deadline = time.monotonic() + 30
    versions = []
    while time.monotonic() < deadline and (len(versions) < 5 or len(set(versions)) < 3):
        code, report = verify(live.store, "--online")
        assert code == 0, report["problems"]
        assert report["parts_checked"] > 0 and report["checksums_checked"] == report["parts_checked"]
        versions.append(report["manifest_version"])
    assert len(versions) >= 5 and len(set(versions)) >= 3, versions  # the store changed under the checks
    assert live.writer_running


def test_online_passes_over_a_live_process_temporary_file_but_not_an_old_stray(live: FlashRig) -> None:
    root = Path(live.store)
    victim = live_parts(live.store)[0]
    part_dir = (root / victim).parent
    in_flight = part_dir / f"delta-0000000000000000.arrow.tmp-{os.getpid()}"  # this process lives
    in_flight.write_bytes(b"being written")
    stray = part_dir / "stable-00000000deadbeef.parquet"
    stray.write_bytes(b"PAR1 left behind")
    hour_ago = time.time() - 3600
    os.utime(stray, (hour_ago, hour_ago))
    try:
        code, report = verify(live.store, "--online")
        problems = {p["file"]: p["what"] for p in report["problems"]}
        assert code == 1 and in_flight.relative_to(root).as_posix() not in problems
        assert "stray file" in problems[stray.relative_to(root).as_posix()]
    finally:
        in_flight.unlink()
        stray.unlink()
    wait_for(lambda: verify(live.store, "--online")[0] == 0, 30, "verify --online to be clean again")


def test_verify_without_online_sees_the_running_writer_and_says_to_use_online(live: FlashRig) -> None:
    """Offline, the writer's in-flight files would be listed as problems (exit 1, as if damaged):
    verify sees the write latch held by a live writer and says what to run instead."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = theflash(["store", "verify", live.store])
    text = err.getvalue()
    assert code == 2 and len(text.strip().splitlines()) == 1, text
    assert text.startswith(f"theflash store: store {live.store} has a running writer, "), text
    assert f"theflash store verify --online {live.store}" in text and "Traceback" not in text, text
