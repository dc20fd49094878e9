"""TiKV's Percolator records (``components/txn_types``): the lock CF's ``Lock`` and the write
CF's ``Write``, each with ``parse`` and ``to_bytes`` side by side.

Lock::

    lock_type(1: P D L S H) compact_bytes(primary) var_u64(start_ts) var_u64(ttl)
    ['v' len(1) short_value] ['f' u64 for_update_ts] ['t' u64 txn_size]
    ['c' u64 min_commit_ts] ['a' var_u64(n) n*compact_bytes(secondary)]
    ['r' var_u64(n) n*u64 rollback_ts] ['l' u64 last_change_ts var_u64 versions]
    ['s' var_u64 txn_source] ['F' (locked with conflict)] ['g' u64 generation]
    ['h' var_u64(n) n*compact_bytes(shared lock)]

Write::

    write_type(1: P D L R) var_u64(start_ts) ['v' len(1) short_value] ['R' overlapped rollback]
    ['F' u64 gc_fence] ['l' u64 last_change_ts var_u64 versions] ['S' var_u64 txn_source]

``u64`` is 8 bytes big-endian, ``var_u64`` LEB128, ``compact_bytes`` a zigzag-varint length
and the bytes. As in TiKV, parsing stops at an unknown field prefix (fields are written in
a fixed order, so newer fields are ignored by older readers); an unknown lock/write type
or a field cut short is an error.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pyspark_theflash.codec.errors import BadLockError, BadWriteError, CodecError
from pyspark_theflash.codec.memcomparable_bytes import decode_compact_bytes_at, encode_compact_bytes
from pyspark_theflash.codec.number import decode_uint_at, decode_uvarint_at, encode_uint, encode_uvarint

SHORT_VALUE_PREFIX = ord("v")
SHORT_VALUE_MAX_LEN = 255

LOCK_TYPES = ("P", "D", "L", "S", "H")  # Put, Delete, Lock, Pessimistic, Shared
WRITE_TYPES = ("P", "D", "L", "R")  # Put, Delete, Lock, Rollback
PROTECTED_ROLLBACK_SHORT_VALUE = b"p"

_LOCK_FOR_UPDATE_TS = ord("f")
_LOCK_TXN_SIZE = ord("t")
_LOCK_MIN_COMMIT_TS = ord("c")
_LOCK_ASYNC_COMMIT = ord("a")
_LOCK_ROLLBACK_TS = ord("r")
_LOCK_LAST_CHANGE = ord("l")
_LOCK_TXN_SOURCE = ord("s")
_LOCK_WITH_CONFLICT = ord("F")
_LOCK_GENERATION = ord("g")
_LOCK_SHARED_TXNS = ord("h")

_WRITE_OVERLAPPED_ROLLBACK = ord("R")
_WRITE_GC_FENCE = ord("F")
_WRITE_LAST_CHANGE = ord("l")
_WRITE_TXN_SOURCE = ord("S")


def _short_value_bytes(value: bytes) -> bytes:
    if len(value) > SHORT_VALUE_MAX_LEN:
        raise CodecError(f"short value of {len(value)} bytes exceeds TiKV's {SHORT_VALUE_MAX_LEN}-byte limit")
    return bytes((SHORT_VALUE_PREFIX, len(value))) + value


def encode_secondaries(keys: list[bytes] | tuple[bytes, ...]) -> bytes:
    """An async-commit lock's secondary keys as the Lock's 'a' field holds them:
    var_u64(count), then each key as compact bytes."""
    out = bytearray(encode_uvarint(len(keys)))
    for key in keys:
        out += encode_compact_bytes(key)
    return bytes(out)


def decode_secondaries(data: bytes) -> list[bytes]:
    """The keys of :func:`encode_secondaries` bytes (all of ``data``)."""
    r = _Reader(bytes(data), BadLockError, "secondaries")
    keys = r.secondaries()
    if not r.done():
        raise r.fail(f"{len(r.data) - r.pos} byte(s) left after {len(keys)} secondary key(s)")
    return keys


def _last_change_bytes(last_change: tuple[int, int]) -> bytes:
    # TiKV's LastChange: (0, 0) Unknown is not written; (0, 1) NotExist; (ts, n) Exist.
    ts, versions = last_change
    if ts == 0 and versions == 0:
        return b""
    return encode_uint(ts) + encode_uvarint(versions)


class _Reader:
    """A cursor over one record that turns codec errors into the record's own error type."""

    def __init__(self, data: bytes, error: type[CodecError], what: str) -> None:
        self.data = data
        self.pos = 0
        self.error = error
        self.what = what

    def fail(self, message: str) -> CodecError:
        return self.error(f"{self.what} {self.data.hex()}: {message}")

    def done(self) -> bool:
        return self.pos >= len(self.data)

    def byte(self, field_name: str) -> int:
        if self.done():
            raise self.fail(f"ends at offset {self.pos} where {field_name} was expected")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def u64(self, field_name: str) -> int:
        try:
            v, self.pos = decode_uint_at(self.data, self.pos)
        except CodecError as e:
            raise self.fail(f"{field_name}: {e}") from None
        return v

    def var_u64(self, field_name: str) -> int:
        try:
            v, self.pos = decode_uvarint_at(self.data, self.pos)
        except CodecError as e:
            raise self.fail(f"{field_name}: {e}") from None
        return v

    def compact_bytes(self, field_name: str) -> bytes:
        try:
            v, self.pos = decode_compact_bytes_at(self.data, self.pos)
        except CodecError as e:
            raise self.fail(f"{field_name}: {e}") from None
        return v

    def secondaries(self) -> list[bytes]:
        count = self.var_u64("secondaries count")
        return [self.compact_bytes("secondary key") for _ in range(count)]

    def short_value(self) -> bytes:
        n = self.byte("short value length")
        if len(self.data) - self.pos < n:
            raise self.fail(f"short value at offset {self.pos} needs {n} bytes, {len(self.data) - self.pos} left")
        v = self.data[self.pos : self.pos + n]
        self.pos += n
        return v


