"""The latch service: read leases, the single-writer latch, flush requests and runtime
settings behave the same in-process and over gRPC (a `theflash latch serve` process)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from pyspark_theflash import latch as latch_mod
from pyspark_theflash.latch import (
    FlushTimeoutError,
    Latch,
    LeaseNotFoundError,
    LeaseRefusedError,
    WriteLatchHeldError,
    WriteLatchLostError,
)



from polling import wait_for


class LatchServer:
    """`theflash latch serve --store DIR` in its own process."""

    def __init__(self, store: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyspark_theflash", "latch", "serve", "--store", str(store), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        match = re.search(r"grpc://127\.0\.0\.1:\d+", line)
        if not match:
            self.proc.kill()
            raise AssertionError(f"latch server did not start: {line!r} {self.proc.stderr.read()}")  # type: ignore[union-attr]
        self.address = match.group(0)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)


@pytest.fixture(params=["local", "grpc"])
def open_latch(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Latch]]:
    """A factory of latch handles on one fresh store directory: in-process, or gRPC clients of a
    latch server on loopback (in this process here: `theflash latch serve` as a separate process
    is covered by test_latch_serve_process_answers_like_the_in_process_latch)."""
    from pyspark_theflash.latch.remote import serve

    handles: list[Latch] = []
    store = tmp_path / "store"
    store.mkdir()
    server = None
    if request.param == "grpc":
        server, port, served = serve(str(store))

    def make() -> Latch:
        handle = latch_mod.connect(store, f"grpc://127.0.0.1:{port}" if server else None)
        handles.append(handle)
        return handle

    make.store = store  # type: ignore[attr-defined]
    yield make
    for handle in handles:
        handle.close()
    if server is not None:
        server.stop(0).wait()
        served.close()


def test_second_writer_is_refused_with_a_message_naming_the_holder(open_latch: Callable[[], Latch]) -> None:
    first, second = open_latch(), open_latch()
    held = first.acquire_write_latch("writer-a", ttl_s=30, host="hostA", pid=4242)
    with pytest.raises(WriteLatchHeldError) as refused:
        second.acquire_write_latch("writer-b", ttl_s=30)
    message = str(refused.value)
    assert "writer-a" in message and "hostA" in message and "pid 4242" in message and "since" in message
    holder = second.holder()
    assert holder is not None and (holder.name, holder.host, holder.pid, holder.token) == ("writer-a", "hostA", 4242, held.token)


def test_dead_writer_latch_is_taken_over_after_its_ttl_and_the_old_token_is_fenced(open_latch: Callable[[], Latch]) -> None:
    first, second = open_latch(), open_latch()
    # A live process on another host: only the TTL can free its latch.
    old = first.acquire_write_latch("stuck", ttl_s=0.3, host="other-host", pid=1)
    with pytest.raises(WriteLatchHeldError):
        second.acquire_write_latch("new", ttl_s=30)
    new = wait_for(lambda: _try_acquire(second, "new"), what="takeover after TTL")
    assert new.token > old.token and second.holder().name == "new"  # type: ignore[union-attr]
    with pytest.raises(WriteLatchLostError, match="new"):
        first.renew(old.token, ttl_s=30)


def test_renewed_latch_outlives_its_ttl_and_release_frees_it(open_latch: Callable[[], Latch]) -> None:
    first, second = open_latch(), open_latch()
    # (a TTL of 1 s renewed every 0.1 s: a busy machine's stall of a few hundred ms between two
    # renewals let a 0.3 s TTL lapse, and the intruder took the latch)
    held = first.acquire_write_latch("live", ttl_s=1.0, host="other-host", pid=1)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:  # renewing keeps it held three TTLs long
        first.renew(held.token, ttl_s=1.0)
        with pytest.raises(WriteLatchHeldError):
            second.acquire_write_latch("intruder", ttl_s=5)
        time.sleep(0.1)
    first.release(held.token)
    assert first.holder() is None
    assert second.acquire_write_latch("next", ttl_s=5).token == held.token + 1


def test_latch_of_a_killed_process_on_this_host_is_free_at_once(open_latch: Callable[[], Latch]) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    first, second = open_latch(), open_latch()
    first.acquire_write_latch("killed", ttl_s=60, pid=dead.pid)
    assert second.acquire_write_latch("restarted", ttl_s=60).name == "restarted"


def _try_acquire(latch: Latch, name: str):
    try:
        return latch.acquire_write_latch(name, ttl_s=30)
    except WriteLatchHeldError:
        return None


def test_flush_request_round_trip_returns_the_applied_index_per_region(open_latch: Callable[[], Latch]) -> None:
    reader, writer = open_latch(), open_latch()
    rid = reader.request_flush([3, 7], read_index={7: 12})
    pending = writer.pending_flushes()
    assert [(p.request_id, p.region_ids, p.read_index) for p in pending] == [(rid, (3, 7), {7: 12})]
    answered: dict[int, int] = {}
    waiter = threading.Thread(target=lambda: answered.update(reader.wait_flush(rid, timeout_s=10)))
    waiter.start()
    writer.complete_flush(rid, {3: 5, 7: 12})
    waiter.join(15)
    assert answered == {3: 5, 7: 12}
    assert writer.pending_flushes() == []
    assert reader.wait_flush(rid, timeout_s=0.1) == {3: 5, 7: 12}  # a late waiter still gets the answer


def test_unanswered_flush_request_times_out_naming_its_regions(open_latch: Callable[[], Latch]) -> None:
    reader = open_latch()
    rid = reader.request_flush([11, 12])
    with pytest.raises(FlushTimeoutError) as timeout:
        reader.wait_flush(rid, timeout_s=0.2)
    assert "[11, 12]" in str(timeout.value) and "no writer holds the write latch" in str(timeout.value)


def test_writer_interval_set_at_runtime_is_seen_by_every_handle(open_latch: Callable[[], Latch]) -> None:
    admin, writer = open_latch(), open_latch()
    assert writer.writer_interval() is None
    admin.set_writer_interval(0.2)
    assert writer.writer_interval() == 0.2
    with pytest.raises(ValueError):
        admin.set_writer_interval(0)
    assert writer.writer_interval() == 0.2


def test_a_runtime_interval_lasts_until_its_writer_stops_unless_persisted(open_latch: Callable[[], Latch]) -> None:
    writer, admin = open_latch(), open_latch()
    first = writer.acquire_write_latch("first")
    admin.set_writer_interval(1.0)
    assert writer.writer_interval() == 1.0
    writer.release(first.token)
    second = writer.acquire_write_latch("second")  # a restart: its own --interval applies again
    assert writer.writer_interval() is None
    admin.set_writer_interval(0.5, persist=True)
    admin.set_writer_interval(2.0)  # a runtime change wins over the persisted value while it lasts
    assert writer.writer_interval() == 2.0
    writer.release(second.token)
    writer.acquire_write_latch("third")
    assert writer.writer_interval() == 0.5


def test_status_reports_holder_interval_pending_flushes_and_writer_progress(open_latch: Callable[[], Latch]) -> None:
    admin, writer = open_latch(), open_latch()
    held = writer.acquire_write_latch("w", ttl_s=30)
    writer.publish_writer_status(held.token, {"position": [0, 128], "rows_per_s": 5.0})
    admin.set_writer_interval(1.5)
    rid = admin.request_flush([1])
    status = admin.status()
    assert status["writer"]["name"] == "w" and status["writer"]["pid"] == os.getpid()
    assert status["writer_interval_s"] == 1.5
    assert status["pending_flushes"] == [rid]
    assert status["writer_status"]["position"] == [0, 128] and status["writer_status"]["token"] == held.token


def _store_safe_point(store: object) -> int:
    with store.snapshot() as view:  # type: ignore[attr-defined]
        return int(view.gc_safe_point())


def test_lease_holds_gc_back_until_it_expires(open_latch: Callable[[], Latch]) -> None:
    from pyspark_theflash.store import Store

    reader = open_latch()
    with Store.open(open_latch.store) as store:  # type: ignore[attr-defined]
        lease = reader.acquire_lease(1_000, ttl_s=0.5, holder="reader-1")
        assert [(x.lease_id, x.ts, x.holder) for x in reader.leases()] == [(lease.lease_id, 1_000, "reader-1")]
        store.gc(5_000)
        assert _store_safe_point(store) <= 1_000  # GC stopped at the oldest live lease
        wait_for(lambda: not reader.leases(), what="the lease to expire")
        with pytest.raises(LeaseNotFoundError):
            reader.renew_lease(lease.lease_id, ttl_s=5)
        store.gc(5_000)
        assert _store_safe_point(store) == 5_000  # an expired lease no longer holds GC back


def test_lease_below_the_safe_point_is_refused_with_the_allowed_range(open_latch: Callable[[], Latch]) -> None:
    from pyspark_theflash.store import Store

    reader = open_latch()
    with Store.open(open_latch.store) as store:  # type: ignore[attr-defined]
        store.gc(7_000)
        with pytest.raises(LeaseRefusedError) as refused:
            reader.acquire_lease(6_999, ttl_s=5)
        assert "6999" in str(refused.value) and "ts >= 7000" in str(refused.value)
        kept = reader.acquire_lease(7_000, ttl_s=5)
        assert reader.renew_lease(kept.lease_id, ttl_s=30).expires_at > kept.expires_at
        reader.release_lease(kept.lease_id)
        assert reader.leases() == []


def test_latch_serve_process_answers_like_the_in_process_latch(tmp_path: Path) -> None:
    """`theflash latch serve` in its own process: what one side writes the other reads, and the
    same errors come back typed."""
    from pyspark_theflash.store import Store

    store = tmp_path / "store"
    Store.open(store).close()
    server = LatchServer(store)
    try:
        with latch_mod.connect(store, server.address) as remote, latch_mod.connect(store) as local:
            held = remote.acquire_write_latch("remote-writer", ttl_s=30)
            with pytest.raises(WriteLatchHeldError, match="remote-writer"):
                local.acquire_write_latch("local-writer", ttl_s=30)
            lease = local.acquire_lease(10, ttl_s=30, holder="q")
            assert [x.lease_id for x in remote.leases()] == [lease.lease_id]
            remote.set_writer_interval(0.3)
            assert local.writer_interval() == 0.3
            rid = remote.request_flush([5], {5: 9})
            assert [p.request_id for p in local.pending_flushes()] == [rid]
            local.complete_flush(rid, {5: 9})
            assert remote.wait_flush(rid, timeout_s=5) == {5: 9}
            with pytest.raises(FlushTimeoutError, match=r"\[6\]"):
                remote.wait_flush(remote.request_flush([6]), timeout_s=0.1)
            assert remote.status()["writer"]["token"] == held.token == local.status()["writer"]["token"]
            remote.release(held.token)
            assert local.holder() is None
    finally:
        assert server.stop() == 0
