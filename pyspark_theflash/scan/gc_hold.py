"""Read leases held against a TiDB cluster's GC: a PD service safe point per store.

A read lease pins a snapshot ts in the store (its parts, against the store's compaction and
GC). A read of a replica fed from a TiDB cluster also needs the cluster's versions at ts —
the lock resolver asks TiKV about transactions at or below ts — so while any lease of the
store lives, PD holds a service safe point (``theflash-reader-<digest of the store path>``)
at the least ts of the store's live leases, with a TTL of twice the lease TTL: a Spark job
that reads for longer than TiDB's GC life time never meets versions TiDB collected under it.
PD ignores a service safe point below its least one (no error; ``update`` says what it held).
"""
from __future__ import annotations

import hashlib
import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark_theflash.latch import Latch
    from pyspark_theflash.upstream_client.tidb_cluster import TiDBClusterClient

log = logging.getLogger(__name__)

_clients: dict[str, TiDBClusterClient] = {}
_mu = threading.Lock()


def service_id(store: str) -> str:
    import os

    return "theflash-reader-" + hashlib.sha1(os.path.realpath(store).encode()).hexdigest()[:12]


def _client(address: str) -> TiDBClusterClient:
    """One PD client per ``pd://`` address for the process's lease keepers (leases outlive a
    plan's own upstream connection)."""
    with _mu:
        client = _clients.get(address)
        if client is None:
            from pyspark_theflash.upstream_client.tidb_cluster import TiDBClusterClient

            client = _clients[address] = TiDBClusterClient(address)
        return client


class ServiceSafePointHold:
    """``update()`` sets the store's service safe point at the least ts of its live leases."""

    def __init__(self, address: str, store: str, latch: Latch, ttl_s: float) -> None:
        self.address, self.store, self.latch = address, store, latch
        self.ttl_s = max(1, int(round(ttl_s * 2)))
        self.held = 0

    def update(self) -> int:
        leases = [int(lease.ts) for lease in self.latch.leases()]
        if not leases:
            return self.held
        least = min(leases)
        try:
            pd_least = _client(self.address).update_service_safe_point(service_id(self.store), self.ttl_s, least)
        except Exception as exc:  # the lease itself still pins the store; PD's hold is retried next renewal
            log.warning("holding PD's service safe point at %s for %s failed: %s", least, self.store, exc)
            return self.held
        self.held = least if pd_least <= least else pd_least
        return self.held
