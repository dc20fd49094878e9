"""The binlog at a URL, whatever its form: ``open_source(url, position)`` returns an
:class:`~.source.EventSource` for

* ``file:///abs/dir`` or a bare directory path: the segment files, read in this process
  (:class:`~.source.FileEventSource`);
* ``grpc://host:port``: a ``BinlogService`` (:mod:`.service`), reconnecting on its own.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable
from urllib.parse import unquote, urlparse

from pyspark_theflash.binlog.errors import BinlogSourceError
from pyspark_theflash.binlog.position import Position
from pyspark_theflash.binlog.source import EventSource, FileEventSource


def parse_source_url(url: str) -> tuple[str, str]:
    """``("file", directory)`` or ``("grpc", "host:port")``."""
    text = str(url)
    if "://" not in text:
        return "file", text
    parsed = urlparse(text)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise BinlogSourceError(
                f"binlog URL {url!r}: a file URL needs an absolute path (file:///data/binlog), "
                f"not host {parsed.netloc!r}"
            )
        return "file", unquote(parsed.path)
    if parsed.scheme == "grpc":
        if not parsed.hostname or not parsed.port or parsed.path not in ("", "/"):
            raise BinlogSourceError(f"binlog URL {url!r}: expected grpc://host:port")
        host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
        return "grpc", f"{host}:{parsed.port}"
    raise BinlogSourceError(f"binlog URL {url!r}: use file:///dir, a directory path or grpc://host:port")


def open_source(
    url: str | Path, position: Position | None = None, region_ids: Iterable[int] | None = None
) -> EventSource:
    """Open the binlog at ``url`` for reading from ``position`` (None: the oldest available),
    delivering only events of ``region_ids`` when given."""
    kind, where = parse_source_url(str(url))
    if kind == "file":
        return FileEventSource(where, position, region_ids)
    from pyspark_theflash.binlog.service import GrpcEventSource  # grpc is imported only when used

    return GrpcEventSource(where, position, region_ids)
