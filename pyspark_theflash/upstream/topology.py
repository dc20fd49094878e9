"""Which of the mini cluster's TiKV stores leads which region, and how PD and TiKV describe
regions and stores on the wire (``metapb``): shared by the stores' servers (tikv_stores.py),
their change feed (change_feed.py) and PD (cluster.py)."""
from __future__ import annotations

import threading

from pyspark_theflash.proto import metapb_pb2
from pyspark_theflash.upstream.client_calls import PessimisticLocks, RawKeyspace
from pyspark_theflash.upstream.pd import Region, encode_region_key

TIKV_VERSION = "8.5.0"  # what the stores report to PD: the newest LTS the wire matches


class Topology:
    """Which store leads which region. Region r starts on store ((r - 1) mod n) + 1."""

    def __init__(self, cluster: object, stores: int) -> None:
        if stores < 1:
            raise ValueError(f"a cluster needs at least one TiKV store, got {stores}")
        self.cluster = cluster
        self.store_ids = list(range(1, stores + 1))
        self.addresses: dict[int, str] = {}
        self._moved: dict[int, int] = {}
        self._mu = threading.Lock()
        # What the stores share beside the Percolator store (client_calls.py)
        self.pessimistic_locks = PessimisticLocks()
        self.raw_keyspace = RawKeyspace()

    def leader_store(self, region_id: int) -> int:
        with self._mu:
            return self._moved.get(region_id, (region_id - 1) % len(self.store_ids) + 1)

    def transfer_leader(self, region_id: int, store_id: int) -> None:
        if store_id not in self.store_ids:
            raise ValueError(f"no store {store_id}; stores are {self.store_ids}")
        with self._mu:
            self._moved[region_id] = store_id

    @staticmethod
    def peer(region_id: int, store_id: int) -> metapb_pb2.Peer:
        return metapb_pb2.Peer(id=region_id * 1000 + store_id, store_id=store_id)

    def meta_region(self, region: Region) -> metapb_pb2.Region:
        """A region as PD and TiKV describe it: encoded keys, epoch, its one peer."""
        return metapb_pb2.Region(
            id=region.id, start_key=encode_region_key(region.start), end_key=encode_region_key(region.end),
            region_epoch=metapb_pb2.RegionEpoch(conf_ver=region.conf_version, version=region.version),
            peers=[self.peer(region.id, self.leader_store(region.id))])

    def meta_store(self, store_id: int) -> metapb_pb2.Store:
        return metapb_pb2.Store(id=store_id, address=self.addresses.get(store_id, ""), state=metapb_pb2.Up,
                                version=TIKV_VERSION, node_state=metapb_pb2.Serving)
