"""A process reading partitions of many stores (a service of any store, an executor over many
jobs) keeps latch handles for the stores read last only: the others are let go, and their
SQLite descriptors close, instead of living as long as the process (a test run reached 1,600
descriptors, and a worker past 1,024 could no longer start py4j's callback server)."""
from __future__ import annotations

import gc
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pyspark_theflash.scan import lease
from pyspark_theflash.store import Store


def open_descriptors_under(root: Path) -> set[str]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(root)):
            found.add(target)
    return found


def test_latch_handles_of_stores_read_long_ago_are_let_go_and_their_descriptors_closed(tmp_path: Path) -> None:
    stores = []
    for i in range(lease.MAX_LATCHES + 8):
        path = tmp_path / f"store{i}"
        Store.open(path).close()
        stores.append(path)
    partitions: list[Any] = [SimpleNamespace(store=str(path), latch=None) for path in stores]
    for p in partitions:
        handle = lease._latch(p)
        handle.leases()  # its connections opened, as a renewal opens them
    assert lease._latch(partitions[-1]) is lease._latch(partitions[-1])  # one handle per store
    gc.collect()
    held = open_descriptors_under(tmp_path)
    let_go = stores[:len(stores) - lease.MAX_LATCHES]
    assert not [f for f in held if any(f.startswith(f"{s}/") for s in let_go)], sorted(held)
    assert {Path(f).parent for f in held} <= set(stores[-lease.MAX_LATCHES:])
    assert len(lease._LATCHES) <= lease.MAX_LATCHES
