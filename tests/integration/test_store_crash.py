"""Crash safety: a writer killed with SIGKILL anywhere (mid-write, mid-flush, mid-compaction)
and restarted from the store's persisted position ends with exactly the model's state, and
``theflash store verify`` finds the store clean after every kill (before the restarted writer's
recovery, at most leftover files the manifest never listed).

The writer is tests/support/store_crash_child.py in a subprocess; it prints a line at each step and the
parent kills it right after a randomly chosen line, so the kill lands inside the step that
follows (a flush after FLUSH-BEGIN, a compaction after COMPACT-BEGIN, a delta merge after
MERGE-BEGIN, GC after GC-BEGIN, the next
write after WRITE; after FLUSH-PENDING, the next write or compaction while the pipelined flush's
fsyncs and manifest edit may still run on its background thread). After each kill a writer opening (the recovery any restarted writer does) precedes
``verify``; then the child is started again and resumes from ``store.snapshot().position()``.
"""
from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from mvcc_model import DB, TABLE_NAME, MvccModel, StreamSpec, generate_stream, rows_from_batches
from engine_stores import ENGINES, open_store
from store_crash_child import CRASH_SPEC
from pyspark_theflash.cli import main as cli_main
from pyspark_theflash.store.verify import verify_store

CHILD = ROOT / "tests" / "support" / "store_crash_child.py"
KILL_POINTS = ("GC-BEGIN", "FLUSH-BEGIN", "COMPACT-BEGIN", "MERGE-BEGIN", "WRITE", "FLUSH-PENDING", "FLUSH-END")


def verify(store: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyspark_theflash", "store", "verify", str(store)],
                          capture_output=True, text=True, timeout=120)


