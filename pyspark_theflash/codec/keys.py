"""TiDB keys (``tablecodec``): table, record and index keys, index values, region bounds.

* record key, int handle:     ``t`` + enc_int(table_id) + ``_r`` + enc_int(handle)  (19 bytes)
* record key, common handle:  ``t`` + enc_int(table_id) + ``_r`` + encode_key(pk datums)
* index key:                  ``t`` + enc_int(table_id) + ``_i`` + enc_int(index_id) + encode_key(datums)
  (a non-unique index appends the handle datum; callers pass it among the datums)
* legacy index value:         8-byte big-endian handle for a unique index, ``0`` otherwise,
  followed by ``1`` when the entry is untouched (``kv.UnCommitIndexKVFlag``)
* region boundary:            PD keeps region bounds memcomparable-encoded:
  ``encode_region_key(raw) = encode_bytes(raw)``; the empty key means unbounded and stays empty.

``enc_int`` is the memcomparable int64 of ``codec.number``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pyspark_theflash.codec.datum import Datum, decode_datums, encode_key
from pyspark_theflash.codec.errors import BadKeyError, CodecError, MalformedError, NonRecordKeyError
from pyspark_theflash.codec.memcomparable_bytes import decode_bytes_at, encode_bytes
from pyspark_theflash.codec.number import SIGN_MASK, decode_int_at, encode_int

TABLE_PREFIX = b"t"
RECORD_SEP = b"_r"
INDEX_SEP = b"_i"
TABLE_PREFIX_LEN = 1 + 8  # "t" + table id
RECORD_PREFIX_LEN = TABLE_PREFIX_LEN + 2
RECORD_KEY_LEN = RECORD_PREFIX_LEN + 8
INDEX_PREFIX_LEN = TABLE_PREFIX_LEN + 2 + 8
UNTOUCHED_FLAG = b"1"
NON_UNIQUE_INDEX_VALUE = b"0"


def table_prefix(table_id: int) -> bytes:
    """``t`` + the table id: every key of the table starts with it."""
    return TABLE_PREFIX + encode_int(table_id)


def record_prefix(table_id: int) -> bytes:
    """``t{table_id}_r``: every row key of the table starts with it."""
    return table_prefix(table_id) + RECORD_SEP


def record_range(table_id: int) -> tuple[bytes, bytes]:
    """Raw [start, end) covering every row key of the table: ``t{id}_r`` to ``t{id}_s``."""
    prefix = table_prefix(table_id)
    return prefix + RECORD_SEP, prefix + b"_s"


def index_prefix(table_id: int, index_id: int) -> bytes:
    """``t{table_id}_i{index_id}``: every entry of one index starts with it."""
    return table_prefix(table_id) + INDEX_SEP + encode_int(index_id)


def _hex(key: bytes, limit: int = 64) -> str:
    h = bytes(key).hex()
    return h if len(h) <= limit else h[:limit] + "..."


def _parse_table_id(key: bytes, what: str) -> int:
    if len(key) < TABLE_PREFIX_LEN or key[:1] != TABLE_PREFIX:
        raise BadKeyError(f"{what} {_hex(key)} does not start with 't' + an 8-byte table id")
    return decode_int_at(key, 1)[0]


# ------------------------------------------------------------------------- record keys


def encode_record_key(table_id: int, handle: int) -> bytes:
    """``tablecodec.EncodeRowKeyWithHandle`` for an int handle (19 bytes)."""
    return record_prefix(table_id) + encode_int(handle)


def is_record_key(key: bytes) -> bool:
    """True for any row key (int or common handle)."""
    return len(key) >= RECORD_PREFIX_LEN and key[:1] == TABLE_PREFIX and key[9:11] == RECORD_SEP


def decode_record_key(key: bytes) -> tuple[int, int]:
    """(table_id, handle) of an int-handle row key; ``NonRecordKeyError`` for anything else."""
    if len(key) != RECORD_KEY_LEN or not is_record_key(key):
        raise NonRecordKeyError(
            f"key {_hex(key)} ({len(key)} bytes) is not an int-handle record key "
            f"'t'+table_id+'_r'+handle of {RECORD_KEY_LEN} bytes"
            + ("; it is a common-handle record key: use decode_common_handle_key" if is_record_key(key) else "")
        )
    return decode_int_at(key, 1)[0], decode_int_at(key, RECORD_PREFIX_LEN)[0]


def encode_common_handle_key(table_id: int, datums: Sequence[Datum]) -> bytes:
    """Row key of a clustered (common handle) table: the memcomparable key datums."""
    return record_prefix(table_id) + encode_key(datums)


def decode_common_handle_key(key: bytes) -> tuple[int, list[Datum]]:
    """(table_id, primary key datums) of a common-handle row key."""
    if not is_record_key(key):
        raise NonRecordKeyError(f"key {_hex(key)} is not a record key 't'+table_id+'_r'+handle")
    return decode_int_at(key, 1)[0], decode_datums(key[RECORD_PREFIX_LEN:])


def decode_record_keys(keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised ``decode_record_key``: (table_ids int64[n], handles int64[n]).

    All keys are joined into one buffer, checked as an (n, 19) byte matrix, and the table id
    and handle columns are read in place as big-endian uint64 with the sign bit flipped back.
    Any key that is not a 19-byte int-handle record key raises ``NonRecordKeyError`` naming
    its position.
    """
    n = len(keys)
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    joined = b"".join(keys)
    if len(joined) != n * RECORD_KEY_LEN:
        lengths = np.fromiter(map(len, keys), dtype=np.int64, count=n)
        bad = int(np.flatnonzero(lengths != RECORD_KEY_LEN)[0])
        decode_record_key(bytes(keys[bad]))  # raises with the key's own description
    rows = np.frombuffer(joined, dtype=np.uint8).reshape(n, RECORD_KEY_LEN)
    ok = (rows[:, 0] == TABLE_PREFIX[0]) & (rows[:, 9] == RECORD_SEP[0]) & (rows[:, 10] == RECORD_SEP[1])
    if not ok.all():
        bad = int(np.flatnonzero(~ok)[0])
        raise NonRecordKeyError(
            f"key #{bad} of {n} ({_hex(keys[bad])}) is not an int-handle record key 't'+table_id+'_r'+handle"
        )
    return _strided_int(joined, n, 1), _strided_int(joined, n, RECORD_PREFIX_LEN)


