"""The replica against its source, row for row: every workload runs at once on the mini
cluster (orders with every kind of schema change, the ``schema`` fault; bank transfers with
large transactions; rows of every TiDB type), in async commit as TiDB's default, with splits
and merges, dying and rolled-back transactions, while the writer job applies its binlog; then the store is read through
Spark at random timestamps (with the schema in force at each) and compared with the
upstream's own read at the same ts over its gRPC service. No difference, no writer death."""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from differential import compare_at
from flash_rig import FlashRig
from pyspark_theflash.upstream_client.client import connect
from pyspark_theflash.upstream.workloads import (BANK_TABLE, TYPES_TABLE, BankWorkload, Faults, OrdersWorkload,
                                                 TypesWorkload, Workload)

GENERATED_TABLE = "gen.items"
PARTITIONED_TABLE = "part.events"
TABLES = ("shop.orders", "shop.customers", "shop.order_items", "shop.audit", BANK_TABLE, TYPES_TABLE, GENERATED_TABLE,
          PARTITIONED_TABLE)


class GeneratedColumnsWorkload(Workload):
    """A table with STORED and VIRTUAL generated columns (and one VIRTUAL column TheFlash does
    not compute, which both sides leave out), under inserts, updates, deletes and schema
    changes: a VIRTUAL column added, the column it reads widened in place, a plain column added."""

    name = "generated"

    def setup(self) -> None:
        from pyspark_theflash.upstream.tidb import make_column

        self.cluster.create_database("gen")
        self.cluster.create_table(GENERATED_TABLE, [
            make_column("id", "BIGINT", not_null=True),
            make_column("a", "INT"),
            make_column("s", "VARCHAR(16)"),
            make_column("j", "JSON"),
            make_column("d", "DECIMAL(8,2)"),
            make_column("g", "BIGINT", generated="`a` + 1"),
            make_column("c", "VARCHAR(48)", generated="concat(upper(`s`), _utf8mb4'-', `a` * 2)", stored=True),
            make_column("k", "VARCHAR(16)", generated="json_unquote(json_extract(`j`, _utf8mb4'$.k'))"),
            make_column("dg", "DECIMAL(10,1)", generated="`d` * 3 - `a` DIV 7"),
            make_column("sub", "VARCHAR(8)", generated="substring(lower(`s`), 2, 3)"),
            make_column("today", "DATE", generated="curdate()"),
        ], primary_key=["id"])
        self.next_id = 0
        self.changes = 0

    def _row(self, rng: random.Random) -> dict[str, Any]:
        import decimal
        import json

        def maybe(v: Any) -> Any:
            return None if rng.random() < 0.15 else v

        return {"a": maybe(rng.randint(-1000, 1000)), "s": maybe(rng.choice(["Hello", "wOrLd", "x", "", "éCole"])),
                "j": maybe(json.dumps(rng.choice([{"k": "v"}, {"k": 7}, {"z": [1]}, {"k": None}]))),
                "d": maybe(decimal.Decimal(rng.randint(-99999, 99999)).scaleb(-2))}

    def step(self, rng: random.Random) -> None:
        from pyspark_theflash.upstream.tidb import make_column

        if self.faults.schema and rng.random() < self.faults.schema and self.changes < 3:
            self.changes += 1
            if self.changes == 1:
                self.cluster.add_column(GENERATED_TABLE, make_column("h", "BIGINT", generated="`g` * 3 + `a`"))
            elif self.changes == 2:
                self.cluster.modify_column(GENERATED_TABLE, "a", make_column("a", "BIGINT"))  # in place
            else:
                self.cluster.add_column(GENERATED_TABLE, make_column("extra", "INT"), default=5)
            self.stats.add("schema_changes")
            return
        op = rng.random()
        if op < 0.6 or self.next_id < 5:
            self.next_id += 1
            row = {"id": self.next_id, **self._row(rng)}
            self.commit(rng, lambda t: t.insert(GENERATED_TABLE, row))
        elif op < 0.9:
            target = rng.randint(1, self.next_id)
            change = {"id": target, **{k: v for k, v in self._row(rng).items() if rng.random() < 0.5}}

            def update(t: Any) -> None:
                if t.get(GENERATED_TABLE, target) is not None:
                    t.update(GENERATED_TABLE, change)
            self.commit(rng, update)
        else:
            target = rng.randint(1, self.next_id)

            def delete(t: Any) -> None:
                if t.get(GENERATED_TABLE, target) is not None:
                    t.delete(GENERATED_TABLE, target)
            self.commit(rng, delete)
