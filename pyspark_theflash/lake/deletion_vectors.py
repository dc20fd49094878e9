"""Deletion vectors as Delta stores them (PROTOCOL.md, "Deletion Vectors" and "Deletion Vector
File Storage Format"): the descriptor an ``add`` action carries, inline (``'i'``) in the log
for small vectors, or in a ``deletion_vector_<uuid>.bin`` file (``'u'``) beside the table's
data for the rest.

A file holds one round's vectors of one table: a version byte (1), then per vector its size
(big-endian int32), the RoaringBitmapArray (``roaring``) and the CRC-32 of that bitmap
(big-endian). A descriptor's ``offset`` is the position of the size field, ``sizeInBytes`` the
bitmap's size (without size field and checksum), ``cardinality`` the rows it removes."""
from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from pyspark_theflash.lake import roaring, z85
from pyspark_theflash.lake.errors import LakeDamagedError
from pyspark_theflash.lake.location import Where, lake_dir

FILE_FORMAT_VERSION = 1
# A bitmap of at most this many bytes goes inline: the log stays small (Z85 adds a quarter) and a
# reader opens no file for the common case of a few superseded rows.
INLINE_MAX_BYTES = 256


class DeletionVectorJson(TypedDict, total=False):
    """A deletion vector descriptor as the log writes it (PROTOCOL.md, "Deletion Vector
    Descriptor Schema"); ``offset`` only for a vector stored in a file of several."""

    storageType: str
    pathOrInlineDv: str
    offset: int
    sizeInBytes: int
    cardinality: int


@dataclass(frozen=True)
class DeletionVector:
    """One ``DeletionVectorDescriptor`` (PROTOCOL.md): ``storage`` 'i' or 'u'."""

    storage: str
    path_or_inline: str
    size: int
    cardinality: int
    offset: int | None = None

    @property
    def unique_id(self) -> str:
        """The derived ``uniqueId``: with ``path``, a logical file's key in the table state."""
        base = f"{self.storage}{self.path_or_inline}"
        return base if self.offset is None else f"{base}@{self.offset}"

    def to_json(self) -> DeletionVectorJson:
        out: DeletionVectorJson = {"storageType": self.storage, "pathOrInlineDv": self.path_or_inline}
        if self.offset is not None:
            out["offset"] = self.offset
        out.update({"sizeInBytes": self.size, "cardinality": self.cardinality})
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "DeletionVector":
        return cls(str(d["storageType"]), str(d["pathOrInlineDv"]), int(d["sizeInBytes"]), int(d["cardinality"]),
                   None if d.get("offset") is None else int(d["offset"]))

    def file_name(self) -> str:
        """The relative path of a 'u' vector's file: ``<prefix>/deletion_vector_<uuid>.bin``."""
        prefix, encoded = self.path_or_inline[:-20], self.path_or_inline[-20:]
        name = f"deletion_vector_{z85.decode_uuid(encoded)}.bin"
        return f"{prefix}/{name}" if prefix else name


class VectorFileWriter:
    """The on-disk vectors of one round of one table, gathered into one file."""

    def __init__(self) -> None:
        self.id = uuid.uuid4()
        self._chunks: list[bytes] = [bytes([FILE_FORMAT_VERSION])]
        self._size = 1

    def add(self, bitmap: bytes, cardinality: int) -> DeletionVector:
        offset = self._size
        chunk = struct.pack(">I", len(bitmap)) + bitmap + struct.pack(">I", zlib.crc32(bitmap))
        self._chunks.append(chunk)
        self._size += len(chunk)
        return DeletionVector("u", z85.encode_uuid(self.id), len(bitmap), cardinality, offset)

    @property
    def name(self) -> str:
        return f"deletion_vector_{self.id}.bin"

    @property
    def empty(self) -> bool:
        return len(self._chunks) == 1

    def write(self, table_root: Where) -> str:
        """The file, complete (fsynced, or one PUT) under its final name before any log entry
        names it; where it is."""
        root = lake_dir(table_root)
        root.write(self.name, b"".join(self._chunks))
        return root.where(self.name)


def vector_for(rows: np.ndarray, files: VectorFileWriter) -> DeletionVector | None:
    """The descriptor removing row indexes ``rows`` (sorted, unique) of one data file: None for
    none, inline when small, else appended to ``files``."""
    if len(rows) == 0:
        return None
    bitmap = roaring.serialize(rows)
    if len(bitmap) <= INLINE_MAX_BYTES:
        return DeletionVector("i", z85.encode(bitmap), len(bitmap), len(rows))
    return files.add(bitmap, len(rows))


def read_vector(table_root: Where, dv: DeletionVector) -> np.ndarray:
    """The row indexes a descriptor removes, every check a reader makes done:
    ``LakeDamagedError`` naming the file (or the inline vector) when the size field, the
    checksum, the bitmap or the cardinality disagree with the descriptor."""
    table_root = lake_dir(table_root)
    if dv.storage == "i":
        where = f"{table_root}/_delta_log (inline deletion vector {dv.path_or_inline[:16]}...)"
        try:
            rows = roaring.deserialize(z85.decode(dv.path_or_inline, dv.size))
        except ValueError as exc:
            raise LakeDamagedError(where, f"the inline deletion vector does not parse ({exc})") from exc
    elif dv.storage == "u":
        path = table_root.where(dv.file_name())
        try:
            with table_root.input_file(dv.file_name()) as f:
                head = f.read_at(1, 0) if f.size() else b""
                offset = dv.offset or 0
                chunk = f.read_at(dv.size + 8, offset) if offset < f.size() else b""
        except FileNotFoundError as exc:
            raise LakeDamagedError(str(path), "the deletion vector file is missing") from exc
        if head != bytes([FILE_FORMAT_VERSION]):
            raise LakeDamagedError(str(path), f"format version byte {head!r}, not {FILE_FORMAT_VERSION}")
        if len(chunk) < dv.size + 8:
            raise LakeDamagedError(str(path), f"truncated: the vector at offset {dv.offset} needs {dv.size + 8} bytes")
        (size,) = struct.unpack_from(">I", chunk, 0)
        if size != dv.size:
            raise LakeDamagedError(str(path), f"the vector at offset {dv.offset} has size {size}, the log says {dv.size}")
        bitmap = chunk[4:4 + size]
        (crc,) = struct.unpack_from(">I", chunk, 4 + size)
        if crc != zlib.crc32(bitmap):
            raise LakeDamagedError(str(path), f"the vector at offset {dv.offset} fails its CRC-32 "
                                              f"({zlib.crc32(bitmap):08x}, recorded {crc:08x})")
        try:
            rows = roaring.deserialize(bitmap)
        except ValueError as exc:
            raise LakeDamagedError(str(path), f"the vector at offset {dv.offset} does not parse ({exc})") from exc
        where = str(path)
    else:
        raise LakeDamagedError(str(table_root / "_delta_log"), f"a deletion vector of storage type {dv.storage!r}")
    if len(rows) != dv.cardinality:
        raise LakeDamagedError(where, f"the vector holds {len(rows)} rows, its cardinality says {dv.cardinality}")
    return rows
