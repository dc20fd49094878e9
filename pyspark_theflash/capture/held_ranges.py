"""Which keys of the captured span nothing follows: capture's invariant, checked.

Every key of the tables capture follows is, at every moment, either in the range of a current
registration (its rows and resolved ts reach the binlog) or in a range waiting to be looked up
in PD again (a pending reload, which registers the regions PD has there). A key in neither is
followed by nothing: its versions never reach the binlog, and no region's resolved ts speaks
for it, so a replica would go on answering with its old rows. ``gaps`` finds such keys, so
capture can report them by name and look them up again, and ``caught_up`` can refuse to say
capture has caught up while any exists.

Keys are PD-encoded region keys; an end of ``b""`` is +inf.
"""
from __future__ import annotations

from typing import Iterable


def gaps(spans: Iterable[tuple[bytes, bytes]], start: bytes, end: bytes,
         ordered: bool = False) -> list[tuple[bytes, bytes]]:
    """The parts of [start, end) that no span in ``spans`` covers, in key order (spans may
    overlap, and reach past [start, end)). O(n log n) in the spans: one sort, one pass;
    ``ordered``: the spans come by start already (as a generator, say: not held at once)."""
    out: list[tuple[bytes, bytes]] = []
    at = start  # every key below ``at`` (from ``start``) is covered or reported
    for s, e in (spans if ordered else sorted(spans)):
        if end and at >= end:
            return out
        if e and e <= at:
            continue  # wholly below what is covered already
        if s > at:
            out.append((at, s if not end or s < end else end))
        if not e:
            return out  # covers everything from here on
        at = max(at, e)
    if not end or at < end:
        out.append((at, end))
    return out


def describe(start: bytes, end: bytes) -> str:
    """A range as an operator reads it: its PD-encoded keys in hex, +inf named."""
    return f"[{start.hex() or '-inf'}, {end.hex() or '+inf'})"
