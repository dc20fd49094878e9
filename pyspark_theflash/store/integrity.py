"""Part file integrity: a checksum of every part file, recorded in the manifest edit that lists
the part, and checked by every read of the file before a byte of it is decoded.

The checksum is CRC-32C (Castagnoli: the polynomial of iSCSI, ext4 metadata, Kafka's record
batches and Google Cloud Storage's object checksums; every error burst up to 32 bits is caught) of
the whole file, written as ``crc32c:xxxxxxxx``, computed with the CPU's CRC32
instruction (the ``crc32c`` package: about 12 GB/s a core, four times zlib's CRC-32, with the
GIL released). A file is checked when a reader
opens it: the file is memory-mapped, its size compared with the manifest's, its pages summed, and
the same map handed to the Arrow IPC or Parquet reader, so the bytes decoded are the bytes
checked. A mismatch raises ``PartChecksumError`` (file, part, expected and actual checksum, what to
do); a missing file ``PartMissingError``; a file of another size, or one whose bytes do not parse,
``PartDamagedError``. No row of such a file is ever returned. A stable part of a store whose
parts live on shared storage as well (``store.remote``) and that has no local copy is fetched
first, checked against the same size and checksum before it is renamed into place.

Stable parts (Parquet) also carry Parquet's own page checksums (CRC-32 of each page, written with
``write_page_checksum`` and verified while decoding): the format's standard guard, which any
Parquet reader of a part checks too.

A file already checked by this process is not summed again while it is unchanged: the check is
remembered by the file's identity and change stamps (device, inode, size, modification and
status-change times in nanoseconds). Any write to the file through the file system moves its
status-change time, which no process can set back, so a file damaged after it was checked is
summed again on its next open (bench/checksum.py measures both: a process's first open of a file,
and the opens after). Parts written before checksums were recorded (the manifest's ``checksum`` is
NULL) are read as before, checked for size only.
"""
from __future__ import annotations

import os
import threading
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import crc32c
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from pyspark_theflash.store import remote
from pyspark_theflash.store.errors import PartChecksumError, PartDamagedError, PartMissingError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

    from pyspark_theflash.store.part_ref import PartRef

ALGORITHM = "crc32c"
# Bytes summed per call: a slice is summed in a few milliseconds, so a thread summing a big part
# does not hold the interpreter's other threads for long.
_SUM_SLICE = 16 << 20
# Files this process checked, by path: (identity and change stamps, checksum). Bounded so a
# long-lived service reading many stores keeps a few hundred kilobytes at most.
_CHECKED_FILES = 8192


def checksum_of(data: ReadableBuffer, algorithm: str = ALGORITHM) -> str:
    """The checksum of ``data`` (bytes, a memoryview or an Arrow buffer) as the manifest records it:
    ``crc32c:`` (what parts are written with) or ``crc32:`` (zlib's, also accepted)."""
    view = memoryview(data).cast("B").toreadonly()
    crc = 0
    if algorithm == "crc32c":
        for at in range(0, len(view), _SUM_SLICE):
            crc = crc32c.crc32c(view[at:at + _SUM_SLICE], crc)
    elif algorithm == "crc32":
        for at in range(0, len(view), _SUM_SLICE):
            crc = zlib.crc32(view[at:at + _SUM_SLICE], crc)
    else:
        raise ValueError(f"unknown checksum algorithm {algorithm!r} (this code knows crc32c and crc32)")
    return f"{algorithm}:{crc & 0xFFFFFFFF:08x}"


def algorithm_of(checksum: str) -> str:
    return checksum.split(":", 1)[0]


def file_checksum(path: str | Path, algorithm: str = ALGORITHM) -> str:
    """The checksum of the file at ``path`` (memory-mapped, not copied)."""
    with pa.memory_map(str(path)) as source:
        return checksum_of(source.read_buffer() if source.size() else b"", algorithm)