@dataclass
class Lock:
    """A Percolator lock (TiKV lock CF value) of one key."""

    lock_type: str
    primary: bytes
    start_ts: int
    ttl: int = 0
    short_value: bytes | None = None
    for_update_ts: int = 0
    txn_size: int = 0
    min_commit_ts: int = 0
    use_async_commit: bool = False
    secondaries: list[bytes] = field(default_factory=list)
    rollback_ts: list[int] = field(default_factory=list)
    last_change: tuple[int, int] = (0, 0)
    txn_source: int = 0
    is_locked_with_conflict: bool = False
    generation: int = 0
    shared_locks: list[bytes] | None = None  # encoded member locks of a shared ('H') lock

    def __post_init__(self) -> None:
        if self.lock_type not in LOCK_TYPES:
            raise BadLockError(f"lock type {self.lock_type!r} is not one of {', '.join(LOCK_TYPES)}")
        if self.secondaries and not self.use_async_commit:
            self.use_async_commit = True

    @property
    def is_pessimistic_lock(self) -> bool:
        return self.lock_type == "S"

    @property
    def is_pessimistic_txn(self) -> bool:
        return self.for_update_ts != 0

    def to_bytes(self) -> bytes:
        out = bytearray(self.lock_type.encode("ascii"))
        out += encode_compact_bytes(self.primary)
        out += encode_uvarint(self.start_ts)
        out += encode_uvarint(self.ttl)
        if self.short_value is not None:
            out += _short_value_bytes(self.short_value)
        if self.for_update_ts:
            out.append(_LOCK_FOR_UPDATE_TS)
            out += encode_uint(self.for_update_ts)
        if self.txn_size:
            out.append(_LOCK_TXN_SIZE)
            out += encode_uint(self.txn_size)
        if self.min_commit_ts:
            out.append(_LOCK_MIN_COMMIT_TS)
            out += encode_uint(self.min_commit_ts)
        if self.use_async_commit:
            out.append(_LOCK_ASYNC_COMMIT)
            out += encode_secondaries(self.secondaries)
        if self.rollback_ts:
            out.append(_LOCK_ROLLBACK_TS)
            out += encode_uvarint(len(self.rollback_ts))
            for ts in self.rollback_ts:
                out += encode_uint(ts)
        last_change = _last_change_bytes(self.last_change)
        if last_change:
            out.append(_LOCK_LAST_CHANGE)
            out += last_change
        if self.txn_source:
            out.append(_LOCK_TXN_SOURCE)
            out += encode_uvarint(self.txn_source)
        if self.is_locked_with_conflict:
            out.append(_LOCK_WITH_CONFLICT)
        if self.generation:
            out.append(_LOCK_GENERATION)
            out += encode_uint(self.generation)
        if self.shared_locks is not None:
            out.append(_LOCK_SHARED_TXNS)
            out += encode_uvarint(len(self.shared_locks))
            for member in self.shared_locks:
                out += encode_compact_bytes(member)
        return bytes(out)

    @classmethod
    def parse(cls, data: bytes) -> Lock:
        r = _Reader(bytes(data), BadLockError, "lock")
        if r.done():
            raise r.fail("is empty")
        type_byte = r.byte("lock type")
        if chr(type_byte) not in LOCK_TYPES:
            raise r.fail(f"lock type 0x{type_byte:02x} at offset 0 is not one of {', '.join(LOCK_TYPES)}")
        lock = cls(chr(type_byte), r.compact_bytes("primary key"), r.var_u64("start_ts"))
        lock.ttl = 0 if r.done() else r.var_u64("ttl")
        while not r.done():
            prefix = r.byte("field prefix")
            if prefix == SHORT_VALUE_PREFIX:
                lock.short_value = r.short_value()
            elif prefix == _LOCK_FOR_UPDATE_TS:
                lock.for_update_ts = r.u64("for_update_ts")
            elif prefix == _LOCK_TXN_SIZE:
                lock.txn_size = r.u64("txn_size")
            elif prefix == _LOCK_MIN_COMMIT_TS:
                lock.min_commit_ts = r.u64("min_commit_ts")
            elif prefix == _LOCK_ASYNC_COMMIT:
                lock.use_async_commit = True
                lock.secondaries = r.secondaries()
            elif prefix == _LOCK_ROLLBACK_TS:
                count = r.var_u64("rollback_ts count")
                lock.rollback_ts = [r.u64("rollback_ts") for _ in range(count)]
            elif prefix == _LOCK_LAST_CHANGE:
                lock.last_change = (r.u64("last_change_ts"), r.var_u64("versions_to_last_change"))
            elif prefix == _LOCK_TXN_SOURCE:
                lock.txn_source = r.var_u64("txn_source")
            elif prefix == _LOCK_WITH_CONFLICT:
                lock.is_locked_with_conflict = True
            elif prefix == _LOCK_GENERATION:
                lock.generation = r.u64("generation")
            elif prefix == _LOCK_SHARED_TXNS:
                count = r.var_u64("shared lock count")
                lock.shared_locks = [r.compact_bytes("shared lock") for _ in range(count)]
            else:
                break  # a field of a newer TiKV: fields are ordered, so stop as TiKV does
        return lock


