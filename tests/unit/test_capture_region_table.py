"""capture/region_table.py: the registrations as arrays answer what the dict of RegionFeeds answers."""
from __future__ import annotations

import random
from typing import Iterator

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
                assert table.by_slot[p] is feed and feed.slot == p
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
    assert found.all() and table.by_slot[int(slot[0])] is second and int(table.gens[slot[0]]) == 2


def test_the_written_resolved_ts_as_arrays_answer_what_a_dict_of_the_greatest_answers() -> None:
    """WrittenResolved keeps each region's greatest resolved ts written as two arrays; asked
    between events (a registration reads one region's, a state save lists them all), it answers
    what folding every event into a dict answers, from a saved state on."""
    rng = random.Random(11)
    saved = {rid: rng.randint(1, 500) for rid in rng.sample(range(1, 80), 20)}
    written, expected = WrittenResolved(saved), dict(saved)
    taken: list[tuple[Iterator[tuple[int, int]], list[tuple[int, int]]]] = []  # items() taken, and what they were then
    sets: list[np.ndarray] = [np.zeros(0, np.int64)]
    for _ in range(400):
        if rng.random() < 0.4:  # a new set of regions, else an earlier event's again (places remembered)
            sets.append(np.array(rng.sample(range(1, 120), rng.randint(0, 30)), np.int64))
        ids = sets[-1] if rng.random() < 0.5 else rng.choice(sets[-4:])
        ts = rng.randint(1, 1000)
        written.add(ids.copy(), ts)
        for rid in ids.tolist():
            expected[rid] = max(expected.get(rid, 0), ts)
        if rng.random() < 0.1:  # a state taken now and written later lists what it was now
            taken.append((written.items(), sorted(expected.items())))
        if rng.random() < 0.3:
            rid = rng.randint(0, 90)
            assert written.get(rid) == expected.get(rid, 0)
        if rng.random() < 0.1:
            assert list(written.items()) == sorted(expected.items())
    assert written.as_dict() == expected and len(written) == len(expected)
    assert taken and all(list(items) == then for items, then in taken)


def test_a_regions_binlog_index_counts_on_across_its_registrations_and_survives_the_state() -> None:
    """A region's events are numbered 1, 2, ... whatever registration wrote them: the counter
    lives in the table's column while the region is registered and beside it while it is not."""
    table = RegionTable()
    table.raise_index(7, 3)  # read back from the binlog before any registration
    first = RegionFeed(7, b"a", b"b", version=1, conf_ver=1, store_id=1, gen=1)
    other = RegionFeed(8, b"b", b"c", version=1, conf_ver=1, store_id=1, gen=2)
    table.add(first)
    table.add(other)
    assert table.last_index(7) == 3 and table.next_index(7) == 4
    assert table.next_indexes([8, 7]) == [1, 5]
    assert table.next_indexes([7, 7]) == [6, 7]  # (named twice: each taken in turn)
    table.remove(first)  # ended: the count stays with the region
    assert table.last_index(7) == 7 and table.next_indexes([7, 8]) == [8, 2]
    again = RegionFeed(7, b"a", b"b", version=2, conf_ver=1, store_id=2, gen=3)
    table.add(again)
    assert table.next_index(7) == 9
    table.raise_index(7, 5)  # an older event read again does not move it back
    assert sorted(table.indexes()) == [(7, 9), (8, 2)] and table.any_index()
    assert not RegionTable().any_index()


def test_a_regions_last_registered_range_is_its_current_feeds_or_the_last_ended_ones() -> None:
    table = RegionTable()
    assert table.last_range(5) is None  # never registered by this process
    feed = RegionFeed(5, b"a", b"m", version=1, conf_ver=1, store_id=1, gen=1)
    table.add(feed)
    assert table.last_range(5) == (b"a", b"m")
    table.remove(feed)
    assert table.last_range(5) == (b"a", b"m")  # ended, none after it
    table.add(RegionFeed(5, b"a", b"f", version=2, conf_ver=1, store_id=1, gen=2))
    assert table.last_range(5) == (b"a", b"f")
    table.add(RegionFeed(5, b"a", b"c", version=3, conf_ver=1, store_id=2, gen=3))  # replaces the current one
    assert table.last_range(5) == (b"a", b"c")


def test_resolved_ts_folded_as_they_come_equal_the_fold_of_every_event_at_once() -> None:
    """ResolvedFold (the resume points' resolved ts since their last fold) answers, at each take,
    what sorting every event since the last take answers: the same regions event after event
    (the column's fast path), regions added and gone, a region listed twice, ts out of order."""
    from pyspark_theflash.capture.region_table import ResolvedFold, greatest_resolved_arrays

    rng = random.Random(5)
    fold, since = ResolvedFold(), []
    base = rng.sample(range(1, 200), 60)
    for step in range(400):
        ids = base if rng.random() < 0.6 else rng.sample(range(1, 200), rng.randint(0, 40))
        if rng.random() < 0.1 and ids:
            ids = [*ids, ids[0]]  # listed twice
        event = (np.array(ids, np.int64), rng.randint(1, 1000))
        fold.add(*event)
        since.append(event)
        if rng.random() < 0.08 or step == 399:
            got = fold.take()
            want = greatest_resolved_arrays(since) if since else (np.zeros(0, np.int64), np.zeros(0, np.int64))
            assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()
            assert not fold
            since = []
