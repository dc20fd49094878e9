"""capture's state file written as it is made: the same JSON as ``json.dumps`` of the whole
state, without the whole of it in memory at once.

At 100,000 regions the state (each region's index and resolved ts, its claim, its range in the
replica, its resume floor) as Python lists and strings, and its JSON as one string, were some
hundreds of bytes a region on top of what capture keeps: the peak of an idle capture's memory.
A large list or object is given as :class:`Items` (made from a generator) and written a chunk of
items at a time; the text is byte for byte ``json.dumps``'s (its separators, its key rules).
"""
from __future__ import annotations

import json
import os
from itertools import islice
from pathlib import Path
from typing import IO, Any, Iterable

CHUNK = 2048  # items encoded at once


class Items:
    """A JSON array of ``items`` (or an object of ``(key, value)`` pairs, ``pairs=True``) made as
    it is written."""

    __slots__ = ("items", "pairs")

    def __init__(self, items: Iterable[Any], pairs: bool = False) -> None:
        self.items, self.pairs = items, pairs


def write_json(path: Path, value: Any) -> None:
    """``value`` as JSON to ``path``, through a temporary file renamed in."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        _dump(value, f)
    os.replace(tmp, path)


def dumps(value: Any) -> str:
    """The text ``write_json`` writes (for tests: it equals ``json.dumps`` of the plain value)."""
    import io

    out = io.StringIO()
    _dump(value, out)
    return out.getvalue()


def _dump(value: Any, f: IO[str]) -> None:
    if isinstance(value, Items):
        f.write("{" if value.pairs else "[")
        it = iter(value.items)
        first = True
        while True:
            chunk = list(islice(it, CHUNK))
            if not chunk:
                break
            text = json.dumps(dict(chunk) if value.pairs else chunk)[1:-1]
            if text:
                f.write(text if first else ", " + text)
                first = False
        f.write("}" if value.pairs else "]")
    elif isinstance(value, dict):
        f.write("{")
        for i, (k, v) in enumerate(value.items()):
            # (a key as json.dumps writes it: a str as it is, an int as its decimal string)
            f.write((", " if i else "") + json.dumps(k if isinstance(k, str) else json.dumps(k)) + ": ")
            _dump(v, f)
        f.write("}")
    else:
        f.write(json.dumps(value))
