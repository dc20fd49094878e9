"""One change-data stream to one TiKV store: the one owner of that connection.

Capture opens one stream per store (TiKV's CDC ``Service`` serves every region of a store over
one connection) and registers each of the store's regions on it. The stream runs
``EventFeedV2`` with stream multiplexing where the store has it (TiKV 7.5+, probed as TiCDC's
``sharedconn`` probes it), else ``EventFeed``; each registration has its own request id either
way. Its thread sends the queued registrations and turns each ``ChangeDataEvent`` into columns
(capture/feed_columns.py: the C decode lets the GIL go, so it runs beside the main loop), handed
to the main loop as a ``StreamMessage``; a broken stream is a ``StreamDown``.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator, Protocol

import grpc

from pyspark_theflash.capture import feed_columns
from pyspark_theflash.capture.tasks import StreamDown, StreamMessage, Task
from pyspark_theflash.proto import cdcpb_pb2, cdcpb_pb2_grpc
from pyspark_theflash.upstream_client.channels import upstream_channel

_MULTIPLEXING = (("features", "stream-multiplexing"),)


def _has_stream_multiplexing(stub: cdcpb_pb2_grpc.ChangeDataStub) -> bool:
    """Whether the store serves ``EventFeedV2`` with stream multiplexing, probed as TiCDC
    probes it (tiflow ``cdc/kv/sharedconn``): open the stream with the ``features`` header and
    close the sending side at once; a stream that then ends cleanly has it, ``UNIMPLEMENTED``
    (a TiKV before 7.5 has no ``EventFeedV2``; a newer one refuses a feature it does not know)
    means ``EventFeed``. Any other error is the store's, raised as a broken stream."""
    try:
        for _ in stub.EventFeedV2(iter(()), metadata=_MULTIPLEXING, timeout=10):
            pass
        return True
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            return False
        raise


class _ChangeDataCall(Protocol):
    """A running ``EventFeed``/``EventFeedV2`` call, as the stream uses it (grpc ships no types):
    the responses' wire bytes (no deserializer), and cancel."""

    def __iter__(self) -> Iterator[bytes]: ...

    def cancel(self) -> bool: ...


class StoreStream:
    """One change-data stream to one TiKV store (``EventFeedV2`` with stream multiplexing where
    the store has it, else ``EventFeed``); its responses go to ``inbound`` tagged with (store
    id, stream generation), a broken stream as a ``stream_down`` item. Each registration has its
    own request id either way, so a batched resolved ts names its registration on a
    multiplexed stream and carries request id 0 on the other."""

    def __init__(self, store_id: int, address: str, gen: int, inbound: queue.Queue[Task]) -> None:
        self.store_id, self.address, self.gen = store_id, address, gen
        self.method = ""  # the RPC the stream runs, once it is open
        # requests to send, as their wire bytes (None: the end): 100,000 registrations queued at
        # once take a few dozen bytes each so, a protobuf message's arena each otherwise
        self._requests: queue.Queue[bytes | None] = queue.Queue()
        self._inbound = inbound
        self._channel = upstream_channel(address, ("grpc.max_receive_message_length", 256 << 20))
        self._call: _ChangeDataCall | None = None
        self._thread = threading.Thread(target=self._run, name=f"capture-store-{store_id}", daemon=True)
        self._thread.start()

    def send(self, request: cdcpb_pb2.ChangeDataRequest) -> None:
        self._requests.put(request.SerializeToString())

    def _run(self) -> None:
        try:
            stub = cdcpb_pb2_grpc.ChangeDataStub(self._channel)
            multiplexed = _has_stream_multiplexing(stub)
            self.method = "EventFeedV2" if multiplexed else "EventFeed"
            # The responses' wire bytes, decoded into columns here, on the stream's own thread:
            # the C decode releases the GIL, so it runs beside the main loop's matching and
            # writing instead of taking a third of its time (capture/feed_columns.py).
            raw = self._channel.stream_stream(f"/cdcpb.ChangeData/{self.method}", request_serializer=None,
                                              response_deserializer=None)
            self._call = raw(iter(self._requests.get, None), metadata=_MULTIPLEXING if multiplexed else None)
            for resp in self._call:
                self._inbound.put(StreamMessage(self.store_id, self.gen, feed_columns.decode_change_data(resp)))
            reason = "the store ended the stream"
        except grpc.RpcError as exc:
            reason = f"{exc.code().name}: {exc.details()}"
        except ValueError as exc:  # a message that is not a ChangeDataEvent: the stream is not to be trusted
            reason = str(exc)
        except Exception as exc:  # pragma: no cover - reported like a broken stream
            reason = repr(exc)
        self._inbound.put(StreamDown(self.store_id, self.gen, reason))

    def close(self) -> None:
        self._requests.put(None)
        if self._call is not None:
            self._call.cancel()
        self._channel.close()
