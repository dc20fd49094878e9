"""A stream of the HTTP front end as its client reads it.

The body of ``GET /v1/read-sessions/{id}/streams/{n}`` is an Arrow IPC stream, whole only when
it ends with Arrow's end-of-stream marker: the server sends the marker after the last batch and
nothing else, and on an error after the status line it ends the chunked body without the marker
and without its last chunk (docs/service.md). pyarrow's stream reader, though, ends quietly where
the bytes stop at a message boundary, and a chunked body cut mid-way raises a bare
``http.client.IncompleteRead``. :func:`read_stream_body` reads the batches as they arrive and
turns every way a body can end early — cut at a batch boundary, inside a batch, inside the
marker, without its last chunk, the connection reset or timed out — into one
:class:`StreamTruncatedError` naming the session, the stream and the rows read so far.

    response = conn.getresponse()            # a 200 with Content-Type application/vnd.apache.arrow.stream
    batches = list(read_stream_body(response, session=id, stream=n, url=url))
"""
from __future__ import annotations

import http.client
from typing import Iterator, Protocol

import pyarrow as pa

from pyspark_theflash.errors import TheFlashError

ARROW_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # Arrow IPC end-of-stream marker: continuation, zero length


class StreamTruncatedError(TheFlashError):
    """A stream whose body ended before its Arrow end-of-stream marker: the service stopped,
    failed mid-stream or the connection was cut. The rows read so far are not the stream's rows;
    read the stream again (while its session lives it reads the same rows) or open a new session."""

    def __init__(self, session: str, stream: int, url: str, rows: int, why: str) -> None:
        super().__init__(
            f"theflash stream {stream} of read session {session} ({url}) broke off after {rows} rows, before the "
            f"Arrow end-of-stream marker ({why}): the service stopped, failed mid-stream (see its log) or the "
            "connection was cut; the read fails rather than return part of the table")
        self.session = session
        self.stream = stream
        self.url = url
        self.rows = rows


class Readable(Protocol):
    def read(self, amt: int | None = ..., /) -> bytes: ...


class _Body:
    """The HTTP body as pyarrow's reader sees it: reads of exactly the bytes asked for, short
    only where the body ends; remembers whether it ended and its last eight bytes."""

    closed = False

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self.ended = False
        self.tail = b""

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            data = self._raw.read()
            self.ended = True
        else:
            parts: list[bytes] = []
            got = 0
            while got < size:
                part = self._raw.read(size - got)
                if not part:
                    self.ended = True
                    break
                parts.append(part)
                got += len(part)
            data = b"".join(parts)
        self.tail = (self.tail + data)[-len(ARROW_EOS):]
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        """Nothing to do: the caller owns the HTTP response and closes it (pyarrow closes its
        source when the reader ends, which must not close the connection under the caller)."""


def read_stream_body(body: Readable, *, session: str, stream: int, url: str) -> Iterator[pa.RecordBatch]:
    """The record batches of a stream's body (an ``http.client.HTTPResponse`` with status 200,
    or any object with ``read(n)``), as they arrive. Raises :class:`StreamTruncatedError` when
    the body ends or breaks before Arrow's end-of-stream marker; ``url`` names the stream in it.
    Bytes after the marker are left unread."""
    source = _Body(body)
    rows = 0
    batches: Iterator[pa.RecordBatch] | None = None
    while True:
        try:
            if batches is None:
                batches = iter(pa.ipc.open_stream(source))
            batch = next(batches)
        except StopIteration:
            break
        except (http.client.HTTPException, OSError) as exc:  # the transport, or pyarrow short of a message's bytes
            raise StreamTruncatedError(session, stream, url, rows, _why(exc)) from exc
        except pa.ArrowException as exc:
            if source.ended:  # pyarrow's decoder tripping over the cut (inside the marker: a short length)
                raise StreamTruncatedError(session, stream, url, rows, _why(exc)) from exc
            raise
        rows += batch.num_rows
        yield batch
    # pyarrow stops at a zero message length, or quietly where the body ended at a message boundary
    if source.ended or source.tail != ARROW_EOS:
        raise StreamTruncatedError(session, stream, url, rows, "the body ended without it")


def _why(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name

