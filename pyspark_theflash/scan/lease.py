"""A query's read lease, kept alive by a daemon thread while its owner lives.

The latch service pins the snapshot ts (and the parts a plan lists) against GC and file
deletion for the lease's TTL. A :class:`ReadLease` renews it every third of the TTL from a
daemon thread that holds its owner only weakly, so the renewals stop when the plan is closed
or garbage collected, and the lease then expires on its own — as it does when the driver dies.
A renewal that comes late (a stalled process) still succeeds while the store has deleted none
of the files the lease pinned; the store keeps removed files ``removed_file_retention_s`` past
their last pin for that.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING

from pyspark_theflash.engine.partition import ScanPartition
from pyspark_theflash.latch import Latch, LeaseNotFoundError, LeaseRefusedError
from pyspark_theflash.latch import connect as connect_latch
from pyspark_theflash.scan.errors import SnapshotExpiredError

if TYPE_CHECKING:
    from pyspark_theflash.scan.gc_hold import ServiceSafePointHold

log = logging.getLogger(__name__)


def default_holder(what: str) -> str:
    return f"{what}@{socket.gethostname()}:{os.getpid()}"


class ReadLease:
    """A lease at ``ts`` with a renewing thread. ``owner`` (optional): renew only while it lives."""

    def __init__(self, latch: Latch, ts: int, ttl_s: float, holder: str, owner: object = None,
                 upstream_hold: ServiceSafePointHold | None = None) -> None:
        self.latch = latch
        self.ts = ts
        self.ttl_s = ttl_s
        # ``upstream_hold.update()`` after taking and each renewal: a PD service safe point at
        # the store's least lease ts (scan/gc_hold.py), for reads of a TiDB cluster's replica
        self.upstream_hold = upstream_hold
        lease = latch.acquire_lease(ts, ttl_s, holder)
        self.lease_id = int(lease.lease_id)
        self.expires_at = float(lease.expires_at)
        self._stop = threading.Event()
        owner_ref = weakref.ref(owner) if owner is not None else None
        self._thread = threading.Thread(
            target=_keep_alive, args=(weakref.ref(self), owner_ref, self._stop, ttl_s),
            name=f"theflash-lease-{self.lease_id}", daemon=True,
        )
        if upstream_hold is not None:
            upstream_hold.update()
        self._thread.start()

    def renew(self, late_ok: bool = False) -> None:
        """Extend the lease; ``late_ok``: also when it expired but nothing it pinned is gone."""
        lease = self.latch.renew_lease(self.lease_id, self.ttl_s, late_ok=late_ok)
        self.expires_at = float(lease.expires_at)
        if self.upstream_hold is not None:
            self.upstream_hold.update()

    def release(self) -> None:
        """Stop renewing and drop the lease (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        try:
            self.latch.release_lease(self.lease_id)
        except Exception as exc:  # the lease expires by itself; a failed release is harmless
            log.warning("releasing read lease %s failed: %s", self.lease_id, exc)

    def detach(self) -> None:
        """Stop renewing but keep the lease: it lives on for its TTL (or as long as the
        partition readers renew it)."""
        self._stop.set()

    @property
    def alive(self) -> bool:
        return not self._stop.is_set()

    def __enter__(self) -> "ReadLease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _keep_alive(lease_ref: "weakref.ref[ReadLease]", owner_ref: "weakref.ref[object] | None",
                stop: threading.Event, ttl_s: float) -> None:
    interval = max(0.05, ttl_s / 3.0)
    while not stop.wait(interval):
        lease = lease_ref()
        if lease is None or (owner_ref is not None and owner_ref() is None):
            return
        try:
            # A renewal this thread makes late (the process stalled: GC pauses, a loaded machine)
            # still holds the snapshot while the store has deleted none of its files.
            lease.renew(late_ok=True)
        except LeaseNotFoundError:
            log.warning("read lease %s at ts %s expired before renewal and the store has since deleted "
                        "files it pinned", lease.lease_id, lease.ts)
            return
        except Exception as exc:  # a latch hiccup: try again next interval, the TTL covers it
            log.warning("renewing read lease %s failed: %s", lease.lease_id, exc)
        finally:
            del lease


# -- a planned partition's lease, renewed by its reader (an executor, a service thread) ------------
# One latch handle per (store, address) per process, for the MAX_LATCHES stores read last:
# executors read many partitions of a few stores. A process reading many stores (a service of
# any store, a long test run) let every store's handle, and its SQLite connections, live as long
# as the process; the least recently used is now let go (not closed: a reader may be renewing
# through it; its connections close once no one holds it).
MAX_LATCHES = 16
_LATCHES: OrderedDict[tuple[str, str | None], Latch] = OrderedDict()
_LATCHES_MU = threading.Lock()


def _latch(p: ScanPartition) -> Latch:
    key = (p.store, p.latch)
    with _LATCHES_MU:
        handle = _LATCHES.get(key)
        if handle is not None:
            _LATCHES.move_to_end(key)
            return handle
        handle = _LATCHES[key] = connect_latch(p.store, p.latch)
        while len(_LATCHES) > MAX_LATCHES:
            _LATCHES.popitem(last=False)
        return handle


class LeaseKeeper:
    """Renews a planned partition's lease at most every third of its TTL while batches flow;
    a lease that expired is taken again at the same ts (``replaced``), refused with
    ``SnapshotExpiredError`` when GC has passed ts since. Every engine's partition reader is
    handed one (``engine.partition.LeaseRenewal``)."""

    def __init__(self, p: ScanPartition) -> None:
        self.p = p
        self.lease_id = p.lease_id
        self.renewed_at = 0.0
        self.replaced = False

    def touch(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.renewed_at < self.p.lease_ttl_s / 3.0:
            return
        latch = _latch(self.p)
        if self.lease_id is not None:
            try:
                latch.renew_lease(self.lease_id, self.p.lease_ttl_s, late_ok=True)
                self.renewed_at = now
                return
            except LeaseNotFoundError:
                pass  # its lease is gone (expired, or GC took it): acquire a new one at the same ts below
        try:
            lease = latch.acquire_lease(self.p.lease_ts, self.p.lease_ttl_s, default_holder(f"scan {self.p.table} (re-pinned)"))
        except LeaseRefusedError as exc:
            raise SnapshotExpiredError(
                f"reading {self.p.table} at ts {self.p.ts}: the query's read lease expired and the store has "
                f"garbage-collected past ts since ({exc}); re-run the query (load the DataFrame again) for a "
                "fresh snapshot, or raise the option lease_ttl"
            ) from exc
        self.lease_id = int(lease.lease_id)
        self.renewed_at = now
        self.replaced = True
