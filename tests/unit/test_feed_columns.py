"""The change feed decoded into columns (capture/feed_columns.py, _native/cdc_wire.c) gives
exactly what the per-row rules (tests/support/feed_reference.py, over protobuf messages) give: the same rows,
the same protocol errors, across polls."""
from __future__ import annotations

import random

import numpy as np
import pytest

from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.capture.feed_columns import OpenSet, decode_change_data, scan_events
from pyspark_theflash.capture.region_feed import FeedProtocolError, RegionFeed
from pyspark_theflash.proto import binlog_pb2, cdcpb_pb2

import feed_reference

Ev = cdcpb_pb2.Event


def key(h: int) -> bytes:
    """A record key; for h >= 1000 an index entry's key, which is not a row."""
    kind = b"_i" if h >= 1000 else b"_r"
    return b"t" + (500 ^ (1 << 63)).to_bytes(8, "big") + kind + (h ^ (1 << 63)).to_bytes(8, "big")


def is_record(k: bytes) -> bool:
    return k[9:11] == b"_r"


def fresh() -> RegionFeed:
    feed = RegionFeed(1, b"", b"", 1, 1, 1, 1, initialized=True, resolved_ts=10)
    feed._open[(key(999), 5)] = binlog_pb2.PUT  # a lock of the registration's snapshot
    return feed


def rows_of(batch: binlog_pb2.RowBatch) -> list[tuple]:
    return [(r.type, r.op, r.start_ts, r.commit_ts, r.key, r.value)
            for r in binlog_rows.iter_rows(binlog_pb2.Entries(batch=batch))]


def per_row(feed: RegionFeed, events: list[list[Ev.Row]]) -> list[tuple] | str:
    out: list[tuple] = []
    try:
        for rows in events:
            got, _ = feed_reference.take(feed, rows, is_record)
            out += [(r.type, r.op, r.start_ts, r.commit_ts, r.key, r.value) for r in got]
    except FeedProtocolError as exc:
        return str(exc)
    return out


