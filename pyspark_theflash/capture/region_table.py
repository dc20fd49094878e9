"""The current registrations as arrays by region id: what a resolved ts is checked against.

TiKV sends one ``ResolvedTs`` listing every region of a connection that advanced, each second
(``BATCH_RESOLVED_TS``): at 100,000 regions that is 100,000 region ids a message. Looking each
up in capture's dict of registrations and checking it was a Python step per region and message
(docs/capture.md, "Many regions"). :class:`RegionTable` keeps, for the current registrations,
their ids in order and beside them the fields the check needs — generation, store, whether
initialised, the resolved ts written — so one message's ids are found with one ``searchsorted``
and checked with a few array comparisons. It is rebuilt (one pass over the registrations) only
after a registration begins, ends or is initialised (``changed``), which a steady feed does not do.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from pyspark_theflash.capture.region_feed import RegionFeed


class RegionTable:
    """Arrays over the current registrations, in region-id order (``refresh`` builds them)."""

    def __init__(self) -> None:
        self._version = 0
        self._built = -1
        self.ids = np.zeros(0, np.int64)
        self.gens = np.zeros(0, np.int64)
        self.stores = np.zeros(0, np.int64)
        self.ready = np.zeros(0, bool)           # initialised: its resolved ts may move
        self.resolved = np.zeros(0, np.uint64)   # the resolved ts written for it (RegionFeed.resolved_ts)
        self.feeds = np.zeros(0, object)          # the RegionFeed of each

    def changed(self) -> None:
        """A registration began, ended or was initialised: the arrays are built again when next asked."""
        self._version += 1

    def refresh(self, feeds: Mapping[int, RegionFeed]) -> None:
        if self._built == self._version:
            return
        items = sorted(feeds.items())
        n = len(items)
        self.ids = np.fromiter((rid for rid, _ in items), np.int64, n)
        self.feeds = np.empty(n, object)
        self.feeds[:] = [f for _, f in items]
        self.gens = np.fromiter((f.gen for _, f in items), np.int64, n)
        self.stores = np.fromiter((f.store_id for _, f in items), np.int64, n)
        self.ready = np.fromiter((f.initialized for _, f in items), bool, n)
        self.resolved = np.fromiter((f.resolved_ts for _, f in items), np.uint64, n)
        self._built = self._version

    def find(self, region_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each id, its position in the arrays and whether it is there at all (the table
        must hold a registration: a position is always one of its rows)."""
        assert len(self.ids), "find in an empty region table"
        pos = np.minimum(np.searchsorted(self.ids, region_ids), len(self.ids) - 1)
        return pos, self.ids[pos] == region_ids


def greatest_resolved(raised: Sequence[tuple[np.ndarray, int]]) -> list[tuple[int, int]]:
    """Resolved ts events as (region ids, ts), folded: each region once, with its greatest ts
    (a resolved ts lists every region, several a second; what keeps the greatest per region
    takes them so, once, instead of a step per region and event)."""
    if not raised:
        return []
    ids = np.concatenate([np.asarray(i, np.int64) for i, _ in raised])
    tss = np.concatenate([np.full(len(i), t, np.int64) for i, t in raised])
    order = np.lexsort((tss, ids))
    ids, tss = ids[order], tss[order]
    last = np.append(ids[1:] != ids[:-1], True)
    return list(zip(ids[last].tolist(), tss[last].tolist()))
