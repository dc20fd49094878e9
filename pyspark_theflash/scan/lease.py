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
import weakref
from typing import Any

from pyspark_theflash.latch import Latch, LeaseNotFoundError

log = logging.getLogger(__name__)


def default_holder(what: str) -> str:
    return f"{what}@{socket.gethostname()}:{os.getpid()}"


class ReadLease:
    """A lease at ``ts`` with a renewing thread. ``owner`` (optional): renew only while it lives."""

    def __init__(self, latch: Latch, ts: int, ttl_s: float, holder: str, owner: Any = None,
                 upstream_hold: Any = None) -> None:
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


def _keep_alive(lease_ref: "weakref.ref[ReadLease]", owner_ref: "weakref.ref[Any] | None",
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
