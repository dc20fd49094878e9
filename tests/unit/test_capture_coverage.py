"""capture/coverage.py: what capture knows the replica holds of a key range, combined from the
coverages of the registrations before (per key the highest floor, every version counted above
it; a gap, and the range is scanned whole)."""
from __future__ import annotations

from pyspark_theflash.capture.coverage import Coverage, inherit, known_at_snapshot
from pyspark_theflash.codec import encode_region_key
from pyspark_theflash.proto import binlog_pb2


def k(raw: bytes) -> bytes:
    return bytes(encode_region_key(raw))


def test_pieces_that_tile_a_range_give_each_key_the_highest_floor_any_of_them_has() -> None:
    a = Coverage([(k(b"a"), k(b"m"), 100)])
    b = Coverage([(k(b"f"), k(b"z"), 200)])
    known = inherit([a, b], k(b"c"), k(b"x"))
    assert known is not None
    assert known.floors == [(k(b"c"), k(b"f"), 100), (k(b"f"), k(b"x"), 200)]
    assert known.least_floor() == 100
    assert known.holds(b"d", 100) and not known.holds(b"d", 101)
    assert known.holds(b"g", 200) and not known.holds(b"g", 201)


def test_a_key_no_piece_covers_leaves_no_coverage() -> None:
    a = Coverage([(k(b"a"), k(b"f"), 100)])
    b = Coverage([(k(b"g"), b"", 100)])
    assert inherit([a, b], k(b"b"), k(b"h")) is None  # [f, g) is nobody's
    assert inherit([a, b], k(b"h"), b"") is not None  # to the end of the key space
    assert inherit([Coverage([(k(b"a"), k(b"f"), 0)])], k(b"b"), k(b"c")) is None  # floor 0: nothing known


def test_versions_above_the_floor_are_counted_until_the_floor_passes_them() -> None:
    c = Coverage([(k(b"a"), k(b"z"), 100)])
    c.add(b"b", 150)
    c.add(b"c", 90)  # at or below the floor: held already, not counted
    assert c.counted_above() == 1 and c.holds(b"b", 150) and c.holds(b"c", 90) and not c.holds(b"b", 151)
    known = inherit([c], k(b"a"), k(b"c"))
    assert known is not None and known.holds(b"b", 150) and known.counted_above() == 1
    c.raise_floor(160)
    assert c.counted_above() == 0 and c.holds(b"b", 150) and c.holds(b"q", 160) and not c.holds(b"q", 161)


def test_a_whole_snapshots_versions_count_once_the_floor_first_rises() -> None:
    c = Coverage([(b"", b"", 0)])
    writes = [binlog_pb2.SnapshotWrite(key=b"t1", commit_ts=ts) for ts in (50, 120, 300)]
    c.add_later(writes)
    assert not c.holds(b"t1", 300)  # floor 0: nothing is known to be held yet
    assert sorted(cts for _, cts in c.above_in(b"", b"")) == [50, 120, 300]
    c.raise_floor(200)
    assert c.holds(b"t1", 300) and c.holds(b"t1", 120) and c.counted_above() == 1


def test_a_snapshot_over_pieces_that_count_nothing_above_their_floors_keeps_their_floors() -> None:
    """An incremental snapshot skips what its pieces' floors hold even when no piece counts a
    version above its floor. (A coverage counting none once tested false, and the snapshot
    fell back to its since_ts, writing again every version between since_ts and the floors:
    bench/capture_rescan.py's doubled versions.)"""
    high = Coverage([(k(b"a"), k(b"m"), 300)])  # raised past the version it wrote at 250
    low = Coverage([(k(b"m"), k(b"z"), 200)])
    known = known_at_snapshot([high, low], k(b"f"), k(b"q"), since_ts=200)
    assert known.floors == [(k(b"f"), k(b"m"), 300), (k(b"m"), k(b"q"), 200)]
    assert known.holds(b"g", 250) and not known.holds(b"g", 301)
    assert not known.holds(b"n", 250)  # the low piece's keys: above its floor, not counted
    # where the pieces no longer tile the range, what since_ts said still holds
    gap = known_at_snapshot([Coverage([(k(b"a"), k(b"c"), 300)])], k(b"f"), k(b"q"), since_ts=200)
    assert gap.floors == [(k(b"f"), k(b"q"), 200)] and gap.holds(b"g", 200) and not gap.holds(b"g", 250)
