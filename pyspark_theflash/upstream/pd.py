"""PD's region map and GC safe point.

Regions are kept with raw-key boundaries (b"" = unbounded) because the memcomparable
region-key form preserves order: comparing raw keys is comparing PD's encoded keys. The
encoded form appears only where a region leaves the cluster (``to_proto``), as PD serves it.
Region ids and epochs follow TiKV: region 1 covers everything at bootstrap, a split bumps
the epoch version of every resulting region, a merge bumps the target's past both.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

from pyspark_theflash.codec import encode_region_key as _encode_region_key
from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.upstream_client.client import RAFT_INIT_LOG_INDEX
from pyspark_theflash.upstream_client.errors import RegionError, RegionNotFoundError



def encode_region_key(raw: bytes) -> bytes:
    """PD's boundary form of a raw key; empty stays empty (unbounded)."""
    return bytes(_encode_region_key(raw)) if raw else b""


@dataclass
class Region:
    id: int
    start: bytes  # raw, inclusive; b"" = -inf
    end: bytes  # raw, exclusive; b"" = +inf
    version: int = 1
    conf_version: int = 1
    index: int = RAFT_INIT_LOG_INDEX  # last raft index
    resolved_ts: int = 0  # last resolved_ts emitted

    def contains(self, key: bytes) -> bool:
        return key >= self.start and (not self.end or key < self.end)

    def epoch_proto(self) -> binlog_pb2.RegionEpoch:
        return binlog_pb2.RegionEpoch(version=self.version, conf_version=self.conf_version)

    def to_proto(self) -> binlog_pb2.Region:
        return binlog_pb2.Region(
            id=self.id,
            start_key=encode_region_key(self.start),
            end_key=encode_region_key(self.end),
            epoch=self.epoch_proto(),
        )


class RegionMap:
    """Sorted, gap-free list of regions. Not thread-safe on its own: the cluster serialises
    every change of it with the store lock, so region changes and data changes interleave in
    one order."""

    def __init__(self, regions: list[Region] | None = None, next_id: int = 2) -> None:
        self._regions: list[Region] = regions or [Region(id=1, start=b"", end=b"")]
        self._regions.sort(key=lambda r: r.start)
        self._starts = [r.start for r in self._regions]
        self.next_id = max(next_id, max(r.id for r in self._regions) + 1)

    def all(self) -> list[Region]:
        return list(self._regions)

    def get(self, region_id: int) -> Region:
        for r in self._regions:
            if r.id == region_id:
                return r
        raise RegionNotFoundError(region_id)

    def locate(self, key: bytes) -> Region:
        return self._regions[bisect.bisect_right(self._starts, key) - 1]

    def group(self, keys: list[bytes]) -> dict[int, list[bytes]]:
        """Keys grouped by region id, each group in the given order."""
        out: dict[int, list[bytes]] = {}
        for k in keys:
            out.setdefault(self.locate(k).id, []).append(k)
        return out

    def split(self, region_id: int, split_key: bytes) -> tuple[Region, Region]:
        """Split at a raw key: the region keeps [start, split_key), a new one takes
        [split_key, end). Both epochs' versions are bumped."""
        region = self.get(region_id)
        if split_key <= region.start or not region.contains(split_key):
            raise RegionError(
                f"split key {split_key.hex()} is not strictly inside region {region_id} "
                f"[{region.start.hex()}, {region.end.hex() or '+inf'}); pick a key inside it"
            )
        region.version += 1
        right = Region(
            id=self.next_id, start=split_key, end=region.end, version=region.version,
            conf_version=region.conf_version,
        )
        self.next_id += 1
        region.end = split_key
        pos = self._regions.index(region) + 1
        self._regions.insert(pos, right)
        self._starts.insert(pos, right.start)
        return region, right

    def merge(self, source_id: int, target_id: int) -> tuple[Region, Region]:
        """Merge ``source`` into the adjacent ``target``; returns (source, target) after it.
        The source is gone from the map; the target spans both ranges."""
        source, target = self.get(source_id), self.get(target_id)
        if source.end == target.start and source.end:
            target.start = source.start
        elif target.end == source.start and target.end:
            target.end = source.end
        else:
            raise RegionError(
                f"regions {source_id} and {target_id} are not adjacent; merge only neighbours"
            )
        source.version += 1
        target.version = max(source.version, target.version) + 1
        pos = self._regions.index(source)
        del self._regions[pos]
        del self._starts[pos]
        self._starts[self._regions.index(target)] = target.start
        return source, target


class GCSafePoint:
    """The cluster's GC safe point: only moves forward."""

    def __init__(self, value: int = 0) -> None:
        self.value = value

    def advance(self, ts: int) -> int:
        """Move to ``ts`` if it is newer; returns the safe point after the call."""
        if ts > self.value:
            self.value = ts
        return self.value
