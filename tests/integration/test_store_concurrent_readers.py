"""Readers in other processes see only whole batches while the writer applies, compacts and
collects garbage, on either engine.

A bank in the embedded mini cluster (the upstream): accounts whose balances only whole
transactions keep summing to the same total: transfers (2PC across regions, 1PC, async
commit), "moves" that delete an account and insert its balance under a new handle in one
transaction, and now and then a region split. The cluster's log reaches the writer in this
process through its event sink; after every few transactions the writer applies everything the
cluster logged since the last batch as one batch (whole transactions only), flushes, and
compacts (or GCs up to a fresh ts) every few batches.

Reader processes (spawned) read the table over and over while it runs; every snapshot must
hold each account once and the bank's total (and no version newer than its ts), and after the
last batch each reader's read returns exactly the bank's balances.

* ``native``: readers open the store read-only (``Store.open(readonly=True)``) and scan at the
  latest ts: the manifest and part files, read beside the writer.
* ``clickhouse``: the store's ClickHouse directory belongs to the writer's process (chdb runs
  one data directory per process), so readers read through the TheFlash API service that
  process serves (``serve(store)``, as ``writer run --serve`` does): a read session at a
  fresh ts per read (snapshot ts, lease, learner read against the mini cluster, lock
  resolution), over Arrow Flight and over HTTP.
"""
from __future__ import annotations

import json
import multiprocessing
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from engine_stores import ENGINES, open_store
from polling import wait_for
from pyspark_theflash.binlog.position import Position

ACCOUNTS = 24
OPENING_BALANCE = 1000
TOTAL = ACCOUNTS * OPENING_BALANCE
LATEST = (1 << 63) - 1
QUALIFIED = "bank.accounts"
# the columns every read returns: the balance, the handle (one row per account) and the commit
# ts of the version read (the snapshot's newest commit shows which state a reader saw)
READ_COLUMNS = ["balance", "_tidb_rowid", "_tidb_commit_ts"]


class ClusterLog:
    """The mini cluster's event sink: what it logged, taken by the writer batch by batch."""

    def __init__(self) -> None:
        self._events: list[Any] = []
        self._mu = threading.Lock()

    def append(self, events: list[Any]) -> None:
        with self._mu:
            self._events.extend(events)

    def take(self) -> list[Any]:
        with self._mu:
            events, self._events = self._events, []
        return events


class Bank:
    """The workload as mini-cluster transactions; ``balances`` is what every whole batch leaves
    (handle -> balance)."""

    def __init__(self, cluster: Any, seed: int) -> None:
        from pyspark_theflash.upstream.tidb import make_column

        self.cluster = cluster
        self.rng = random.Random(seed)
        self.table = cluster.create_table(QUALIFIED, [make_column("id", "BIGINT", not_null=True),
                                                      make_column("balance", "BIGINT", not_null=True)],
                                          primary_key=["id"])
        self.balances = {h: OPENING_BALANCE for h in range(ACCOUNTS)}
        self.next_handle = ACCOUNTS
        with cluster.txn(one_pc=False) as t:
            for h, balance in sorted(self.balances.items()):
                t.insert(QUALIFIED, {"id": h, "balance": balance})

    def transfer(self) -> None:
        a, b = self.rng.sample(sorted(self.balances), 2)
        amount = self.rng.randrange(0, self.balances[a] + 1)
        roll = self.rng.random()
        # 1PC when both accounts share a region (else 2PC), async commit, or plain 2PC
        with self.cluster.txn(one_pc=roll < 0.4, async_commit=0.4 <= roll < 0.7) as t:
            t.update(QUALIFIED, {"id": a, "balance": self.balances[a] - amount})
            t.update(QUALIFIED, {"id": b, "balance": self.balances[b] + amount})
        self.balances[a] -= amount
        self.balances[b] += amount

    def move(self) -> None:
        """Close an account and open a new one with its balance, in one transaction."""
        old = self.rng.choice(sorted(self.balances))
        new = self.next_handle
        with self.cluster.txn(one_pc=False) as t:
            t.delete(QUALIFIED, old)
            t.insert(QUALIFIED, {"id": new, "balance": self.balances[old]})
        self.next_handle += 1
        self.balances[new] = self.balances.pop(old)

    def split(self) -> None:
        from pyspark_theflash.upstream.tidb import record_key

        self.cluster.split_at(record_key(self.table, self.rng.randrange(1, self.next_handle + 8)))

    def step(self) -> None:
        """One to four transfers, moves or splits."""
        for _ in range(self.rng.randrange(1, 5)):
            roll = self.rng.random()
            (self.move if roll < 0.15 else self.split if roll < 0.25 else self.transfer)()


