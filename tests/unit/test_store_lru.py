"""The per-process caches of part-file data keep at most their capacity in bytes, least
recently used out first."""
from __future__ import annotations

from pyspark_theflash.store.lru import BytesLRU


def test_least_recently_used_values_go_once_the_bytes_exceed_the_capacity() -> None:
    loads: list[str] = []

    def loader(key: str, size: int):
        def load() -> tuple[str, int]:
            loads.append(key)
            return key.upper(), size
        return load

    cache: BytesLRU[str] = BytesLRU(10)
    assert cache.get("a", loader("a", 4)) == "A"
    assert cache.get("b", loader("b", 4)) == "B"
    assert cache.get("a", loader("a", 4)) == "A"  # a hit: a is now the most recent
    assert cache.get("c", loader("c", 4)) == "C"  # 12 bytes: b, the least recent, goes
    assert len(cache) == 2
    assert cache.get("a", loader("a", 4)) == "A" and cache.get("c", loader("c", 4)) == "C"
    assert cache.get("b", loader("b", 4)) == "B"
    assert loads == ["a", "b", "c", "b"]
    assert cache.get("huge", loader("huge", 11)) == "HUGE"  # bigger than the cache: given, not kept
    assert cache.get("huge", loader("huge", 11)) == "HUGE"
    assert loads[-2:] == ["huge", "huge"] and len(cache) == 2
