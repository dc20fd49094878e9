"""capture/region_table.py: the registrations as arrays answer what the dict of RegionFeeds answers."""
from __future__ import annotations

import random

import numpy as np

from pyspark_theflash.capture.region_feed import RegionFeed
from pyspark_theflash.capture.region_table import RegionTable, WrittenResolved, greatest_resolved


def test_find_and_the_rows_follow_the_registrations_through_changes() -> None:
    """Registrations begin (replacing one of the same region), end, and have their resolved ts
    moved through the table's arrays; the table answers what the dict of feeds answers, and a
    feed that ended keeps the fields its row last held."""
    rng = random.Random(5)
    feeds: dict[int, RegionFeed] = {}
    ended: list[tuple[RegionFeed, int, bool]] = []
    table = RegionTable()
    for step in range(400):
        rid = rng.randint(1, 60)
        old = feeds.get(rid)
        if old is not None:
            ended.append((old, old.resolved_ts, old.initialized))
            table.remove(old)
            del feeds[rid]
        if old is None or rng.random() < 0.6:
            feeds[rid] = RegionFeed(rid, b"", b"", 1, 1, rng.randint(1, 3), step, initialized=rng.random() < 0.7,
                                    resolved_ts=rng.randint(0, 99))
            table.add(feeds[rid])
        if feeds and rng.random() < 0.5:  # a resolved ts of some regions, as capture moves it
            slots, found = table.find(np.array(rng.sample(sorted(feeds), min(5, len(feeds))), np.int64))
            assert found.all()
            table.resolved[slots] = np.maximum(table.resolved[slots], np.uint64(step))
        if rng.random() < 0.2 and feeds:
            feeds[rng.choice(sorted(feeds))].initialized = True
        assert len(table) == len(feeds)
        if not feeds:
            continue
        asked = np.array([rng.randint(0, 70) for _ in range(20)], np.int64)
        slot, found = table.find(asked)
        for r, p, f in zip(asked.tolist(), slot.tolist(), found.tolist()):
            assert f == (r in feeds)
            if f:
                feed = feeds[r]
                assert table.feeds[p] is feed and feed.slot == p
                assert (table.gens[p], table.stores[p], bool(table.ready[p]), int(table.resolved[p])) == \
                    (feed.gen, feed.store_id, feed.initialized, feed.resolved_ts)
        assert table.least_resolved() == min(f.resolved_ts for f in feeds.values())
        assert table.count_ready() == sum(f.initialized for f in feeds.values())
        assert table.all_resolved() == all(f.resolved_ts for f in feeds.values())
    assert ended
    for feed, resolved, ready in ended:  # off the table, with what its row held when it ended
        assert feed.slot == -1 and (feed.resolved_ts, feed.initialized) == (resolved, ready)


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


def test_a_registration_added_over_one_of_the_same_region_replaces_it() -> None:
    """One row per region: a second registration of region 7 ends the first's row (the first
    keeps the fields it had), and the id finds the second only."""
    table = RegionTable()
    first = RegionFeed(7, b"", b"", 1, 1, 1, gen=1, initialized=True, resolved_ts=40)
    table.add(first)
    second = RegionFeed(7, b"", b"", 2, 1, 1, gen=2)
    table.add(second)
    assert len(table) == 1 and first.slot == -1 and (first.resolved_ts, first.initialized) == (40, True)
    slot, found = table.find(np.array([7], np.int64))
    assert found.all() and table.feeds[int(slot[0])] is second and int(table.gens[slot[0]]) == 2


def test_the_written_resolved_ts_as_arrays_answer_what_a_dict_of_the_greatest_answers() -> None:
    """WrittenResolved keeps each region's greatest resolved ts written as two arrays; asked
    between events (a registration reads one region's, a state save lists them all), it answers
    what folding every event into a dict answers, from a saved state on."""
    rng = random.Random(11)
    saved = {rid: rng.randint(1, 500) for rid in rng.sample(range(1, 80), 20)}
    written, expected = WrittenResolved(saved), dict(saved)
    for _ in range(200):
        ids = np.array(rng.sample(range(1, 80), rng.randint(0, 30)), np.int64)
        ts = rng.randint(1, 1000)
        written.add(ids, ts)
        for rid in ids.tolist():
            expected[rid] = max(expected.get(rid, 0), ts)
        if rng.random() < 0.3:
            rid = rng.randint(0, 90)
            assert written.get(rid) == expected.get(rid, 0)
        if rng.random() < 0.1:
            assert list(written.items()) == sorted(expected.items())
    assert written.as_dict() == expected and len(written) == len(expected)