@dataclass
class Write:
    """A Percolator write record (TiKV write CF value, keyed by user key + commit_ts)."""

    write_type: str
    start_ts: int
    short_value: bytes | None = None
    has_overlapped_rollback: bool = False
    gc_fence: int | None = None
    last_change: tuple[int, int] = (0, 0)
    txn_source: int = 0

    def __post_init__(self) -> None:
        if self.write_type not in WRITE_TYPES:
            raise BadWriteError(f"write type {self.write_type!r} is not one of {', '.join(WRITE_TYPES)}")

    @property
    def is_protected_rollback(self) -> bool:
        return self.write_type == "R" and self.short_value == PROTECTED_ROLLBACK_SHORT_VALUE

    def to_bytes(self) -> bytes:
        out = bytearray(self.write_type.encode("ascii"))
        out += encode_uvarint(self.start_ts)
        if self.short_value is not None:
            out += _short_value_bytes(self.short_value)
        if self.has_overlapped_rollback:
            out.append(_WRITE_OVERLAPPED_ROLLBACK)
        if self.gc_fence is not None:
            out.append(_WRITE_GC_FENCE)
            out += encode_uint(self.gc_fence)
        last_change = _last_change_bytes(self.last_change)
        if last_change:
            out.append(_WRITE_LAST_CHANGE)
            out += last_change
        if self.txn_source:
            out.append(_WRITE_TXN_SOURCE)
            out += encode_uvarint(self.txn_source)
        return bytes(out)

    @classmethod
    def parse(cls, data: bytes) -> Write:
        r = _Reader(bytes(data), BadWriteError, "write record")
        if r.done():
            raise r.fail("is empty")
        type_byte = r.byte("write type")
        if chr(type_byte) not in WRITE_TYPES:
            raise r.fail(f"write type 0x{type_byte:02x} at offset 0 is not one of {', '.join(WRITE_TYPES)}")
        write = cls(chr(type_byte), r.var_u64("start_ts"))
        while not r.done():
            prefix = r.byte("field prefix")
            if prefix == SHORT_VALUE_PREFIX:
                write.short_value = r.short_value()
            elif prefix == _WRITE_OVERLAPPED_ROLLBACK:
                write.has_overlapped_rollback = True
            elif prefix == _WRITE_GC_FENCE:
                write.gc_fence = r.u64("gc_fence")
            elif prefix == _WRITE_LAST_CHANGE:
                write.last_change = (r.u64("last_change_ts"), r.var_u64("versions_to_last_change"))
            elif prefix == _WRITE_TXN_SOURCE:
                write.txn_source = r.var_u64("txn_source")
            else:
                break  # a field of a newer TiKV, as in TiKV's WriteRef::parse
        return write
