"""Where a publication's Delta tables live: a directory on a ``pyarrow.fs`` file system — the
store's own directory (the default: parts named in place), another local directory or shared
mount, or an object store such as S3 (``s3://bucket/prefix``) — seen through one small type,
``LakeDir``, so that the log, the deletion vectors, the checkpoints, the cleanup and the checks
are the same code wherever the files are (docs/delta.md, "On shared storage").

Credentials are never part of a location: ``s3://bucket/prefix`` is resolved by pyarrow from
the usual places (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_PROFILE``, ``~/.aws``,
an instance role; ``AWS_ENDPOINT_URL`` for an S3-compatible server, ``AWS_REGION``).

Writes are whole files: on a local file system under a temporary name, fsynced and renamed (or
linked, when the name must not exist yet); on an object store one PUT, which a reader sees
whole or not at all, written again after a transient error (``TRANSIENT``). A file whose name
must not exist yet (a Delta log entry: ``create``) is put-if-absent wherever it goes: a link on
a local file system, a conditional PUT on S3 (``lake.s3_put``: ``If-None-Match: *``, on an
endpoint a probe found honouring it); on any other file system it is refused, never checked
and then written.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

import pyarrow as pa
import pyarrow.fs as pafs

from pyspark_theflash.durable import fsync_directory
from pyspark_theflash.lake import s3_put
from pyspark_theflash.lake.errors import LakeError, LakeLocationError
from pyspark_theflash.store.remote import has_credentials, of_store, retried

WRITE_ATTEMPTS = 5  # a whole file written again after 0.25, 0.5, 1 and 2 s (store.remote.retried)
RETRY_FIRST_S = 0.25


def _whole_file_retried(write: Callable[[], None]) -> None:
    """``write`` (a whole file's PUT: the same bytes each time) again while the store answers
    a transient error (``store.remote.TRANSIENT``), up to ``WRITE_ATTEMPTS``; any other error at once."""
    retried(write, WRITE_ATTEMPTS, RETRY_FIRST_S)


@dataclass(frozen=True)
class LakeDir:
    """A directory on ``fs``: ``path`` as ``fs`` names it, ``uri`` as a Delta reader opens it
    (a local path, or ``s3://bucket/key``)."""

    fs: pafs.FileSystem
    path: str
    uri: str

    @property
    def local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def __truediv__(self, rel: str) -> "LakeDir":
        rel = rel.strip("/")
        return LakeDir(self.fs, f"{self.path.rstrip('/')}/{rel}", f"{self.uri.rstrip('/')}/{rel}")

    def __str__(self) -> str:
        return self.uri

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def _at(self, rel: str) -> str:
        return f"{self.path.rstrip('/')}/{rel.strip('/')}" if rel else self.path

    def where(self, rel: str = "") -> str:
        """``rel`` as a user reads it in a message."""
        return f"{self.uri.rstrip('/')}/{rel.strip('/')}" if rel else self.uri

    # --- reading -------------------------------------------------------------------------------
    def info(self, rel: str = "") -> pafs.FileInfo:
        return self.fs.get_file_info(self._at(rel))

    def is_file(self, rel: str = "") -> bool:
        return bool(self.info(rel).type == pafs.FileType.File)

    def is_dir(self, rel: str = "") -> bool:
        return bool(self.info(rel).type == pafs.FileType.Directory)

    def size(self, rel: str) -> int:
        info = self.info(rel)
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(self.where(rel))
        return int(info.size)

    def mtime_ms(self, rel: str) -> int:
        info = self.info(rel)
        if info.mtime_ns is None:
            raise FileNotFoundError(self.where(rel))
        return int(info.mtime_ns) // 1_000_000

    def names(self, rel: str = "") -> list[str]:
        """The names of the files directly in ``rel`` (none when it does not exist)."""
        selector = pafs.FileSelector(self._at(rel), allow_not_found=True, recursive=False)
        return sorted(i.base_name for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File)

    def subdirs(self, rel: str = "") -> list[str]:
        selector = pafs.FileSelector(self._at(rel), allow_not_found=True, recursive=False)
        return sorted(i.base_name for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.Directory)

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self._at(rel)) as f:
            return bytes(f.read())

    def read_range(self, rel: str, offset: int, length: int) -> bytes:
        with self.fs.open_input_file(self._at(rel)) as f:
            return bytes(f.read_at(length, offset)) if offset < f.size() else b""

    def input_file(self, rel: str) -> pa.NativeFile:
        return self.fs.open_input_file(self._at(rel))

    # --- writing -------------------------------------------------------------------------------
    def write(self, rel: str, data: bytes) -> None:
        """The file whole under its name, replacing what was there (a checkpoint, a vector
        file, a converted part: the same bytes whoever writes them)."""
        if self.local:
            path = Path(self._at(rel))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            return
        self._put(rel, data)

    def _put(self, rel: str, data: bytes) -> None:
        def put() -> None:
            with self.fs.open_output_stream(self._at(rel)) as out:
                out.write(data)

        _whole_file_retried(put)

    def create(self, rel: str, data: bytes) -> None:
        """The file under a name that must not exist yet: ``FileExistsError`` when it does (on S3
        also while another conditional PUT of it is in flight: a lost race either way)."""
        if self.local:
            path = Path(self._at(rel))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            finally:
                os.unlink(tmp)
            fsync_directory(path.parent)
            return
        endpoint, bucket, key = self._s3(rel)
        self.require_put_if_absent()
        if not s3_put.put_if_absent(endpoint, bucket, key, data, WRITE_ATTEMPTS, RETRY_FIRST_S):
            raise FileExistsError(self.where(rel))

    def _s3(self, rel: str = "") -> tuple[s3_put.S3Endpoint, str, str]:
        """(the endpoint, the bucket, the key) of ``rel`` on S3; ``LakeLocationError`` on any other
        file system than S3 and local disk: it has no put-if-absent TheFlash can send."""
        if not isinstance(self.fs, pafs.S3FileSystem):
            raise LakeLocationError(
                f"{self.uri}: a Delta version must never be overwritten, and TheFlash has a put-if-absent only on "
                f"a local file system (a link) and on S3 (a conditional PUT), not on {self.fs.type_name}; publish "
                "to a local or shared directory or to s3://")
        bucket, _, key = self._at(rel).partition("/")
        return s3_put.S3Endpoint.of(self.uri, self.fs.region), bucket, key

    def require_put_if_absent(self) -> None:
        """Refuse (``LakeLocationError``) a location where ``create`` could overwrite: a file
        system without put-if-absent, or an S3 endpoint that ignores ``If-None-Match`` (probed
        once per endpoint and bucket)."""
        if self.local:
            return
        endpoint, bucket, prefix = self._s3()
        s3_put.require_put_if_absent(endpoint, bucket, prefix)

    def copy_in(self, source: Path, rel: str) -> None:
        """A local file (a store part a version names, which never changes) at ``rel``: a hard
        link on the same local file system (no copy: the store's directory, a partitioned
        table's partitions), a copy elsewhere (another device, an object store)."""
        if self.local:
            path = Path(self._at(rel))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            try:
                try:
                    os.link(source, tmp)
                except OSError:  # another device, or a file system without links
                    shutil.copyfile(source, tmp)
                    with open(tmp, "rb+") as f:
                        os.fsync(f.fileno())
                os.replace(tmp, path)
                fsync_directory(path.parent)
            finally:
                tmp.unlink(missing_ok=True)
            return
        _whole_file_retried(lambda: pafs.copy_files(str(source), self._at(rel), source_filesystem=pafs.LocalFileSystem(),
                                                    destination_filesystem=self.fs))

    def delete(self, rel: str) -> bool:
        """Delete a file; False when it was not there."""
        try:
            self.fs.delete_file(self._at(rel))
            return True
        except FileNotFoundError:
            return False


@dataclass(frozen=True)
class Stamp:
    """A file's size and modification time (ms since the epoch), as a Delta ``add`` names them."""

    size: int
    mtime_ms: int


class FileStamps:
    """The files under one table root a publisher wrote, copied or looked at in its last round,
    with their stamps: a round asks the file system only about a file it has not met (on S3 each
    question is a HEAD, tens of ms on a remote bucket, three a converted file a round). A file a
    round writes never changes (a converted part, a copied part: the same bytes whoever writes
    them), so what is known stays true while a version names it; the publisher keeps the stamps
    of the files its newest version names (``keep``), and log cleanup deletes only files no kept
    version names."""

    def __init__(self, known: dict[str, Stamp] | None = None) -> None:
        self._known: dict[str, Stamp] = {}
        # the known files by their name up to its last '-' (a converted part's schema digests)
        self._families: dict[str, set[str]] = {}
        for rel, stamp in (known or {}).items():
            self._add(rel, stamp)

    def _add(self, rel: str, stamp: Stamp) -> Stamp:
        self._known[rel] = stamp
        self._families.setdefault(rel.rsplit("-", 1)[0], set()).add(rel)
        return stamp

    def of(self, root: LakeDir, rel: str) -> Stamp | None:
        """``rel``'s stamp under ``root``, None when there is no such file (asked once)."""
        got = self._known.get(rel)
        if got is None:
            info = root.info(rel)
            if info.type != pafs.FileType.File:
                return None
            got = self._add(rel, Stamp(int(info.size), int(info.mtime_ns or time.time_ns()) // 1_000_000))
        return got

    def wrote(self, rel: str, size: int) -> None:
        """A file this round wrote whole (its time: now)."""
        self._add(rel, Stamp(size, time.time_ns() // 1_000_000))

    def known(self, rel: str) -> Stamp | None:
        """``rel``'s stamp if it is known (no request), else None."""
        return self._known.get(rel)

    def siblings(self, rel: str) -> list[str]:
        """The known files other than ``rel`` named as it is up to its last '-' (a converted
        part's files under other schemas): from an index, no scan and no request."""
        return sorted(self._families.get(rel.rsplit("-", 1)[0], set()) - {rel})

    def keep(self, rels: set[str]) -> FileStamps:
        """The stamps of ``rels`` only (the files a version names): for the next round."""
        return FileStamps({rel: st for rel, st in self._known.items() if rel in rels})


Where = Union[str, "os.PathLike[str]", LakeDir]


def lake_dir(where: Where) -> LakeDir:
    """A ``LakeDir`` for a local path or a URI (``s3://bucket/prefix``, ``file:///dir``): the
    file system and its credentials as pyarrow resolves them (module docstring)."""
    if isinstance(where, LakeDir):
        return where
    text = os.fspath(where)
    if has_credentials(text):  # s3://key:secret@bucket
        raise LakeLocationError(f"{text.split('://', 1)[0]}://...: credentials do not go in a location; set "
                                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment")
    if "://" not in text:
        return LakeDir(pafs.LocalFileSystem(), str(Path(text).absolute()) if not Path(text).is_absolute() else text,
                       text)
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise LakeLocationError(f"{text}: not a location pyarrow opens ({exc}); give a local directory, "
                                "file:///dir or s3://bucket/prefix (credentials from the environment)") from exc
    if isinstance(fs, pafs.LocalFileSystem):
        return LakeDir(fs, path, path)
    return LakeDir(fs, path.rstrip("/"), text.rstrip("/"))


def default_location(store: str | os.PathLike[str]) -> str:
    """Where a store's tables are published when no location is given: the directory its stable
    parts live in on shared storage (``store.remote``: versions name them in place there), else
    the store's own directory."""
    parts = of_store(os.fspath(store))
    return os.fspath(store) if parts is None else parts.uri


__all__ = ["FileStamps", "LakeDir", "LakeError", "Stamp", "default_location", "lake_dir"]
