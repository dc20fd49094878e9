"""Z85 (ZeroMQ RFC 32), the Base85 variant Delta uses for inline deletion vectors and for the
UUIDs of deletion vector files (PROTOCOL.md, "Deletion Vector Descriptor Schema").

Every 4 bytes, read as one big-endian uint32, become 5 characters, most significant digit first.
Delta pads unaligned input with zero bytes to a multiple of 4 and records the unpadded length
(``sizeInBytes``) beside the text, so ``decode`` takes the length to cut back to. Vectorised:
one NumPy pass over all words, never a Python step per byte."""
from __future__ import annotations

import uuid

import numpy as np

ALPHABET = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
_ENCODE = np.frombuffer(ALPHABET, dtype=np.uint8)
_DECODE = np.full(256, 255, dtype=np.uint8)
_DECODE[_ENCODE] = np.arange(85, dtype=np.uint8)
_POWERS = np.array([85 ** 4, 85 ** 3, 85 ** 2, 85, 1], dtype=np.uint64)


def encode(data: bytes) -> str:
    """``data`` zero-padded to a multiple of 4 bytes, as Z85 text."""
    pad = -len(data) % 4
    words = np.frombuffer(data + b"\0" * pad, dtype=">u4").astype(np.uint64)
    digits = (words[:, None] // _POWERS[None, :]) % 85
    return _ENCODE[digits.astype(np.intp)].tobytes().decode("ascii")


def decode(text: str, size: int | None = None) -> bytes:
    """The bytes of Z85 ``text`` (a multiple of 5 characters), cut to ``size`` when given;
    ``ValueError`` for a character outside the alphabet or a group above 2^32 - 1."""
    raw = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    if len(raw) % 5:
        raise ValueError(f"Z85 text of {len(raw)} characters (not a multiple of 5)")
    values = _DECODE[raw]
    if (values == 255).any():
        raise ValueError("a character outside Z85's alphabet")
    words = (values.reshape(-1, 5).astype(np.uint64) * _POWERS[None, :]).sum(axis=1)
    if (words > 0xFFFFFFFF).any():
        raise ValueError("a Z85 group above 2^32 - 1")
    out: bytes = words.astype(">u4").tobytes()
    if size is not None:
        if size > len(out):
            raise ValueError(f"{size} bytes asked of Z85 text holding {len(out)}")
        out = out[:size]
    return out


def encode_uuid(value: uuid.UUID) -> str:
    """A UUID's 16 bytes (most significant first) as Delta's 20 characters."""
    return encode(value.bytes)


def decode_uuid(text: str) -> uuid.UUID:
    return uuid.UUID(bytes=decode(text, 16))