class PartitionedWorkload(Workload):
    """A table PARTITION BY RANGE, with generated columns, under inserts, updates, deletes and
    partition DDL: TRUNCATE, ADD, REORGANIZE and DROP PARTITION, and a column added."""

    name = "partitioned"
    CHANGES = 5

    def setup(self) -> None:
        from pyspark_theflash.upstream.tidb import make_column

        self.cluster.create_database("part")
        self.cluster.create_table(PARTITIONED_TABLE, [
            make_column("id", "BIGINT", not_null=True),
            make_column("a", "INT"),
            make_column("s", "VARCHAR(16)"),
            make_column("g", "BIGINT", generated="`a` * 2 + `id`"),                       # VIRTUAL
            make_column("c", "VARCHAR(40)", generated="concat(`s`, _utf8mb4'-', `a`)", stored=True),
        ], primary_key=["id"], partition={"type": "RANGE", "expr": "`id`", "definitions": [
            {"name": "p0", "less_than": ["40"]}, {"name": "p1", "less_than": ["120"]},
            {"name": "p2", "less_than": ["1000000"]}]})
        self.next_id = 0
        self.changes = 0

    def step(self, rng: random.Random) -> None:
        from pyspark_theflash.upstream.tidb import make_column

        if self.faults.schema and rng.random() < self.faults.schema and self.changes < self.CHANGES:
            self.changes += 1
            c, table = self.cluster, PARTITIONED_TABLE
            if self.changes == 1:
                c.truncate_partitions(table, ["p0"])
            elif self.changes == 2:
                c.add_partitions(table, [{"name": "p3", "less_than": ["2000000"]}])
            elif self.changes == 3:
                c.reorganize_partitions(table, ["p2"], [{"name": "p2a", "less_than": ["200"]},
                                                         {"name": "p2b", "less_than": ["1000000"]}])
            elif self.changes == 4:
                c.add_column(table, make_column("extra", "INT"), default=7)
            else:
                c.drop_partitions(table, ["p1"])
            self.stats.add("schema_changes")
            return
        op = rng.random()
        row = {"a": None if rng.random() < 0.15 else rng.randint(-500, 500), "s": rng.choice(["x", "Yz", "", None])}
        if op < 0.6 or self.next_id < 5:
            self.next_id += 1
            new = {"id": self.next_id, **row}
            self.commit(rng, lambda t: t.insert(PARTITIONED_TABLE, new))
            return
        target = rng.randint(1, self.next_id)

        def change(t: Any) -> None:
            if t.get(PARTITIONED_TABLE, target) is not None:
                if op < 0.9:
                    t.update(PARTITIONED_TABLE, {"id": target, **row})
                else:
                    t.delete(PARTITIONED_TABLE, target)
        self.commit(rng, change)


# Two cores shared with Spark and the workload: the writer may be tens of seconds behind.
READ_WAIT = "180s"


def _faults(**kw: float) -> Faults:
    return Faults(split_merge=0.05, dying=0.02, rollback=0.02, dying_ttl_ms=200, **kw)


def _workloads(cluster: Any, seconds: float, rate: float, seed: int) -> list[Workload]:
    """The three workloads, sharing ``rate`` (orders, which carries the schema changes, most)."""
    common = dict(seed=seed, duration_s=seconds)
    return [
        OrdersWorkload(cluster, rate=rate * 0.5, threads=2, faults=_faults(schema=0.03), **common),
        BankWorkload(cluster, rate=rate * 0.3, faults=_faults(large=0.05), **common),
        TypesWorkload(cluster, rate=rate * 0.2, rows=50, faults=_faults(), **common),
        GeneratedColumnsWorkload(cluster, rate=rate * 0.2, faults=_faults(schema=0.03), **common),
        PartitionedWorkload(cluster, rate=rate * 0.2, faults=_faults(schema=0.05), **common),
    ]


