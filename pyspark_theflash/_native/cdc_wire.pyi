"""The types of ``cdc_wire.c`` (capture/feed_columns.py calls it): what its functions take and
return, as the C parses and builds them. Kept beside the source; a change to one is a change to both."""
from typing import Sequence, TypeAlias, final

import numpy as np
from typing_extensions import Buffer

# (Aliases with a leading underscore: they are the stub's own, not the module's; stubtest checks
# the rest against the built module, tests/unit/test_types.py.)
# Any object with the buffer protocol: the C takes each with PyObject_GetBuffer. (numpy's stubs
# give ndarray ``__buffer__`` for Python 3.12 on only, and [tool.mypy] checks 3.11.)
_Buf: TypeAlias = Buffer | np.ndarray
# The decoder's 8 row buffers, as match_live reads them: types (uint8), ops (uint8), start ts
# (uint64), commit ts (uint64), key offsets (int32, n + 1), key bytes, value offsets (int32, n + 1),
# value bytes.
_RowBuffers: TypeAlias = tuple[_Buf, _Buf, _Buf, _Buf, _Buf, _Buf, _Buf, _Buf]
# Matched rows as the binlog's RowBatch fields: (count, types, ops, start ts, commit ts, key
# offsets, key bytes, value offsets, value bytes).
_LiveRows: TypeAlias = tuple[int, bytes, bytes, bytes, bytes, bytes, bytes, bytes, bytes]

@final
class OpenSet:
    """A registration's open (key, start ts) pairs: a hash set."""

    def __init__(self) -> None: ...
    def __len__(self) -> int: ...
    def add(self, key: _Buf, start_ts: int, /) -> bool: ...
    def discard(self, key: _Buf, start_ts: int, /) -> bool: ...
    def holds(self, key: _Buf, start_ts: int, /) -> bool: ...
    def pairs(self) -> list[tuple[bytes, int]]: ...

def decode(raw: _Buf, /) -> tuple[int, bytes, int, bytes, bytes, bytes, bytes, bytes, bytes, bytes, bytes, int, int]:
    """A ChangeDataEvent's bytes -> (events, event records (64 bytes each), rows, types, ops, start
    ts, commit ts, key offsets, key bytes, value offsets, value bytes, resolved ts's byte range
    (-1, -1: none)). ValueError if malformed."""

def match_live(open_set: OpenSet, columns: _RowBuffers, spans: Sequence[tuple[int, int]], resolved_ts: int,
               type_map: _Buf, op_map: _Buf, /) -> tuple[int, int] | tuple[int, int, _LiveRows, int]:
    """(code, row) where the rows break the feed's rules (1: a commit at or below the resolved ts;
    2: a COMMIT without its PREWRITE), else (0, -1, rows, the newest commit ts written)."""

def match_live_many(open_sets: tuple[OpenSet, ...], resolved: _Buf, columns: _RowBuffers, spans: _Buf,
                    type_map: _Buf, op_map: _Buf, /) -> tuple[_LiveRows, bytes, bytes, list[tuple[int, int, int]]]:
    """(rows, rows per slot (int64), newest commit ts per slot (uint64), [(slot, code, row)])."""

def scan_events(columns: _RowBuffers, events: _Buf, /) -> tuple[bytes, bytes]:
    """Per event of a decoded message, one byte each: (every row a plain version — a record key's
    COMMITTED Put or Delete —, its keys strictly ascending). ValueError where an event's rows
    are outside the message's."""
