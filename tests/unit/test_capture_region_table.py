"""capture/region_table.py: the registrations as arrays answer what the dict of RegionFeeds answers."""
from __future__ import annotations

import random

import numpy as np

from pyspark_theflash.capture.region_feed import RegionFeed
from pyspark_theflash.capture.region_table import RegionTable, greatest_resolved


def test_find_and_the_arrays_follow_the_registrations_through_changes() -> None:
    rng = random.Random(5)
    feeds: dict[int, RegionFeed] = {}
    table = RegionTable()
    for step in range(200):
        rid = rng.randint(1, 60)
        if rid in feeds and rng.random() < 0.4:
            del feeds[rid]
        else:
            feeds[rid] = RegionFeed(rid, b"", b"", 1, 1, rng.randint(1, 3), step, initialized=rng.random() < 0.7,
                                    resolved_ts=rng.randint(0, 99))
        table.changed()
        table.refresh(feeds)
        if not feeds:
            continue
        asked = np.array([rng.randint(0, 70) for _ in range(20)], np.int64)
        pos, found = table.find(asked)
        for r, p, f in zip(asked.tolist(), pos.tolist(), found.tolist()):
            assert f == (r in feeds)
            if f:
                feed = feeds[r]
                assert table.feeds[p] is feed
                assert (table.gens[p], table.stores[p], bool(table.ready[p]), int(table.resolved[p])) == \
                    (feed.gen, feed.store_id, feed.initialized, feed.resolved_ts)


def test_greatest_resolved_folds_events_into_each_regions_greatest_ts() -> None:
    rng = random.Random(9)
    events = [(np.array(rng.sample(range(1, 40), rng.randint(0, 20)), np.int64), rng.randint(1, 1000))
              for _ in range(30)]
    expected: dict[int, int] = {}
    for ids, ts in events:
        for rid in ids.tolist():
            expected[rid] = max(expected.get(rid, 0), ts)
    assert dict(greatest_resolved(events)) == expected
    assert greatest_resolved([]) == []