def _strided_int(buf: bytes, n: int, offset: int) -> np.ndarray:
    """The memcomparable int64 at ``offset`` of each of ``n`` 19-byte keys in ``buf``, read in
    place as strided big-endian uint64s (one copy into native order, one XOR)."""
    be = np.ndarray((n,), dtype=">u8", buffer=buf, offset=offset, strides=(RECORD_KEY_LEN,))
    return (be.astype(np.uint64) ^ np.uint64(SIGN_MASK)).view(np.int64)


# ------------------------------------------------------------------------- index keys and values


def encode_index_key(table_id: int, index_id: int, datums: Sequence[Datum]) -> bytes:
    """``tablecodec.EncodeIndexSeekKey``: index prefix + ``encode_key(datums)``."""
    return index_prefix(table_id, index_id) + encode_key(datums)


def decode_index_key(key: bytes) -> tuple[int, int, list[Datum]]:
    """(table_id, index_id, datums) of an index key."""
    table_id = _parse_table_id(key, "index key")
    if len(key) < INDEX_PREFIX_LEN or key[9:11] != INDEX_SEP:
        raise BadKeyError(f"key {_hex(key)} is not an index key 't'+table_id+'_i'+index_id+datums")
    return table_id, decode_int_at(key, 11)[0], decode_datums(key[INDEX_PREFIX_LEN:])


def encode_index_value(handle: int | None, untouched: bool = False) -> bytes:
    """Legacy index value: 8-byte big-endian int handle (unique index) or ``0`` (non-unique,
    the handle is in the key), plus ``1`` for an untouched entry."""
    body = NON_UNIQUE_INDEX_VALUE if handle is None else (handle & ((1 << 64) - 1)).to_bytes(8, "big")
    return body + (UNTOUCHED_FLAG if untouched else b"")


def decode_index_value(value: bytes) -> tuple[int | None, bool]:
    """(handle or None, untouched) of a legacy index value. The versioned layout TiDB uses for
    common handles, restored data and global indexes (first byte = tail length, > 9 bytes)
    is not decoded here."""
    n = len(value)
    handle: int | None
    if n in (1, 2) and value[:1] == NON_UNIQUE_INDEX_VALUE:
        handle, tail = None, value[1:]
    elif n in (8, 9):
        u = int.from_bytes(value[:8], "big")
        handle, tail = (u - (1 << 64) if u & SIGN_MASK else u), value[8:]
    else:
        raise CodecError(
            f"index value {_hex(value)} ({n} bytes) is not a legacy index value (8-byte handle or '0', "
            "optional '1'); the versioned index value layout is not supported"
        )
    if tail not in (b"", UNTOUCHED_FLAG):
        raise MalformedError(f"index value {_hex(value)}: trailing byte {tail.hex()} is not the untouched flag '1'")
    return handle, tail == UNTOUCHED_FLAG


# ------------------------------------------------------------------------- region boundaries


def encode_region_key(raw: bytes) -> bytes:
    """PD's encoded form of a region boundary; ``b''`` (unbounded) stays ``b''``."""
    return encode_bytes(raw) if raw else b""


def decode_region_key(encoded: bytes) -> bytes:
    """The raw key of an encoded region boundary; ``b''`` stays ``b''``."""
    if not encoded:
        return b""
    raw, end = decode_bytes_at(encoded, 0)
    if end != len(encoded):
        raise MalformedError(
            f"region key {_hex(encoded)} has {len(encoded) - end} byte(s) after its memcomparable "
            "bytes; a region boundary is exactly encode_bytes(raw)"
        )
    return raw