def run_until_killed(store: Path, seed: int, steps: int, skip: int, point: str,
                     engine: str = "native") -> tuple[str, list[str]]:
    """Start the child; kill it right after the (skip+1)-th line of kind ``point``. Returns the
    line it was killed after (or 'DONE' if it finished first) and every line it printed."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(store), "--seed", str(seed), "--steps", str(steps), "--engine", engine],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
    )
    assert child.stdout is not None
    lines: list[str] = []
    killed_after = "DONE"
    for line in child.stdout:
        lines.append(line.strip())
        if line.startswith(point):
            if skip == 0:
                child.send_signal(signal.SIGKILL)
                killed_after = line.strip()
                break
            skip -= 1
    child.stdout.close()
    stderr = child.stderr.read() if child.stderr else ""
    code = child.wait(timeout=120)
    if killed_after == "DONE":
        assert code == 0, f"the writer failed on its own (exit {code}):\n{stderr}"
    else:
        assert code == -signal.SIGKILL, f"exit {code} after {killed_after}:\n{stderr}"
    return killed_after, lines


def crash_and_recover(tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: int, kills: int,
                      steps: int = CRASH_SPEC.steps, engine: str = "native") -> None:
    store_dir = tmp_path / "store"
    rng = random.Random(seed)
    history: list[str] = []
    resumed_from: list[int] = []
    safe_point = 0  # reads below the highest GC safe point a run reached are not checked
    for i in range(kills):
        if i < len(KILL_POINTS):  # every kind of kill point first, at its first occurrence
            point, skip = KILL_POINTS[i], 0
        else:
            point, skip = rng.choice(KILL_POINTS), rng.randrange(0, 3)
        killed_after, lines = run_until_killed(store_dir, seed, steps, skip, point, engine)
        history.append(killed_after)
        resumed_from.append(int(lines[0].split()[1]))
        safe_point = max([safe_point] + [int(line.split()[2]) for line in lines if line.startswith("GC-BEGIN")])
        if killed_after == "DONE":
            break
        # straight after the kill, only leftover files (never listed by the manifest) may be wrong
        leftovers = verify_store(store_dir).problems
        assert all(p.what.startswith(("temporary file", "stray file")) for p in leftovers), (
            f"after a kill after {killed_after!r}: " + "\n".join(map(str, leftovers)))
        # what a restarted writer does first: open the store for writing (recovery), then let go
        open_store(store_dir, engine).close()
        # `theflash store verify`, in this process (the same command code, without a start-up)
        code = cli_main(["store", "verify", str(store_dir)])
        out = capsys.readouterr()
        assert code == 0, f"verify after a kill after {killed_after!r} (kills so far: {history}):\n{out.out}{out.err}"
        assert "clean" in out.out
    # the last run goes to the end
    child = subprocess.run([sys.executable, str(CHILD), str(store_dir), "--seed", str(seed), "--steps", str(steps),
                            "--engine", engine],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip().splitlines()[-1].startswith("DONE")
    safe_point = max([safe_point] + [int(line.split()[2]) for line in child.stdout.splitlines()
                                     if line.startswith("GC-BEGIN")])
    assert resumed_from == sorted(resumed_from), f"the persisted position went backwards: {resumed_from}"

    stream = generate_stream(seed, StreamSpec(**{**CRASH_SPEC.__dict__, "steps": steps}))
    model = MvccModel(stream.values)
    model.apply(stream.events)
    store = open_store(store_dir, engine)
    try:
        with store.snapshot() as view:
            assert tuple(view.position()) == (0, len(stream.events))
        check_rng = random.Random(seed + 1)
        times = sorted({t for t in (stream.first_ts, stream.last_ts, *(check_rng.choice(stream.commit_ts)
                                                                        for _ in range(8))) if t >= safe_point})
        assert len(times) >= 2
        for ts in times:
            got = rows_from_batches(store.scan(f"{DB}.{TABLE_NAME}", ts, hidden=("_tidb_rowid",)))
            assert got == model.read(ts), f"after kills {history}: the store differs from the model at ts {ts}"
        # after a full compaction, doubled versions would sit side by side in one stable part,
        # where verify's sort check (strictly increasing (handle, commit_ts)) finds them
        store.compact(force=True)
        if engine == "clickhouse":
            assert_versions_not_doubled(store.engine)
    finally:
        store.close()
    result = verify(store_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(h.startswith("FLUSH-BEGIN") for h in history), history
    assert any(h.startswith("FLUSH-PENDING") for h in history), history
    assert any(h.startswith("COMPACT-BEGIN") for h in history), history
    assert any(h.startswith("MERGE-BEGIN") for h in history), history
    assert any(h.startswith("GC-BEGIN") for h in history), history


def assert_versions_not_doubled(engine: object) -> None:
    """In the ClickHouse tables a version (handle, commit ts) may sit twice until a merge
    collapses it (a flush replayed after a kill between its insert and its manifest edit), but
    never with two different values: each is the same committed row."""
    from pyspark_theflash.engine.clickhouse.tables import table_name

    directory = engine.directory  # type: ignore[attr-defined]
    for tid in engine.tables_ch.table_ids():  # type: ignore[attr-defined]
        columns = [c for c in directory.arrow(f"SELECT * FROM {table_name(tid)} LIMIT 0").column_names
                   if c not in ("_tidb_rowid", "_tidb_commit_ts", "_flush_version")]
        differing = directory.scalar(
            f"SELECT count() FROM (SELECT _tidb_rowid, _tidb_commit_ts, uniqExact(tuple({', '.join(columns)})) AS u "
            f"FROM {table_name(tid)} GROUP BY _tidb_rowid, _tidb_commit_ts HAVING u > 1)")
        assert differing == 0, f"table {tid}: {differing} versions stored twice with different values"


@pytest.mark.parametrize("engine", ENGINES)
def test_writer_killed_at_random_points_loses_and_doubles_nothing(tmp_path: Path, capsys, engine: str) -> None:
    crash_and_recover(tmp_path, capsys, seed=11, kills=len(KILL_POINTS), engine=engine)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [21, 22])
def test_writer_killed_fifty_times_loses_and_doubles_nothing(tmp_path: Path, capsys, seed: int) -> None:
    crash_and_recover(tmp_path, capsys, seed=seed, kills=50, steps=2500)