class _Checked:
    def __init__(self) -> None:
        self._items: "OrderedDict[str, tuple[tuple[int, ...], str]]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str, stamp: tuple[int, ...]) -> str | None:
        with self._lock:
            hit = self._items.get(path)
            if hit is None or hit[0] != stamp:
                return None
            self._items.move_to_end(path)
            return hit[1]

    def put(self, path: str, stamp: tuple[int, ...], checksum: str) -> None:
        with self._lock:
            self._items[path] = (stamp, checksum)
            self._items.move_to_end(path)
            while len(self._items) > _CHECKED_FILES:
                self._items.popitem(last=False)

    def forget(self, path: str) -> None:
        with self._lock:
            self._items.pop(path, None)


_checked = _Checked()


def stamp(st: os.stat_result) -> tuple[int, ...]:
    """A file's identity and change stamps: any write through the file system changes one."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_stamp(path: str | Path, part: PartRef | None = None) -> tuple[int, ...]:
    """``stamp`` of the file at ``path``; a missing file raises ``PartMissingError``."""
    try:
        return stamp(os.stat(path))
    except FileNotFoundError:
        raise PartMissingError(str(path), "missing (deleted while a reader without a lease used it, or lost)",
                               None if part is None else part.part_id) from None


def open_part(path: str | Path, part: PartRef) -> pa.MemoryMappedFile:
    """The part's file memory-mapped, checked against the manifest's size and checksum: the map a
    reader then decodes. A stable part of a store whose parts live on shared storage is fetched
    when its local file is not there (``store.remote``). Raises ``PartMissingError``,
    ``PartDamagedError`` or ``PartChecksumError``."""
    path = str(path)
    try:
        st = file_stamp(path, part)
        source = pa.memory_map(path)
    except (FileNotFoundError, PartMissingError):
        fetched = _fetch(path, part)
        if fetched is None:
            raise PartMissingError(path, "missing (deleted while a reader without a lease used it, or lost)",
                                   part.part_id) from None
        return fetched
    except OSError as exc:
        raise PartDamagedError(path, f"cannot be opened: {exc}", part.part_id) from exc
    try:
        if st[2] != part.bytes:
            raise PartDamagedError(path, f"the file is {st[2]} bytes, the manifest recorded {part.bytes} "
                                   "(truncated or overwritten)", part.part_id)
        if part.checksum is not None:
            check(path, part, source, st)
    except PartDamagedError:
        source.close()
        # a copy in the cache of a store whose parts live on shared storage (torn by a crash,
        # damaged on this disk): the location's object is the part; the copy is replaced
        if os.path.exists(path) and _refetchable(path, part):
            os.unlink(path)
            fetched = _fetch(path, part)
            if fetched is not None:
                return fetched
        raise
    except BaseException:
        source.close()
        raise
    return source


def _refetchable(path: str, part: PartRef) -> bool:
    return remote.is_remote_part(part) and path.endswith(part.path) \
        and remote.of_store(path[:-len(part.path)] or ".") is not None


def _fetch(path: str, part: PartRef) -> pa.MemoryMappedFile | None:
    """``fetch`` of the part from its store's parts location into ``path``; None when the store
    has no location or the part does not live there."""
    if not remote.is_remote_part(part) or not path.endswith(part.path):
        return None
    location = remote.of_store(path[:-len(part.path)] or ".")
    return None if location is None else fetch(location, part, Path(path))


def fetch(location: remote.PartsRemote, part: PartRef, dest: Path) -> pa.MemoryMappedFile:
    """``part``'s object in ``location`` (``store.remote``) into ``dest``: downloaded under a
    temporary name, checked against the manifest's size and checksum, renamed into place, and
    returned mapped (the caller decodes the bytes that were checked, whatever becomes of
    ``dest`` after). ``PartMissingError``: no such object, or the location is out of reach;
    ``PartDamagedError``/``PartChecksumError``: the object is not what was written."""
    path = str(dest)
    where = location.where(part.path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.fetch-{os.getpid()}-{threading.get_ident()}")
    try:
        try:
            location.download(part.path, tmp)
        except FileNotFoundError:
            raise PartMissingError(where, "not in the store's parts location (deleted there, or lost)",
                                   part.part_id) from None
        except (OSError, remote.RemoteLocationError) as exc:
            raise PartMissingError(where, f"cannot be fetched: {exc}", part.part_id) from None
        source = pa.memory_map(str(tmp))
        try:
            if source.size() != part.bytes:
                raise PartDamagedError(where, f"the object is {source.size()} bytes, the manifest recorded "
                                       f"{part.bytes} (truncated or overwritten)", part.part_id)
            if part.checksum is not None:
                actual = checksum_of(source.read_buffer() if source.size() else b"", algorithm_of(part.checksum))
                source.seek(0)
                if actual != part.checksum:
                    raise PartChecksumError(where, part.part_id, part.checksum, actual)
            os.replace(tmp, dest)
            note_checked(path, part.checksum)
        except BaseException:
            source.close()
            raise
        return source
    finally:
        tmp.unlink(missing_ok=True)


def ensure_local(path: str | Path, part: PartRef) -> None:
    """``path`` on the local disk (fetched, checked, when it lives on shared storage only): for a
    caller that hands the path itself to another reader (a footer read, a link or copy)."""
    if not os.path.exists(path):
        open_part(path, part).close()


def note_checked(path: str, checksum: str | None) -> None:
    """``path`` was just written or fetched with ``checksum`` (already compared): its next open
    in this process does not sum it again."""
    try:
        st = stamp(os.stat(path))
    except FileNotFoundError:
        return
    if checksum is None:
        _checked.forget(path)
    else:
        _checked.put(path, st, checksum)


def check(path: str, part: PartRef, source: pa.MemoryMappedFile, st: tuple[int, ...]) -> None:
    """Compare the mapped file's checksum with the part's recorded one (summed once per unchanged
    file per process)."""
    expected = part.checksum
    if expected is None:
        return
    actual = _checked.get(path, st)
    if actual is None:
        try:
            actual = checksum_of(source.read_buffer() if source.size() else b"", algorithm_of(expected))
        except ValueError as exc:
            raise PartDamagedError(path, f"the manifest records the checksum {expected!r}: {exc}",
                                   part.part_id) from None
        source.seek(0)
        if actual == expected:
            _checked.put(path, st, actual)
    if actual != expected:
        _checked.forget(path)
        raise PartChecksumError(path, part.part_id, expected, actual)


def read_ipc(path: str | Path, part: PartRef) -> pa.Table:
    """An Arrow IPC part's rows, checked (memory-mapped: the table's buffers are the file's pages)."""
    source = open_part(path, part)
    try:
        return ipc.open_file(source).read_all()
    except (OSError, pa.ArrowInvalid) as exc:
        source.close()
        raise PartDamagedError(str(path), f"not a readable Arrow IPC file: {exc}", part.part_id) from exc


def open_parquet(path: str | Path, part: PartRef) -> pq.ParquetFile:
    """A Parquet part opened from its checked map, with page checksums verified while decoding.
    Decoding errors later (a damaged page) are the caller's to turn into ``PartDamagedError``
    (``damaged``)."""
    source = open_part(path, part)
    try:
        return pq.ParquetFile(source, page_checksum_verification=True)
    except (OSError, pa.ArrowInvalid) as exc:
        source.close()
        raise PartDamagedError(str(path), f"not a readable Parquet file: {exc}", part.part_id) from exc


def damaged(path: str | Path, part: PartRef | None, exc: BaseException) -> PartDamagedError:
    """The error for a part whose bytes failed to decode (after its checksum passed, or without one)."""
    return PartDamagedError(str(path), f"its bytes do not decode: {exc}", None if part is None else part.part_id)


__all__ = ["ALGORITHM", "check", "checksum_of", "damaged", "ensure_local", "fetch", "file_checksum", "file_stamp",
           "note_checked", "open_parquet", "open_part", "read_ipc", "stamp"]
