"""Which logical table a partition's rows belong to, for ``theflash capture``.

TiDB writes the rows of a partitioned table under each partition's physical id
(``t{partition id}_r{handle}``); the logical table's id holds none. Capture selects rows by
table (``--tables``), so it keeps the map physical id -> logical table id from the table JSON's
``partition.definitions``, and renews a table's entry at every DDL of it: ADD, DROP, TRUNCATE,
EXCHANGE and REORGANIZE PARTITION each give the table info with its partitions' ids after the
change. (The store does the same from the same DDL events: ``schema.partitioning``.)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from pyspark_theflash.schema.info_json import TableInfoJson


class PartitionMap:
    """physical id -> logical table id, per partitioned table."""

    def __init__(self, state: Mapping[str, int] | None = None) -> None:
        self._of: dict[int, int] = {int(k): int(v) for k, v in (state or {}).items()}

    def learn(self, info: "TableInfoJson") -> None:
        """A table info (after a DDL, or as the status port serves it): its partitions now."""
        logical = int(info["id"])
        self.forget(logical)
        for d in (info.get("partition") or {}).get("definitions") or ():
            self._of[int(d["id"])] = logical

    def forget(self, logical: int) -> None:
        """The table is dropped (or re-learned): its partitions' ids no longer map to it."""
        for pid in [p for p, t in self._of.items() if t == logical]:
            del self._of[pid]

    def logical(self, table_id: int) -> int:
        """The table whose rows carry ``table_id``: a partition's logical table, else itself."""
        return self._of.get(int(table_id), int(table_id))

    def state(self) -> dict[str, int]:
        return {str(k): v for k, v in sorted(self._of.items())}
