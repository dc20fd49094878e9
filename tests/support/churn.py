"""A small load for the change-stream tests: inserts, updates and deletes from a thread."""
from __future__ import annotations

import contextlib
import random
import threading
from pathlib import Path
from typing import Any, Iterator


class Churn:
    """Inserts, updates and deletes on a table (id BIGINT primary key, name, qty) from a thread, ~``rate`` transactions a second."""

    def __init__(self, rig: Any, table: str, rate: float = 40.0, seed: int = 5) -> None:
        self.rig, self.table, self.rate, self.rng = rig, table, rate, random.Random(seed)
        self.live: set[int] = {int(r["id"]) for r in rig.cluster.scan_table(table)}  # the rows there now
        self.next_id = max(self.live, default=0) + 1000
        self.commits = 0
        self.error: BaseException | None = None
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _step(self) -> None:
        c, rng = self.rig.cluster, self.rng
        op = rng.random()
        with c.txn() as t:
            if op < 0.3 or len(self.live) < 10:
                t.insert(self.table, {"id": self.next_id, "name": f"n{self.next_id}", "qty": rng.randint(0, 99)})
                self.live.add(self.next_id)
                self.next_id += 1
            elif op < 0.8:
                for i in rng.sample(sorted(self.live), 2):
                    t.update(self.table, {"id": i, "qty": rng.randint(0, 999)})
            else:
                victim = rng.choice(sorted(self.live))
                t.delete(self.table, victim)
                self.live.discard(victim)
        self.commits += 1

    def _run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self._step()
                self.stop_event.wait(1.0 / self.rate)
        except BaseException as exc:  # raised again by __exit__
            self.error = exc

    def __enter__(self) -> "Churn":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()
        if self.error is not None:
            raise self.error


def create_churn_table(cluster: Any, table: str, rows: int = 50) -> None:
    """The table Churn loads, in two regions, with its first ``rows`` rows."""
    from pyspark_theflash.upstream.tidb import make_column, record_key

    info = cluster.create_table(table, [make_column("id", "BIGINT", not_null=True), make_column("name", "VARCHAR(16)"),
                                        make_column("qty", "INT")], primary_key=["id"])
    cluster.split_at(record_key(info, rows // 2))
    with cluster.txn() as t:
        for i in range(rows):
            t.insert(table, {"id": i, "name": f"n{i}", "qty": i})


@contextlib.contextmanager
def churn_rig(root: Path, table: str, rows: int = 50) -> Iterator[Any]:
    """A FlashRig (through capture) whose store holds ``table`` (create_churn_table) replicated,
    its writer running; closed on exit."""
    from flash_rig import FlashRig

    rig = FlashRig(root)
    try:
        create_churn_table(rig.cluster, table, rows)
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated(table)
        yield rig
    finally:
        rig.close()
