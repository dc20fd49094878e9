"""Which Delta version of each published table holds the replica at a ts: the newest version
whose ts is at or below it (a table gets no version in a round that changed nothing of it, so
the version before still holds the replica at that round's ts)."""
from __future__ import annotations

from dataclasses import dataclass

from pyspark_theflash.lake import delta_log
from pyspark_theflash.lake.location import LakeDir, Where
from pyspark_theflash.lake.verify import published_roots


@dataclass(frozen=True)
class TableVersion:
    table: str
    table_id: int
    root: str                # what a Delta reader opens: a path, or s3://bucket/prefix/tables/<id>
    version: int | None      # None: the table's first version is newer than ts
    ts: int | None           # the version's own ts
    in_commit_ms: int | None


def versions_at(where: Where, ts: int | None = None) -> list[TableVersion]:
    """Each published table under ``where`` (a store's directory, or the ``to`` location the
    tables were published to) and its version holding ``ts`` (default: its newest)."""
    out = []
    for root in published_roots(where):
        state = delta_log.replay(root)
        name = _table_name(root, state)
        version = state.version if ts is None else state.version_at(ts)
        row = next((h for h in state.history if h[0] == version), None)
        out.append(TableVersion(name, int(root.name), root.uri, version, row[1] if row else None,
                                row[2] if row else None))
    return out


def _table_name(root: LakeDir, state: delta_log.TableLog) -> str:
    return state.name or root.name