def _run(spark: Any, tmp_path: Path, *, seconds: float, timestamps: int, rate: float, seed: int,
         during: bool) -> None:
    # GC keeps every version of the run (the ts compared reach back to its start)
    rig = FlashRig(tmp_path, via="capture", expired_lock_grace_s=0.5, gc_life_time_s=3 * 3600)
    upstream = connect(rig.reference)  # the upstream's own stale read, over its private service
    try:
        workloads = _workloads(rig.cluster, seconds, rate, seed)
        for workload in workloads:
            workload.setup()
        rig.start_writer()
        for workload in workloads:
            workload.start()
        orders = workloads[0]
        rng = random.Random(seed)
        seen: list[int] = []
        results = []
        while any(w.running() for w in workloads):
            seen.append(rig.cluster.get_ts())
            assert rig.writer_running, "the writer died"
            if during and len(seen) > 5:  # compare while the workload and the schema changes go on
                table = TABLES[len(results) % len(TABLES)]
                ts = rng.randint(seen[0], seen[-1])
                results.append(compare_at(spark, upstream, rig.options(region_wait_timeout=READ_WAIT), table, ts))
            else:
                orders.stop_event.wait(0.2)
        for workload in workloads:
            workload.join()
            assert workload.stats.errors == [], (workload.name, workload.stats.errors[:5])
        assert orders.stats.schema_changes >= 3, orders.stats.summary()
        assert sum(w.stats.dying for w in workloads) > 0 and sum(w.stats.splits + w.stats.merges for w in workloads) > 0
        seen.append(rig.cluster.get_ts())
        # (more) random timestamps of the run, until at least `timestamps` were compared
        picks = sorted(rng.randint(seen[0], seen[-1]) for _ in range(max(0, timestamps - len(results))))
        for i, ts in enumerate(picks):  # one table at each, in turn
            results.append(compare_at(spark, upstream, rig.options(region_wait_timeout=READ_WAIT), TABLES[i % len(TABLES)], ts))
        final = rig.cluster.get_ts()  # every table at the latest ts, read with the current schema
        for table in TABLES:
            results.append(compare_at(spark, upstream, rig.options(region_wait_timeout=READ_WAIT), table, final, schema="current"))
        assert rig.writer_running, "the writer died"
        rig.stop_writer()  # raises the writer's error, if it had one
        differing = [r for r in results if r.differences]
        assert not differing, "\n".join(f"{r.table} at {r.ts}: {r.differences[:3]}" for r in differing[:5])
        compared = {r.ts for r in results}  # (at an "absent" one both sides had no table of the name)
        assert len(compared) >= timestamps, f"compared at {len(compared)} timestamps"
        assert sum(r.rows for r in results) > 0
        assert sum(r.rows for r in results if r.table == GENERATED_TABLE) > 0  # generated columns compared
        assert sum(r.rows for r in results if r.table == PARTITIONED_TABLE) > 0  # partitioned table compared
        assert all(w.stats.schema_changes >= 1 for w in workloads[-2:]), [w.stats.summary() for w in workloads[-2:]]
    finally:
        upstream.close()
        rig.close()


def test_replica_equals_upstream_at_random_timestamps_through_schema_changes_and_splits(
        spark: Any, tmp_path: Path) -> None:
    _run(spark, tmp_path, seconds=20, timestamps=20, rate=40, seed=11, during=False)


@pytest.mark.slow
def test_replica_equals_upstream_for_ten_minutes_of_schema_changes_at_200_timestamps(
        spark: Any, tmp_path: Path) -> None:
    started = time.monotonic()
    _run(spark, tmp_path, seconds=600, timestamps=200, rate=25, seed=12, during=True)
    assert time.monotonic() - started >= 600