def columnar(feed: RegionFeed, events: list[list[Ev.Row]], polls: int) -> list[tuple] | str:
    out: list[tuple] = []
    step = max(1, -(-len(events) // polls))
    try:
        for lo in range(0, len(events), step):
            msg = cdcpb_pb2.ChangeDataEvent(events=[Ev(region_id=1, request_id=1, entries=Ev.Entries(entries=rows))
                                                    for rows in events[lo:lo + step]])
            decoded = decode_change_data(msg.SerializeToString())
            cols = feed.take_columns(decoded.rows)
            if cols is not None:
                packed = binlog_rows.pack_columns(**cols.columns())
                filled = binlog_pb2.RowBatch()
                cols.fill(filled)  # the C match's bytes as they are: what capture writes
                assert filled.SerializeToString() == packed.SerializeToString()
                out += rows_of(packed)
    except FeedProtocolError as exc:
        return str(exc)
    return out


def random_feed(rng: random.Random, n: int) -> list[list[Ev.Row]]:
    events, open_, ts = [], [(key(999), 5)], 20
    for _ in range(n):
        rows = []
        for _ in range(rng.randint(0, 4)):
            roll = rng.random()
            if roll < 0.4 or not open_:
                k, ts = key(rng.choice([rng.randint(0, 30), rng.randint(1000, 1003)])), ts + 1
                op = rng.choice([Ev.Row.PUT, Ev.Row.PUT, Ev.Row.DELETE, Ev.Row.UNKNOWN])
                rows.append(Ev.Row(type=Ev.PREWRITE, op_type=op, start_ts=ts, key=k,
                                   value=b"v%d" % ts if op == Ev.Row.PUT else b""))
                if op != Ev.Row.UNKNOWN:
                    open_.append((k, ts))
            elif roll < 0.7:
                k, s = open_.pop(rng.randrange(len(open_)))
                ts += 1
                rows.append(Ev.Row(type=Ev.COMMIT, op_type=Ev.Row.PUT, start_ts=s, commit_ts=ts, key=k, value=b"short"))
            elif roll < 0.8:
                k, s = open_.pop(rng.randrange(len(open_))) if rng.random() < 0.7 else (key(77), 3)
                rows.append(Ev.Row(type=Ev.ROLLBACK, start_ts=s, key=k))
            elif roll < 0.9:
                ts += 2
                rows.append(Ev.Row(type=Ev.COMMITTED, op_type=rng.choice([Ev.Row.PUT, Ev.Row.DELETE]),
                                   start_ts=ts - 1, commit_ts=ts, key=key(rng.randint(0, 30)), value=b"1pc"))
            elif roll < 0.93:  # broken: a commit without its prewrite, or below the resolved ts
                rows.append(Ev.Row(type=Ev.COMMIT, start_ts=4, commit_ts=rng.choice([9, ts + 1]), key=key(55)))
            else:  # a prewrite and its commit in the same event
                k, ts = key(rng.randint(0, 30)), ts + 2
                rows += [Ev.Row(type=Ev.PREWRITE, op_type=Ev.Row.PUT, start_ts=ts - 1, key=k, value=b"x"),
                         Ev.Row(type=Ev.COMMIT, start_ts=ts - 1, commit_ts=ts, key=k)]
        events.append(rows)
    return events


@pytest.mark.parametrize("seed", range(60))
def test_columns_give_what_the_per_row_path_gives(seed: int) -> None:
    rng = random.Random(seed)
    events = random_feed(rng, rng.randint(1, 30))
    expected = per_row(fresh(), events)
    for polls in (1, 3, len(events)):
        got = columnar(fresh(), events, polls)
        # the same rows, or the same refusal naming the same row (the poll holding the break
        # writes nothing, so rows before it in that poll are not in ``got``: compare the error)
        assert got == expected, (seed, polls)


def test_the_wire_decoder_reads_what_protobuf_reads_and_refuses_a_truncated_message() -> None:
    msg = cdcpb_pb2.ChangeDataEvent(events=[
        Ev(region_id=3, index=9, request_id=77, entries=Ev.Entries(entries=[
            Ev.Row(start_ts=5, commit_ts=6, type=Ev.COMMIT, op_type=Ev.Row.PUT, key=b"k1", value=b"v", old_value=b"o",
                   txn_source=4, generation=2),
            Ev.Row(type=Ev.INITIALIZED)])),
        Ev(region_id=4, request_id=1, error=cdcpb_pb2.Error(congested=cdcpb_pb2.Congested(region_id=4)))],
        resolved_ts=cdcpb_pb2.ResolvedTs(regions=[1, 2], ts=99, request_id=3))
    raw = msg.SerializeToString()
    d = decode_change_data(raw)
    assert d.events[:, :4].tolist() == [[3, 9, 77, 3], [4, 0, 1, 5]]
    assert d.rows.types.tolist() == [Ev.COMMIT, Ev.INITIALIZED] and d.rows.keys.to_pylist() == [b"k1", b""]
    assert d.rows.values.to_pylist() == [b"v", b""] and d.rows.commit_ts.tolist() == [6, 0]
    assert Ev.FromString(d.event_bytes(1)) == msg.events[1]
    assert cdcpb_pb2.ResolvedTs.FromString(d.resolved_bytes()) == msg.resolved_ts
    with pytest.raises(ValueError, match="malformed"):
        decode_change_data(raw[:-3])
    assert np.array_equal(decode_change_data(b"").events, np.zeros((0, 8), np.uint64))


@pytest.mark.parametrize("seed", range(20))
def test_a_messages_events_read_as_a_scans_say_which_are_plain_versions_in_ascending_keys(seed: int) -> None:
    rng = random.Random(seed)
    events: list[Ev] = []
    for _ in range(rng.randint(0, 30)):
        rows = []
        for _ in range(rng.choice([0, 1, 2, 5, 40])):
            plain = rng.random() < 0.9
            h = rng.choice([rng.randrange(50), 1000 + rng.randrange(5)] if not plain else [rng.randrange(50)])
            kind = rng.choice([Ev.COMMITTED] * 6 + [Ev.PREWRITE, Ev.COMMIT, Ev.ROLLBACK, Ev.INITIALIZED])
            op = rng.choice([Ev.Row.PUT, Ev.Row.PUT, Ev.Row.DELETE] + ([Ev.Row.UNKNOWN] if not plain else []))
            k = key(h)[:rng.choice([19, 12])] if rng.random() < 0.05 else key(h)  # a key too short for a record
            rows.append(Ev.Row(type=kind if not plain else Ev.COMMITTED, op_type=op, start_ts=3, commit_ts=4, key=k,
                               value=b"v" if op == Ev.Row.PUT else b""))
        if rng.random() < 0.5:
            rows.sort(key=lambda r: r.key)
        events.append(Ev(region_id=1 + len(events), request_id=1, entries=Ev.Entries(entries=rows)))
        if rng.random() < 0.1:
            events.append(Ev(region_id=99, request_id=1, error=cdcpb_pb2.Error()))
    msg = decode_change_data(cdcpb_pb2.ChangeDataEvent(events=events).SerializeToString())
    scan = scan_events(msg)
    for i, ev in enumerate(events):
        rows = list(ev.entries.entries)
        plain = all(r.type == Ev.COMMITTED and r.op_type in (Ev.Row.PUT, Ev.Row.DELETE) and is_record(r.key)
                    and len(r.key) >= 19 for r in rows)
        ascending = all(a.key < b.key for a, b in zip(rows, rows[1:]))
        assert (scan.plain[i], scan.ascending[i]) == (plain, ascending)
    assert scan.values.to_pylist() == [b"" if op == Ev.Row.DELETE else v
                                       for op, v in zip(msg.rows.ops.tolist(), msg.rows.values.to_pylist())]
    assert scan.ops.tolist() == [{Ev.Row.PUT: binlog_pb2.PUT, Ev.Row.DELETE: binlog_pb2.DELETE}.get(op, 0)
                                 for op in msg.rows.ops.tolist()]


@pytest.mark.parametrize("seed", range(5))
def test_the_open_set_holds_exactly_what_a_python_set_holds_through_adds_and_removes(seed: int) -> None:
    """The C hash set (linear probing, backward-shift deletion) against Python's set, through
    growth and through removals inside long probe runs (few distinct keys, many starts)."""
    rng = random.Random(seed)
    ours, model = OpenSet(), set()
    for step in range(20_000):
        # record keys (kept inside a slot) and longer ones (kept on the heap)
        pair = (key(rng.randint(0, 40)) + b"#" * rng.choice([0, 0, 9]), rng.randint(1, 60))
        if rng.random() < 0.55:
            assert ours.add(*pair) == (pair not in model)
            model.add(pair)
        else:
            assert ours.discard(*pair) == (pair in model)
            model.discard(pair)
        if step % 997 == 0:
            assert len(ours) == len(model)
            assert sorted(ours.pairs()) == sorted(model)
            assert all(ours.holds(*p) for p in model)
    assert sorted(ours.pairs()) == sorted(model)
    assert not ours.holds(b"", 0) and not ours.discard(b"", 0)


def many_regions(events_by_region: list[list[list[Ev.Row]]], rng: random.Random) -> list[list[tuple] | str]:
    """Each region's events interleaved into messages (a region's in order, 1-8 events a message,
    as TiKV's batcher packs them), matched by ``match_live_many`` one message at a time: per region,
    the rows written, or the refusal (after which nothing more of it is matched: dropped)."""
    from pyspark_theflash.capture.feed_columns import match_live_many, row_buffers

    feeds = [fresh() for _ in events_by_region]
    for f in feeds:
        f.take_columns(decode_change_data(b"").rows)  # the snapshot's lock into the C open set
    queues = [list(evs) for evs in events_by_region]
    out: list[list[tuple] | str] = [[] for _ in feeds]
    while any(queues):
        picked = []  # (region, its rows) in message order
        for _ in range(rng.randint(1, 8)):
            ready = [r for r, q in enumerate(queues) if q]
            if not ready:
                break
            r = rng.choice(ready)
            picked.append((r, queues[r].pop(0)))
        msg = cdcpb_pb2.ChangeDataEvent(events=[Ev(region_id=r + 1, request_id=1, entries=Ev.Entries(entries=rows))
                                                for r, rows in picked])
        decoded = decode_change_data(msg.SerializeToString())
        live = [r for r in range(len(feeds)) if not isinstance(out[r], str)]
        slot = {r: i for i, r in enumerate(live)}
        spans = sorted(((int(lo), int(hi), slot[int(rid) - 1]) for rid, _, _, _, lo, hi, _, _ in decoded.events.tolist()
                        if int(rid) - 1 in slot), key=lambda s: s[2])  # stable: a region's spans in feed order
        runs = match_live_many(row_buffers(decoded.rows), np.array(spans, np.int64).reshape(-1, 3),
                               tuple(feeds[r]._open_set for r in live), np.array([10] * len(live), np.uint64))
        at = 0
        for r in live:
            n = int(runs.counts[slot[r]])
            if slot[r] in runs.errors:
                assert n == 0
                out[r] = str(FeedProtocolError(f"region 1: {runs.errors[slot[r]]}"))
                continue
            if n:
                whole = binlog_pb2.RowBatch()
                runs.rows.fill(whole)
                part = binlog_pb2.RowBatch()
                from pyspark_theflash.binlog import region_runs
                region_runs.slice_batch(whole, at, at + n, part)
                out[r] += rows_of(part)  # type: ignore[operator]
                assert int(runs.newest[slot[r]]) == max((row[3] for row in rows_of(part)), default=0)
            at += n
        assert at == runs.rows.count
    return out


@pytest.mark.parametrize("seed", range(40))
def test_many_regions_in_one_call_give_what_each_region_alone_gives(seed: int) -> None:
    rng = random.Random(seed)
    by_region = [random_feed(rng, rng.randint(1, 12)) for _ in range(rng.randint(1, 6))]
    expected = [per_row(fresh(), events) for events in by_region]
    assert many_regions(by_region, rng) == expected