class ReadRefused(Exception):
    """The service refused a read session (``code``): the reader opens a new one."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class SnapshotReader:
    """How a reader process reads the bank. ``how``: ``store`` (``where`` is the store
    directory: open it read-only, scan at the latest ts), ``flight`` or ``http`` (``where`` is
    the service's address: one read session at a fresh ts per read)."""

    def __init__(self, how: str, where: str) -> None:
        self.how = how
        if how == "store":
            from pyspark_theflash.store import Store

            self.store = Store.open(where, readonly=True)
        else:
            from service_client import FlightReader, HttpReader

            self.client = FlightReader(where) if how == "flight" else HttpReader(where)

    def read(self, snapshot_ts: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """One snapshot's rows (``READ_COLUMNS``) and its ts (None: the latest). A session
        reads at ``snapshot_ts`` when given, else at a fresh ts; a store scan at the latest."""
        if self.how == "store":
            batches = self.store.scan(QUALIFIED, LATEST, columns=READ_COLUMNS[:1], hidden=tuple(READ_COLUMNS[1:]))
            return [r for b in batches for r in b.to_pylist()], None
        request: dict[str, Any] = {"table": QUALIFIED, "columns": READ_COLUMNS}
        if snapshot_ts is not None:
            request["snapshot_ts"] = snapshot_ts
        if self.how == "flight":
            import pyarrow.flight as flight

            try:
                table, session = self.client.read(request)
            except flight.FlightServerError as exc:  # its message starts with the error code
                code, _, message = str(exc).partition(": ")
                raise ReadRefused(code, message) from exc
        else:
            status, session = self.client.json("POST", "/v1/read-sessions", request)
            if status != 201:
                raise ReadRefused(session["error"]["code"], session["error"]["message"])
            table, _ = self.client.read_session(session)
        return table.to_pylist(), int(session["ts"])

    def close(self) -> None:
        if self.how == "store":
            self.store.close()
        elif self.how == "flight":
            self.client.close()


def snapshot_faults(rows: list[dict[str, Any]], ts: int | None) -> list[str]:
    """What is wrong with one snapshot of the bank: accounts missing or doubled, money made or
    lost, versions newer than the snapshot's ts."""
    handles = [r["_tidb_rowid"] for r in rows]
    total = sum(r["balance"] for r in rows)
    faults = []
    if len(rows) != ACCOUNTS or len(set(handles)) != len(handles):
        faults.append(f"{len(rows)} rows of {len(set(handles))} accounts, not {ACCOUNTS}")
    if total != TOTAL:
        faults.append(f"total {total}, not {TOTAL}")
    if ts is not None and rows and max(r["_tidb_commit_ts"] for r in rows) > ts:
        faults.append(f"a version committed after the snapshot's ts {ts}")
    return faults


def reader_main(how: str, where: str, out: str, stop: str) -> None:
    """Read until the stop file appears, then once more (the final read, at the ts the stop
    file names when it names one); write what was seen to ``out``: reads, faults, each read's
    newest commit ts, refusals, the final balances."""
    seen: dict[str, Any] = {"reads": 0, "bad": [], "newest": [], "refused": [], "final": None, "error": None}
    try:
        reader = SnapshotReader(how, where)
        try:
            while True:
                stopping = Path(stop).exists()
                final_ts = int(Path(stop).read_text() or 0) if stopping else 0
                try:
                    rows, ts = reader.read(final_ts or None)
                except ReadRefused as exc:
                    # a GC moved the safe point past the fresh ts before the session's lease
                    # was taken: the service says to open a new session, and so do we
                    if exc.code != "snapshot_ts_out_of_range" or len(seen["refused"]) >= 50:
                        raise
                    seen["refused"].append(str(exc)[:200])
                    continue
                seen["reads"] += 1
                seen["newest"].append(max((r["_tidb_commit_ts"] for r in rows), default=0))
                faults = snapshot_faults(rows, ts)
                if faults:
                    seen["bad"].append({"faults": faults, "ts": ts})
                if len(seen["bad"]) > 5:
                    break
                if stopping:
                    seen["final"] = {str(r["_tidb_rowid"]): r["balance"] for r in rows}
                    break
                Path(out + ".started").touch()
        finally:
            reader.close()
    except BaseException as exc:
        seen["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        raise
    finally:
        Path(out).write_text(json.dumps(seen))


def run_bank(tmp_path: Path, engine: str, batches: int, readers: int, seed: int) -> None:
    from pyspark_theflash.upstream.cluster import MiniCluster

    log = ClusterLog()
    # resolved ts, GC and checkpoints only when the test asks: every batch ends on a
    # transaction boundary
    cluster = MiniCluster(tmp_path / "cluster", sink=log, resolved_ts_interval=0, gc_run_interval_s=None,
                          checkpoint_interval_s=None)
    service = None
    writer = None
    procs: list[Any] = []
    stop = tmp_path / "stop"
    try:
        upstream = cluster.serve(binlog_port=None)["upstream"]
        bank = Bank(cluster, seed)
        root = tmp_path / "store"
        writer = open_store(root, engine)
        writer.set_upstream(upstream)  # read sessions take their ts, read index, lock status there
        writer.write(log.take(), Position(0, 1))
        writer.flush()
        if engine == "native":
            where = [("store", str(root))] * readers
        else:
            from pyspark_theflash.service import serve

            service = serve(str(root), port=0, upstream=upstream)  # as `writer run --serve` does
            where = [("flight", service.flight_location) if i % 2 == 0 else ("http", service.http_url)
                     for i in range(readers)]
        outs = [tmp_path / f"reader{i}.json" for i in range(readers)]
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=reader_main, args=(how, address, str(o), str(stop)))
                 for (how, address), o in zip(where, outs)]
        for p in procs:
            p.start()

        def started() -> bool:
            dead = [(p.exitcode, read_seen(o).get("error")) for p, o in zip(procs, outs) if p.exitcode is not None]
            assert not dead, f"a reader process exited before its first read: {dead}"
            return all(Path(str(o) + ".started").exists() for o in outs)

        wait_for(started, 60, "the readers' first reads")
        for n in range(batches):
            bank.step()
            cluster.advance_resolved_ts()
            writer.write(log.take(), Position(0, n + 2))
            writer.flush()
            if n % 10 == 9:
                writer.gc(cluster.get_ts())  # moves the safe point past every commit, and compacts
            elif n % 5 == 4:
                writer.compact(force=True)
        # The bank stops; the upstream's resolved ts still comes, in one more batch, so the
        # readers' final read (a session at final_ts) finds every region caught up without
        # the writer's help: this test's writer answers no flush requests.
        final_ts = cluster.get_ts()
        cluster.advance_resolved_ts()
        writer.write(log.take(), Position(0, batches + 2))
        writer.flush()
        # the model is the upstream's truth too
        assert {r["id"]: r["balance"] for r in cluster.scan_table(QUALIFIED, final_ts)} == bank.balances
        assert sum(bank.balances.values()) == TOTAL
        stop.with_suffix(".tmp").write_text(str(final_ts))
        stop.with_suffix(".tmp").replace(stop)
    finally:
        stop.touch()
        for p in procs:
            p.join(timeout=120)
            if p.is_alive():  # hung: the exit code check below reports it
                p.kill()
                p.join(10)
        try:
            if service is not None:
                service.close()
            if writer is not None:
                writer.close()
        finally:
            cluster.close()
    assert [p.exitcode for p in procs] == [0] * readers, [read_seen(o).get("error") for o in outs]
    expected = {str(h): b for h, b in bank.balances.items()}
    for (how, _), out in zip(where, outs):
        seen = read_seen(out)
        assert seen["bad"] == [], f"a {how} reader saw a partial batch: {seen['bad']}"
        assert seen["reads"] >= 2
        # the readers really ran while the writer worked: they saw several states
        assert len(set(seen["newest"])) > 1, seen["newest"][:10]
        assert max(seen["newest"]) < final_ts
        assert seen["final"] == expected, f"a {how} reader's read after the last batch"


def read_seen(out: Path) -> dict[str, Any]:
    return json.loads(out.read_text()) if out.exists() else {}


@pytest.mark.parametrize("engine", ENGINES)
def test_readers_in_other_processes_see_only_whole_batches(tmp_path: Path, engine: str) -> None:
    run_bank(tmp_path, engine, batches=60, readers=2, seed=3)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_readers_see_only_whole_batches_over_a_long_run(tmp_path: Path, engine: str) -> None:
    run_bank(tmp_path, engine, batches=600, readers=3, seed=4)
