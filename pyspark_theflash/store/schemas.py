"""The schema versions of the store's tables, in commit ts order: which version a row
committed at ts decodes with, which table a name means at a ts, and which columns a part
must keep while some readable ts still needs them.

A table id's versions come from the binlog's DDL events (exact commit ts) or, for a store
that starts mid-stream, from the upstream's schema endpoint (in force from the table info's
``update_timestamp``, or since ever when it has none). A row committed at ts decodes with the
newest version whose commit ts is <= ts; a row older than every known version with the oldest
(the best a replica that never saw those DDLs can do: dropped columns are skipped, widened
ones still read). Versions of one commit ts are ordered by schema version.

A table id lives from ``created_ts`` (its CREATE TABLE or TRUNCATE; 0 when the store never
saw it) until ``retired_ts`` (DROP TABLE or TRUNCATE; None while live). A name means the
live table with that name (at a ts: the table live then whose version then had that name).
See docs/schema.md.
"""
from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa

from pyspark_theflash.schema import ColumnInfo, TableInfo
from pyspark_theflash.store.txn_merge_tree import COMMIT_TS, DELMARK, ROWID


@dataclass
class TableHistory:
    """Every known version of one table id, ordered by (commit ts, schema version)."""

    table_id: int
    db: str = ""
    created_ts: int = 0
    retired_ts: int | None = None
    retired_reason: str = ""
    _keys: list[tuple[int, int]] = field(default_factory=list)  # (commit_ts, schema_version)
    _infos: list[TableInfo] = field(default_factory=list)
    _ts: np.ndarray | None = None

    def add(self, info: TableInfo, commit_ts: int) -> bool:
        """Add (or re-time) a version; False when it was known at this commit ts already."""
        for i, (ts, version) in enumerate(self._keys):
            if version == info.schema_version:
                if ts == commit_ts:
                    return False
                del self._keys[i], self._infos[i]  # a DDL event's exact ts replaces an estimate
                break
        key = (int(commit_ts), int(info.schema_version))
        i = bisect.bisect_right(self._keys, key)
        self._keys.insert(i, key)
        self._infos.insert(i, info)
        self._ts = None
        if info.db:
            self.db = info.db
        return True

    def __len__(self) -> int:
        return len(self._infos)

    @property
    def infos(self) -> list[TableInfo]:
        return list(self._infos)

    @property
    def commit_ts(self) -> list[int]:
        return [ts for ts, _v in self._keys]

    @property
    def latest(self) -> TableInfo:
        """The version with the highest schema version (what a name means now)."""
        return max(self._infos, key=lambda t: t.schema_version)

    def has(self, schema_version: int, commit_ts: int) -> bool:
        """Is this version known, in force from exactly this commit ts?"""
        return (int(commit_ts), int(schema_version)) in self._keys

    def by_version(self, schema_version: int) -> TableInfo | None:
        for info in self._infos:
            if info.schema_version == schema_version:
                return info
        return None

    def index_at(self, commit_ts: np.ndarray) -> np.ndarray:
        """Per row committed at ``commit_ts``: the index (into ``infos``) of the version it
        decodes with (vectorised: one searchsorted)."""
        if self._ts is None:
            self._ts = np.array([ts for ts, _v in self._keys], dtype=np.uint64)
        return np.maximum(np.searchsorted(self._ts, commit_ts.astype(np.uint64), side="right") - 1, 0)

    def at(self, ts: int) -> TableInfo:
        """The version in force at ``ts`` (the oldest known one for a ts before all)."""
        i = bisect.bisect_right(self._keys, (int(ts), 1 << 62)) - 1
        return self._infos[max(i, 0)]

    def lives_at(self, ts: int) -> bool:
        return self.created_ts <= ts and (self.retired_ts is None or ts < self.retired_ts)

    @property
    def live(self) -> bool:
        return self.retired_ts is None

    def column_ids(self) -> set[int]:
        """Ids of every column any known version has (public or not)."""
        return {c.id for info in self._infos for c in info.all_columns}

    def readable_columns(self, safe_point: int) -> list[ColumnInfo]:
        """The columns a read at a ts >= ``safe_point`` can ask for under some version in
        force then: the latest version's public columns, then those only older versions
        still readable have (dropped, or replaced by a reorg), each as its newest version
        typed it, renamed ``_col_<id>`` (their names may be taken by now)."""
        latest = self.latest
        have = {c.id for c in latest.columns}
        extra: dict[int, ColumnInfo] = {}
        for (ts, _v), info in zip(self._keys, self._infos):
            if info is not latest and (ts > safe_point or info is self.at(safe_point)):
                for c in info.columns:
                    if c.id not in have:
                        extra[c.id] = c  # later versions come later: the newest type wins
        offset = len(latest.all_columns)
        renamed = [dataclasses.replace(c, name=f"_col_{c.id}", offset=offset + i, raw={})
                   for i, c in enumerate(extra[cid] for cid in sorted(extra))]
        return list(latest.columns) + renamed


def resolve_name(histories: Iterable[TableHistory], name: str, ts: int | None = None) -> list[TableHistory]:
    """The tables ``name`` (``db.table`` or ``table``) means: live ones now (``ts`` None) or at
    ``ts``, best first (a store that missed a DROP may hold two live tables of one name: the one
    changed last is the current one)."""
    want = name.lower()

    def named(info: TableInfo) -> bool:
        if info.partition_of is not None:
            return False  # one partition's rows: the logical table has the name
        return f"{info.db}.{info.name}".lower() == want or ("." not in want and info.name.lower() == want)

    if ts is None:
        found = [h for h in histories if h.live and named(h.latest)]
        return sorted(found, key=lambda h: (h.latest.schema_version, h.table_id), reverse=True)
    found = [h for h in histories if h.lives_at(ts) and named(h.at(ts))]
    return sorted(found, key=lambda h: (h.at(ts).schema_version, h.table_id), reverse=True)


def union_table(latest: TableInfo, columns: Sequence[ColumnInfo]) -> TableInfo:
    """``latest`` with exactly ``columns`` public (for a compacted part that keeps columns older
    readable versions still need)."""
    return dataclasses.replace(latest, all_columns=tuple(columns), raw={})


def user_fields(info: "TableInfo") -> list[pa.Field]:
    from pyspark_theflash.schema import arrow_schema

    return [f for f in arrow_schema(info) if f.name not in (ROWID, COMMIT_TS, DELMARK)]


def rowid_type(info: "TableInfo") -> pa.DataType:
    """int64, or binary (the memcomparable key) for a clustered common-handle table."""
    from pyspark_theflash.schema import hidden_field

    return hidden_field(ROWID, info).type


