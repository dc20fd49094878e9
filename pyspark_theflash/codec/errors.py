"""Errors of the codec box: malformed or unsupported TiDB/TiKV bytes and values.

Every decoder raises one of these instead of returning a guessed value. Messages say what
was being decoded, at which byte offset, what was expected and what was found, so a bad
key or row can be located in the binlog event it came from.
"""
from __future__ import annotations

from pyspark_theflash.errors import TheFlashError


class CodecError(TheFlashError):
    """Base of every encoding or decoding failure in ``pyspark_theflash.codec``."""


class TruncatedError(CodecError):
    """The input ended before a complete value could be read."""

    def __init__(self, what: str, offset: int, needed: int, available: int) -> None:
        self.what = what
        self.offset = offset
        self.needed = needed
        self.available = available
        super().__init__(
            f"truncated {what} at offset {offset}: needs {needed} byte(s), "
            f"only {available} left; the value was cut short or is not a {what}"
        )


class UnknownFlagError(CodecError):
    """A type flag or tag byte that this decoder does not know."""

    def __init__(self, what: str, flag: int, offset: int, expected: str) -> None:
        self.what = what
        self.flag = flag
        self.offset = offset
        super().__init__(
            f"unknown {what} 0x{flag:02x} at offset {offset}; expected {expected}"
        )


class MalformedError(CodecError):
    """Bytes of the right length whose content breaks the format's rules."""


class ValueOutOfRangeError(CodecError):
    """A value that the requested encoding cannot represent (e.g. an int beyond int64)."""


class BadDecimalError(CodecError):
    """A DECIMAL value, precision or binary form that MyDecimal rejects."""


class BadTimeError(CodecError):
    """A packed DATE/DATETIME/TIMESTAMP or a TIME duration that is not a valid value."""


class BadKeyError(CodecError):
    """A TiDB key that does not have the expected layout (table prefix, record or index)."""


class NonRecordKeyError(BadKeyError):
    """A key that is not a row (record) key of the int-handle form ``t{id}_r{handle}``."""


class BadLockError(CodecError):
    """Bytes of TiKV's lock column family that are not a valid Percolator lock."""


class BadWriteError(CodecError):
    """Bytes of TiKV's write column family that are not a valid Percolator write record."""
