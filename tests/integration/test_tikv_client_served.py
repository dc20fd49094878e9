"""TiKV's own client (PyPI ``tikv-client``) against ``theflash upstream --serve`` run as a user
runs it, in a process of its own with its bank workload writing and its regions splitting: the
client's optimistic and pessimistic transactions and its raw calls are all served (no call
answered UNIMPLEMENTED), the conflicts they meet are retried by the client until they commit,
and the client's own accounts keep their total at every ts it reads.

tikv-client ships one wheel, cp311 manylinux x86_64, so these tests run only there."""
from __future__ import annotations

import asyncio
import os
import platform
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

if not (sys.platform == "linux" and platform.machine() == "x86_64" and sys.version_info[:2] == (3, 11)):
    pytest.skip("tikv-client has a wheel for CPython 3.11 on Linux x86_64 only", allow_module_level=True)
tikv_client = pytest.importorskip("tikv_client")
asynchronous = pytest.importorskip("tikv_client.asynchronous")

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = 10
START_BALANCE = 100
# the client's own keys: TxnKV keys outside every table's ('t'...) and TiDB's meta ('m') prefix
PREFIX = b"client-bank/"
CONFLICT = re.compile(r"WriteConflict|locked: Some|[Rr]esolve ?[Ll]ock")
REFUSED = re.compile(r"UNIMPLEMENTED|Unimplemented|Method not found", re.IGNORECASE)


def key(account: int) -> bytes:
    return PREFIX + b"%04d" % account


