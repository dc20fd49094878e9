"""The mini cluster that tests/integration/test_upstream_checkpoint.py lets die without closing it.

    python tests/support/upstream_checkpoint_child.py DATA_DIR BINLOG_DIR OUT_JSON

Bulk-loads a table, checkpoints, changes rows (updates, deletes, a transaction abandoned
between its phases, GC), checkpoints again (incrementally), changes more, then writes every
region's committed versions and open locks to OUT_JSON and exits with ``os._exit`` (no close,
no final checkpoint): a restart must rebuild that state from the last checkpoint and the log.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pyarrow as pa

from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.upstream.tidb import Abandoned, make_column


def region_state(cluster: MiniCluster) -> dict[str, list[list[str | int]]]:
    """Every region's committed versions and open locks (from region snapshots), comparable."""
    versions: list[list[str | int]] = []
    locks: list[list[str | int]] = []
    for region in cluster.regions():
        snap = cluster.region_snapshot(region.id).snapshot
        versions += [[w.key.hex(), w.commit_ts, w.write.hex(), w.value.hex()] for w in snap.writes]
        locks += [[lk.key.hex(), lk.lock.hex(), lk.value.hex()] for lk in snap.locks]
    return {"versions": sorted(versions), "locks": sorted(locks),
            "regions": sorted([r.id, r.start_key.hex(), r.end_key.hex()] for r in cluster.regions())}


def abandon(_txn: object) -> None:
    raise Abandoned()


def main(data: str, binlog: str, out: str) -> None:
    cluster = MiniCluster(data, binlog_dir=binlog, resolved_ts_interval=0, checkpoint_interval_s=None)
    cluster.create_table("d.t", [make_column("id", "BIGINT"), make_column("s", "VARCHAR(400)")], primary_key=["id"])
    cluster.bulk_insert("d.t", pa.table({"id": list(range(500)), "s": [f"v{i}" * (i % 70) for i in range(500)]}),
                        txn_rows=64)
    cluster.checkpoint()
    with cluster.txn() as t:
        for i in range(0, 500, 7):
            t.update("d.t", {"id": i, "s": "updated"})
        for i in range(3, 500, 11):
            t.delete("d.t", i)
    cluster.update_gc_safe_point(cluster.get_ts())  # drops the overwritten versions: deletions to save
    try:
        with cluster.txn(one_pc=False, after_prewrite=abandon) as t:
            t.insert("d.t", {"id": 1000, "s": "x" * 300})  # a lock with a long value
            t.update("d.t", {"id": 1, "s": "locked"})
    except Abandoned:
        pass
    cluster.checkpoint()
    cluster.bulk_insert("d.t", pa.table({"id": list(range(600, 700)), "s": ["after"] * 100}), one_pc=False)
    with cluster.txn() as t:
        t.update("d.t", {"id": 2, "s": "after the last checkpoint"})
    Path(out).write_text(json.dumps(region_state(cluster)))
    sys.stdout.flush()
    os._exit(0)  # die: no close(), no final checkpoint


if __name__ == "__main__":
    main(*sys.argv[1:4])
