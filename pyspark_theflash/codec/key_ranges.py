"""Key ranges with a value each, kept in key order, and the question asked of region ranges —
"which of them overlap [start, end)?" — answered by bisection, not by a walk over every region.
Capture follows, and the writer applies, tens of thousands of regions, and each snapshot, split
or merge asks it; a walk made a cluster's first registration (capture) and its first snapshots
(the writer) quadratic in its regions (10,000 regions: a hundred million range comparisons).

Keys are PD-encoded region keys; an end of ``b""`` is +inf. ``DisjointRanges.assign`` gives
[start, end) one value, cutting the ranges it overlaps down to their parts outside it;
``RangeMembers`` keeps ranges that may overlap.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import TYPE_CHECKING, Callable, Generic, Iterator, NamedTuple, Protocol, TypeVar

if TYPE_CHECKING:
    from _typeshed import SupportsRichComparison

V = TypeVar("V")
M = TypeVar("M")  # a RangeMembers member: hashable, not a frozenset (a piece of several is one)


class HasRange(Protocol):
    """A value that knows its key range (``KeyRange``, or a record that holds one among its fields,
    such as capture's ``Claim``: an index can keep that record instead of a copy of the range)."""

    @property
    def start(self) -> bytes: ...

    @property
    def end(self) -> bytes: ...


class KeyRange(NamedTuple):
    start: bytes
    end: bytes


R = TypeVar("R", bound=HasRange)


def _below(a: bytes, b: bytes) -> bool:
    """a < b, where b as an end may be +inf (b"")."""
    return not b or a < b


class DisjointRanges(Generic[V]):
    """Disjoint ranges with a value each, in key order. The pieces are three parallel lists
    (starts, ends, values), not a tuple each: capture keeps four of these over every region it
    follows (docs/capture.md, "Memory per region"), and a 3-tuple is 64 bytes where three list
    slots are 24; the starts are bisected as they are (no key function)."""

    __slots__ = ("_starts", "_ends", "_values")

    def __init__(self, pieces: list[tuple[bytes, bytes, V]] | None = None) -> None:
        self._starts: list[bytes] = []
        self._ends: list[bytes] = []
        self._values: list[V] = []
        for s, e, v in sorted(pieces or (), key=lambda p: p[0]):
            self.assign(s, e, v)

    def __len__(self) -> int:
        return len(self._starts)

    def __iter__(self) -> Iterator[tuple[bytes, bytes, V]]:
        return iter(list(zip(self._starts, self._ends, self._values)))

    def values(self) -> list[V]:
        """The pieces' values in key order (a copy of one list: no tuple a piece)."""
        return list(self._values)

    def _slice(self, lo: int, hi: int) -> list[tuple[bytes, bytes, V]]:
        return list(zip(self._starts[lo:hi], self._ends[lo:hi], self._values[lo:hi]))

    def _span(self, start: bytes, end: bytes) -> tuple[int, int]:
        """Positions lo..hi of the pieces overlapping [start, end)."""
        starts = self._starts
        lo = bisect_right(starts, start) - 1
        if lo < 0 or not _below(start, self._ends[lo]):
            lo += 1  # the piece before ``start`` ends at or before it
        hi = len(starts) if not end else bisect_left(starts, end)
        return lo, max(lo, hi)

    def overlapping(self, start: bytes, end: bytes) -> list[tuple[bytes, bytes, V]]:
        """The pieces overlapping [start, end), in key order."""
        lo, hi = self._span(start, end)
        return self._slice(lo, hi)

    def at(self, key: bytes) -> tuple[bytes, bytes, V] | None:
        """The piece holding ``key``, if any."""
        i = bisect_right(self._starts, key) - 1
        if i >= 0 and _below(key, self._ends[i]):
            return self._starts[i], self._ends[i], self._values[i]
        return None

    def cut(self, start: bytes, end: bytes) -> list[tuple[bytes, bytes, V]]:
        """Remove [start, end) from every piece; returns the pieces it overlapped (whole)."""
        lo, hi = self._span(start, end)
        if lo == hi:
            return []
        removed = self._slice(lo, hi)
        kept: list[tuple[bytes, bytes, V]] = []  # the parts of the first and last piece outside it
        first_s, _, first_v = removed[0]
        if first_s < start:
            kept.append((first_s, start, first_v))
        _, last_e, last_v = removed[-1]
        if end and _below(end, last_e):
            kept.append((end, last_e, last_v))
        self._starts[lo:hi] = [s for s, _, _ in kept]
        self._ends[lo:hi] = [e for _, e, _ in kept]
        self._values[lo:hi] = [v for _, _, v in kept]
        return removed

    def assign(self, start: bytes, end: bytes, value: V) -> list[tuple[bytes, bytes, V]]:
        """[start, end) holds ``value`` from now on; returns the pieces it overlapped (whole)."""
        removed = self.cut(start, end)
        self.insert_free(start, end, value)
        return removed

    def insert_free(self, start: bytes, end: bytes, value: V) -> None:
        """[start, end) holds ``value``; no piece overlaps it (the caller found none)."""
        i = bisect_left(self._starts, start)
        self._starts.insert(i, start)
        self._ends.insert(i, end)
        self._values.insert(i, value)

    def remove(self, start: bytes, value: V) -> bool:
        """Remove the piece starting at ``start`` if it holds ``value``; whether it did."""
        i = bisect_left(self._starts, start)
        if i < len(self._starts) and self._starts[i] == start and self._values[i] == value:
            del self._starts[i], self._ends[i], self._values[i]
            return True
        return False


class RegionRanges(Generic[R]):
    """Regions by id and by key range (disjoint ranges: each range set retires the regions it
    overlaps first, as the writer does). A region whose range is not known (an older release's
    state file) is listed by id only. Each region's value is anything that knows its range
    (``HasRange``), kept as given: capture keeps the region's claim, not a second tuple of its
    keys (56 bytes a region at 100,000 regions; docs/capture.md, "Memory per region")."""

    def __init__(self) -> None:
        self._by_id: dict[int, R | None] = {}
        self._by_range: DisjointRanges[int] = DisjointRanges()

    def __contains__(self, region_id: object) -> bool:
        return region_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, region_id: int) -> R | None:
        return self._by_id.get(region_id)

    def items(self) -> list[tuple[int, R | None]]:
        return list(self._by_id.items())

    def sorted_items(self) -> Iterator[tuple[int, R | None]]:
        """``items`` in id order as of this call (two lists copied now: no tuple a region), made
        one at a time as iterated."""
        by_id = self._by_id
        ids = sorted(by_id)
        return zip(ids, [by_id[rid] for rid in ids])

    def set(self, region_id: int, rng: R | None) -> None:
        self.pop(region_id)
        self._by_id[region_id] = rng
        if rng is not None:
            self._by_range.assign(rng.start, rng.end, region_id)

    def pop(self, region_id: int) -> R | None:
        rng = self._by_id.pop(region_id, None)
        if rng is not None:
            for s, e, rid in self._by_range.overlapping(rng.start, rng.end):
                if rid == region_id:
                    self._by_range.cut(s, e)
        return rng

    def overlapping(self, start: bytes, end: bytes) -> list[int]:
        """The regions whose ranges overlap [start, end), in key order."""
        return [rid for _, _, rid in self._by_range.overlapping(start, end)]


