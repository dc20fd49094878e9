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
import threading
import time
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


class BackgroundWriter:
    """``write_json`` on a thread of its own, one write at a time: capture's main loop hands it a
    state whose lists are copies made as it was taken (the items are made JSON as written), and
    goes on with the feed while the thread writes. Saving the state on the loop stopped it for
    the whole write, ~80 ms at 10,000 regions, which every commit arriving meanwhile waited out.
    A write that failed raises from the next ``check``, ``start`` or ``wait``."""

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.took_s = 0.0  # the last write's time

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def check(self) -> None:
        """Raise the error of a write that failed (once)."""
        error, self._error = self._error, None
        if error is not None:
            raise error

    def start(self, value: object) -> None:
        """Write ``value`` on the thread (after the write in flight, if any)."""
        self.wait()
        self._thread = threading.Thread(target=self._write, args=(value,), name=self.name, daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Until the write in flight is done; its error raised."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.check()

    def _write(self, value: object) -> None:
        began = time.monotonic()
        try:
            write_json(self.path, value)
        except BaseException as exc:  # (raised on the loop's thread: check)
            self._error = exc
        self.took_s = time.monotonic() - began