class Served:
    """``theflash upstream --serve 0 --stores 2 --workload bank`` as a subprocess; its PD address."""

    def __init__(self, data: Path, *extra: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.stderr = data.parent / "upstream.stderr"  # a file: a full pipe would stall the cluster
        with self.stderr.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pyspark_theflash", "upstream", "--data", str(data), "--serve", "0",
                 "--stores", "2", "--workload", "bank", "--accounts", "40", "--rate", "40",
                 "--region-split-keys", "8", *extra],
                stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=ROOT)
        self.lines: list[str] = []
        serving = self._until(lambda line: "serving upstream" in line, 60)
        self.pd = serving.split(" pd pd://")[1].split()[0]
        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()

    def _until(self, match, timeout_s: float) -> str:
        assert self.proc.stdout is not None
        box: list[str] = []

        def read() -> None:
            for line in self.proc.stdout:  # type: ignore[union-attr]
                self.lines.append(line)
                if match(line):
                    box.append(line)
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout_s)
        if not box:
            self.proc.kill()
            raise AssertionError(f"the mini cluster printed no addresses in {timeout_s}s: "
                                 f"{''.join(self.lines)} {self.stderr.read_text()}")
        return box[0]

    def _read_rest(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.append(line)

    def stop(self) -> tuple[int, str]:
        """SIGINT; the exit code and stderr once it exited and its stdout is all in ``lines``."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._drain.join(10)  # the only reader of stdout: it ends at the pipe's end
        return self.proc.returncode, self.stderr.read_text()


@pytest.fixture
def served(tmp_path: Path):
    cluster = Served(tmp_path / "up")
    try:
        yield cluster
    finally:
        if cluster.proc.poll() is None:
            cluster.stop()


def _balance(value: bytes | None) -> int:
    assert value is not None
    return int(value)


async def _transfers(pd: list[str], errors: list[str], workers: int, rounds: int, pessimistic: bool,
                     seed: int, deadline: float) -> tuple[int, int]:
    """``workers`` coroutines each making ``rounds`` transfers between two of the client's
    accounts; a failed attempt (a write conflict, a lock) is rolled back and retried, at most 50
    times and until ``deadline``. Every failure's message goes to ``errors``."""
    client = await asynchronous.TransactionClient.connect(pd)
    done = retried = 0

    async def worker(w: int) -> None:
        nonlocal done, retried
        rng = random.Random(seed * 100 + w)
        for _ in range(rounds):
            a, b = rng.sample(range(ACCOUNTS), 2)
            for _attempt in range(50):
                assert time.monotonic() < deadline, "the transfers ran out of time"
                txn = await client.begin(pessimistic)
                try:
                    read = txn.get_for_update if pessimistic else txn.get
                    ba, bb = _balance(await read(key(a))), _balance(await read(key(b)))
                    amount = rng.randint(0, 10)
                    await txn.put(key(a), b"%d" % (ba - amount))
                    await txn.put(key(b), b"%d" % (bb + amount))
                    await txn.commit()
                    done += 1
                    break
                except Exception as exc:  # a conflict or a lock: retried with a new start_ts
                    errors.append(f"{type(exc).__name__}: {exc}")
                    retried += 1
                    try:
                        await txn.rollback()
                    except Exception as exc2:
                        errors.append(f"rollback {type(exc2).__name__}: {exc2}")
            else:
                raise AssertionError(f"transfer {a} -> {b} did not commit in 50 attempts: {errors[-3:]}")

    await asyncio.gather(*(worker(w) for w in range(workers)))
    return done, retried


def _raw_round(raw, n: int) -> None:
    """Raw puts, gets, scans and deletes of the client's raw keys, each checked."""
    keys = {b"raw/%03d/%02d" % (n, i): b"v%d-%d" % (n, i) for i in range(8)}
    raw.batch_put(keys)
    raw.put(b"raw/%03d/single" % n, b"one")
    assert raw.get(b"raw/%03d/single" % n) == b"one"
    assert sorted(raw.batch_get(list(keys))) == sorted(keys.items())
    lo, hi = b"raw/%03d/" % n, b"raw/%03d0" % n
    assert raw.scan(lo, hi, 100) == sorted([*keys.items(), (b"raw/%03d/single" % n, b"one")])
    raw.delete(b"raw/%03d/00" % n)
    assert raw.get(b"raw/%03d/00" % n) is None
    raw.delete_range(lo, hi)
    assert raw.scan(lo, hi, 100) == []


def test_the_client_runs_transactions_and_raw_calls_against_theflash_upstream_serve_while_its_workload_runs(
    served: Served,
) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pd = [served.pd]
    deadline = time.monotonic() + 45
    sync = tikv_client.TransactionClient.connect(pd)
    seed = sync.begin()
    for i in range(ACCOUNTS):
        seed.put(key(i), b"%d" % START_BALANCE)
    seed.commit()
    raw = tikv_client.RawClient.connect(pd)
    errors: list[str] = []
    totals: list[tuple[int, int]] = []
    committed = conflicts = 0
    for n, pessimistic in enumerate([False, True, False, True]):
        # optimistic and pessimistic transfers at once on the same accounts: they conflict
        (d1, r1), (d2, r2) = loop.run_until_complete(asyncio.gather(
            _transfers(pd, errors, 3, 5, pessimistic, n, deadline),
            _transfers(pd, errors, 3, 5, not pessimistic, n + 10, deadline)))
        committed += d1 + d2
        conflicts += r1 + r2
        _raw_round(raw, n)
        ts = sync.current_timestamp()
        pairs = sync.snapshot(ts, False).scan(PREFIX, PREFIX + b"\xff", 1000)
        assert [k for k, _ in pairs] == [key(i) for i in range(ACCOUNTS)], f"at ts {ts}"
        totals.append((ts, sum(int(v) for _, v in pairs)))
    assert committed == 4 * 2 * 3 * 5
    assert totals == [(ts, ACCOUNTS * START_BALANCE) for ts, _ in totals]
    refused = [e for e in errors if REFUSED.search(e)]
    assert not refused, refused
    # the transfers met conflicts, and every failed attempt was one (a write conflict, or a lock
    # of another transaction still alive, which the client does not wait out): nothing else
    # failed, and each was retried to a commit
    assert conflicts > 0
    assert all(CONFLICT.search(e) for e in errors), [e for e in errors if not CONFLICT.search(e)][:3]
    # the mini cluster's own workload ran beside the client the whole time, and stops cleanly
    assert served.proc.poll() is None, served.stderr.read_text()
    code, err = served.stop()
    out = "".join(served.lines)
    assert code == 0, err
    assert "stopped cleanly" in out
    workload = re.search(r"committed=(\d+)", out)
    assert workload and int(workload.group(1)) > 0, out
    print(f"client: {committed} transfers, {conflicts} attempts retried after a conflict; "
          f"workload: {workload.group(0)}")
