"""A store's stable parts on shared storage: a directory on any ``pyarrow.fs`` file system (S3,
a shared mount, another local directory) that holds every stable part the manifest lists, at the
part's own path (``tables/<id>/p<partition>/stable-<uuid>.parquet``), so the writer's local disk
holds only a bounded cache of them (docs/store.md, "Parts on shared storage").

The rules, each kept where the store already keeps its files safe:

* **Uploaded before listed.** A compaction uploads its stable outputs before the manifest edit
  that lists them, so a part the manifest lists is always in the remote directory, whatever
  the local cache holds. A compaction that fails or loses its edit deletes what it uploaded.
* **Read through the cache.** A read of a listed stable part whose local file is not there
  (evicted, or the reader is another process on a host of its own directory) fetches the
  object into the store's directory at the part's path: downloaded under a temporary name,
  checked against the size and checksum the manifest recorded, then renamed into place; the
  reader maps the checked file (``integrity.fetch``: this module moves bytes, that one checks
  them). A damaged object fails the read naming its URI; no byte of it is returned or cached.
* **Deleted under the leases.** The remote object goes with the local file, in the same step of
  ``delete_obsolete_files``: once no lease sees the part. A Delta publication to the same place
  names the object in place, and holds its lease while a retained version names it, as on a
  local store (lake/publish.py).
* **No leftovers.** The writer deletes, when it opens the store, the objects of the partition
  directories no manifest row names (a compaction's uploads, its process dead before its edit).
* **A bounded local cache.** ``evict_local_parts`` deletes the local copies of listed stable
  parts beyond ``StoreOptions.local_parts_bytes``, the least recently fetched or written first.
  A reader that has the file mapped keeps reading it (the inode lives while it is mapped).

Deltas (Arrow IPC) stay on the local disk: the writer memory-maps, renames and fsyncs them, and
they live only until compaction folds them into a stable part. The manifest stays the local
SQLite beside them.

Credentials come from the environment and pyarrow's usual places, never from the location
(``s3://key:secret@...`` is refused).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar

import pyarrow as pa
import pyarrow.fs as pafs

from pyspark_theflash.store import manifest as mf
from pyspark_theflash.store.errors import StoreError

if TYPE_CHECKING:
    from pyspark_theflash.store.part_ref import PartRef

log = logging.getLogger("theflash.store")

# The manifest's meta key naming the remote directory (absent: the store's parts are local only).
META_KEY = "parts_remote"

# The AWS SDK's error kinds (as pyarrow's messages name them) a retry may cure: the server's own
# failure, throttling, the network. pyarrow retries a request 3 times; an object store under load
# (SeaweedFS on this 2-core machine) answered an upload INTERNAL_FAILURE all three.
TRANSIENT = re.compile(r"AWS Error (INTERNAL_FAILURE|SERVICE_UNAVAILABLE|SLOW_DOWN|THROTTLING|NETWORK_CONNECTION|"
                       r"REQUEST_TIMEOUT)\b|please try again", re.IGNORECASE)
ATTEMPTS = 5       # a whole-object request sent again after 0.25, 0.5, 1 and 2 s
RETRY_FIRST_S = 0.25

_T = TypeVar("_T")


class RemoteLocationError(StoreError):
    """The store's parts location cannot be used (a malformed URI, credentials in it, another
    location than the one the store already has)."""


def retried(request: Callable[[], _T], attempts: int = ATTEMPTS, first_s: float = RETRY_FIRST_S) -> _T:
    """``request`` (one whole object: the same bytes each time) again while the store answers a
    transient error, up to ``attempts``; any other error at once."""
    for attempt in range(attempts):
        try:
            return request()
        except OSError as exc:
            if attempt == attempts - 1 or not TRANSIENT.search(str(exc)):
                raise
            time.sleep(first_s * 2 ** attempt)
    raise AssertionError("unreachable")


def has_credentials(uri: str) -> bool:
    """Whether ``uri`` carries credentials in its authority (``s3://key:secret@bucket``)."""
    return "://" in uri and "@" in uri.split("://", 1)[1].split("/", 1)[0]


class PartsRemote:
    """The directory ``uri`` names (a local path, ``file:///dir``, ``s3://bucket/prefix``) that
    holds the store's stable parts at their relative paths. Its file system is resolved at the
    first request, not when a store is opened (on S3 that may ask the network for the bucket's
    region): opening a store never waits for the location."""

    def __init__(self, uri: str) -> None:
        if has_credentials(uri):
            raise RemoteLocationError(f"{uri.split('://', 1)[0]}://...: credentials do not go in a location; set "
                                      "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment")
        self.uri = uri.rstrip("/") if "://" in uri else str(Path(uri).absolute())
        self._resolved: tuple[pafs.FileSystem, str] | None = None
        self._lock = threading.Lock()

    @classmethod
    def at(cls, uri: str) -> PartsRemote:
        return cls(uri)

    def __repr__(self) -> str:
        return f"PartsRemote({self.uri!r})"

    def _resolve(self) -> tuple[pafs.FileSystem, str]:
        with self._lock:
            if self._resolved is None:
                if "://" not in self.uri:
                    self._resolved = (pafs.LocalFileSystem(), self.uri)
                else:
                    try:
                        fs, path = pafs.FileSystem.from_uri(self.uri)
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
                        raise RemoteLocationError(
                            f"{self.uri}: the store's parts location cannot be opened ({exc}); check the location "
                            "and its credentials (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...)") from exc
                    self._resolved = (fs, path.rstrip("/"))
            return self._resolved

    @property
    def fs(self) -> pafs.FileSystem:
        return self._resolve()[0]

    @property
    def path(self) -> str:
        return self._resolve()[1]

    def where(self, rel: str) -> str:
        return f"{self.uri}/{rel}"

    def _at(self, rel: str) -> str:
        return f"{self.path}/{rel}"

    def size(self, rel: str) -> int | None:
        """The object's size, None when there is none."""
        info = retried(lambda: self.fs.get_file_info(self._at(rel)))
        return int(info.size) if info.type == pafs.FileType.File else None

    def upload(self, local: Path, rel: str) -> None:
        """The local file ``local`` whole at ``rel`` (one PUT on S3: seen whole or not at all)."""
        if isinstance(self.fs, pafs.LocalFileSystem):
            Path(self._at(rel)).parent.mkdir(parents=True, exist_ok=True)
        retried(lambda: pafs.copy_files(str(local), self._at(rel), source_filesystem=pafs.LocalFileSystem(),
                                        destination_filesystem=self.fs))

    def delete(self, rel: str) -> None:
        """Delete ``rel``; one that is not there is already deleted."""
        with contextlib.suppress(FileNotFoundError):
            retried(lambda: self.fs.delete_file(self._at(rel)))

    def download(self, rel: str, dest: Path) -> None:
        """The object ``rel`` into the local file ``dest`` (whole; transient errors sent again).
        ``FileNotFoundError``: no such object; ``OSError``: the location refused or is out of
        reach; ``RemoteLocationError``: the location cannot be opened."""
        retried(lambda: pafs.copy_files(self._at(rel), str(dest), source_filesystem=self.fs,
                                        destination_filesystem=pafs.LocalFileSystem()))

    def files_under(self, rel: str) -> list[str]:
        """Every object under ``rel``, by its path relative to the location."""
        selector = pafs.FileSelector(self._at(rel), recursive=True, allow_not_found=True)
        return [i.path[len(self.path) + 1:] for i in retried(lambda: self.fs.get_file_info(selector))
                if i.type == pafs.FileType.File]


def is_remote_part(part: PartRef) -> bool:
    """Whether a part of a store with a remote directory lives there: a stable part's file
    (Parquet); deltas and the engine's records do not."""
    return bool(part.path) and part.path.endswith(".parquet")


def attach(conn: sqlite3.Connection, root: Path, uri: str | None) -> PartsRemote | None:
    """The writer's remote directory at open: the one its manifest names, or ``uri`` for a store
    that has none yet, after every stable part file it lists (live, or removed but still pinned)
    is uploaded there; ``RemoteLocationError`` when ``uri`` is another than the manifest's (a
    store's parts are in one place: move them first). None: the parts are local only."""
    recorded = mf.get_meta(conn, META_KEY)
    if recorded:
        if uri is not None and PartsRemote.at(uri).uri != PartsRemote.at(str(recorded)).uri:
            raise RemoteLocationError(f"{root}: its parts live in {recorded}, not {uri}; open it with "
                                      f"--parts-to {recorded} (or none)")
        remote = PartsRemote.at(str(recorded))
    elif uri is None:
        return None
    else:
        remote = PartsRemote.at(uri)
        files = [rel for (rel,) in conn.execute("SELECT file FROM parts WHERE file LIKE '%.parquet'")
                 if (root / rel).exists()]
        size = sum((root / rel).stat().st_size for rel in files)
        log.info("%s: uploading its %d stable part(s), %.1f MiB, to %s before it keeps its parts there", root,
                 len(files), size / (1 << 20), remote.uri)
        for n, rel in enumerate(files, 1):
            remote.upload(root / rel, rel)
            if n % 100 == 0 or n == len(files):
                log.info("%s: %d of %d stable part(s) uploaded to %s", root, n, len(files), remote.uri)
        with mf.transaction(conn, bump=False):
            mf.set_meta(conn, META_KEY, remote.uri)
    remember(root, remote)
    return remote


def upload_parts(remote: PartsRemote | None, root: Path, rels: list[str]) -> None:
    """A compaction's new stable part files, before the edit that lists them (on an error, the
    ones already uploaded are deleted again: nothing of the compaction is left there)."""
    if remote is None:
        return
    done: list[str] = []
    try:
        for rel in rels:
            if rel.endswith(".parquet"):
                remote.upload(root / rel, rel)
                done.append(rel)
    except BaseException:
        delete_parts(remote, done)
        raise


def delete_parts(remote: PartsRemote | None, rels: list[str]) -> None:
    """Delete the remote objects of these part files (a compaction's unlisted outputs, removed
    parts no lease sees)."""
    if remote is None:
        return
    for rel in rels:
        if rel.endswith(".parquet"):
            remote.delete(rel)


def evict_local_parts(conn: sqlite3.Connection, root: Path, budget_bytes: int) -> int:
    """Delete the local copies of listed stable parts (every one also in the remote directory)
    beyond ``budget_bytes`` of them, the least recently used first (by access time: a fetch or
    a write sets it; a read of the cached file moves it as the file system's ``relatime`` does,
    at least once a day). Returns the files deleted."""
    rows = conn.execute("SELECT file FROM parts WHERE file LIKE '%.parquet'").fetchall()
    cached: list[tuple[float, int, str]] = []
    for (rel,) in rows:
        try:
            st = os.stat(root / rel)
        except FileNotFoundError:
            continue
        cached.append((st.st_atime, st.st_size, rel))
    total = sum(size for _at, size, _rel in cached)
    evicted = 0
    for _at, size, rel in sorted(cached):
        if total <= budget_bytes:
            break
        with contextlib.suppress(FileNotFoundError):
            os.unlink(root / rel)
        total -= size
        evicted += 1
    return evicted


_remotes: dict[str, PartsRemote] = {}
_remotes_lock = threading.Lock()


def of_store(root: str | Path) -> PartsRemote | None:
    """The remote directory of the store at ``root`` (its manifest's ``parts_remote``), None when
    its parts are local only. Read once per process and store (the location never changes once
    a store has one); asked only when a part's local file is missing."""
    key = str(Path(root).resolve())
    with _remotes_lock:
        hit = _remotes.get(key)
    if hit is not None:
        return hit
    path = Path(key) / mf.MANIFEST_FILE
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (META_KEY,)).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    if row is None or not row[0]:
        return None
    remote = PartsRemote.at(str(row[0]))
    with _remotes_lock:
        _remotes[key] = remote
    return remote


def remember(root: str | Path, remote: PartsRemote) -> None:
    """Record the store's remote for this process (the writer, once it has one)."""
    with _remotes_lock:
        _remotes[str(Path(root).resolve())] = remote


__all__ = ["ATTEMPTS", "META_KEY", "PartsRemote", "RETRY_FIRST_S", "RemoteLocationError", "TRANSIENT", "attach",
           "delete_parts", "evict_local_parts", "has_credentials", "is_remote_part", "of_store", "remember",
           "retried", "upload_parts"]