class RangeMembers(Generic[M]):
    """Ranges that may overlap, each of a member (an id, or any hashable value that is not a
    frozenset), found by key range: the key space is cut into disjoint pieces, each holding the
    members whose ranges cover it. Registrations are nearly disjoint (one current region per
    key, a stale one beside it for a while), so the pieces are about as many as the members and
    a query costs a bisection. A piece of one member holds the member itself, not a set of one
    (216 bytes each, at 100,000 regions)."""

    def __init__(self) -> None:
        self._pieces: DisjointRanges[M | frozenset[M]] = DisjointRanges()
        self._ranges: dict[M, tuple[bytes, bytes]] = {}

    def __len__(self) -> int:
        return len(self._ranges)

    def __contains__(self, member: object) -> bool:
        return member in self._ranges

    def add(self, member: M, start: bytes, end: bytes, rng: tuple[bytes, bytes] | None = None) -> None:
        """``member`` over [start, end) (its range before, if any, given up); ``rng``: the tuple
        (start, end) the caller keeps already, kept instead of a copy."""
        self.discard(member)
        self._ranges[member] = rng if rng is not None and rng[0] is start and rng[1] is end else (start, end)
        self.insert(member, start, end)

    def discard(self, member: M) -> None:
        rng = self._ranges.pop(member, None)
        if rng is not None:
            self.remove(member, *rng)

    def insert(self, member: M, start: bytes, end: bytes) -> None:
        """``add`` for a caller that keeps each member's range itself (and gives it to
        ``remove``): the member is not in the index now. ``len``, ``in`` and ``discard`` know
        only the members ``add`` added."""
        old = self._pieces.overlapping(start, end)
        if not old:  # (registrations are nearly disjoint: the common case, one bisection and an insert)
            self._pieces.insert_free(start, end, member)
            return
        self._pieces.cut(start, end)  # (the old pieces' parts outside [start, end) stay as they were)
        # [start, end): the parts the old pieces held, with ``member`` added; the rest ``member`` alone
        at, to_inf = start, False  # [start, at) is assigned; to_inf: all of it is
        for s, e, ids in old:
            lo, hi = max(s, start), _min_end(e, end)
            if at < lo:
                self._pieces.assign(at, lo, member)
            self._pieces.assign(lo, hi, _with(ids, member))
            at, to_inf = hi, not hi
            if to_inf:
                break
        if not to_inf and (not end or at < end):
            self._pieces.assign(at, end, member)

    def remove(self, member: M, start: bytes, end: bytes) -> None:
        """Take ``member``, inserted over [start, end), out of the index (``insert``)."""
        for s, e, ids in self._pieces.overlapping(start, end):
            if not (member in ids if isinstance(ids, frozenset) else ids == member):
                continue
            self._pieces.cut(s, e)
            if isinstance(ids, frozenset):
                rest = ids - {member}
                self._pieces.assign(s, e, next(iter(rest)) if len(rest) == 1 else rest)

    def overlapping(self, start: bytes, end: bytes) -> set[M]:
        """The members whose ranges overlap [start, end)."""
        out: set[M] = set()
        for _, _, ids in self._pieces.overlapping(start, end):
            if isinstance(ids, frozenset):
                out |= ids
            else:
                out.add(ids)
        return out

    def members(self, order: Callable[[M], SupportsRichComparison]) -> Iterator[M]:
        """Every member inserted as of this call, once each, in key order of where its range starts
        (those starting together by ``order``: a fixed order, not a set's). A member's pieces are
        adjacent (its range is one range), so one not in the piece before is met for the first
        time: only that piece's members are remembered, not a set of every member (a state save
        of 100,000 claims held 4 MiB of it)."""
        return self._members(self._pieces.values(), order)  # (the pieces as of this call)

    @staticmethod
    def _members(pieces: list[M | frozenset[M]], order: Callable[[M], SupportsRichComparison]) -> Iterator[M]:
        before: M | frozenset[M] | None = None
        for ids in pieces:
            for member in (sorted(ids, key=order) if isinstance(ids, frozenset) else (ids,)):
                if not (member == before or (isinstance(before, frozenset) and member in before)):
                    yield member
            before = ids

    def spans(self, start: bytes, end: bytes) -> list[tuple[bytes, bytes]]:
        """The parts of [start, end) some member covers (pieces clipped to it)."""
        return [(max(s, start), _min_end(e, end)) for s, e, _ in self._pieces.overlapping(start, end)]


def _with(ids: M | frozenset[M], member: M) -> M | frozenset[M]:
    """A piece's members with ``member`` too."""
    if isinstance(ids, frozenset):
        return ids | {member}
    return ids if ids == member else frozenset((ids, member))


def _min_end(a: bytes, b: bytes) -> bytes:
    """The lesser of two ends, where b"" is +inf."""
    if not a:
        return b
    if not b:
        return a
    return min(a, b)
