"""The schema versions of one table, side by side.

Rows are written under the schema version current at the time, and the store keeps parts of
several versions, so readers need every version, not just the latest: ``version_at(v)`` is
the table as of schema version ``v`` (the newest version not after it), and ``changes``
says which columns (by column id, as TiDB tracks them across renames) were added, dropped or
changed between two versions.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

from pyspark_theflash.schema.errors import SchemaError
from pyspark_theflash.schema.table_info import ColumnInfo, TableInfo


@dataclass(frozen=True)
class SchemaChange:
    """Differences between two versions of a table, by column id."""

    added: tuple[ColumnInfo, ...]
    dropped: tuple[ColumnInfo, ...]
    changed: tuple[tuple[ColumnInfo, ColumnInfo], ...]  # (before, after): renamed or retyped

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.dropped or self.changed)


class SchemaHistory:
    """All known versions of one table (same table id), ordered by schema version."""

    def __init__(self, versions: list[TableInfo] | None = None) -> None:
        self._versions: list[int] = []
        self._tables: list[TableInfo] = []
        for t in versions or ():
            self.add(t)

    @property
    def table_id(self) -> int | None:
        return self._tables[0].id if self._tables else None

    @property
    def versions(self) -> list[int]:
        return list(self._versions)

    def __len__(self) -> int:
        return len(self._tables)

    def add(self, table: TableInfo) -> bool:
        """Adds a version; False if that exact version is already known (adding is idempotent).
        A different table id, or different content under a known version number, is an error."""
        if self._tables and table.id != self._tables[0].id:
            raise SchemaError(
                f"schema history of table id {self._tables[0].id} cannot take table {table.qualified_name} (id {table.id})"
            )
        i = bisect.bisect_left(self._versions, table.schema_version)
        if i < len(self._versions) and self._versions[i] == table.schema_version:
            if self._tables[i] != table:
                raise SchemaError(
                    f"table {table.qualified_name} (id {table.id}) schema version {table.schema_version} is already "
                    "known with different columns; a schema version must never change"
                )
            return False
        self._versions.insert(i, table.schema_version)
        self._tables.insert(i, table)
        return True

    @property
    def latest(self) -> TableInfo:
        if not self._tables:
            raise SchemaError("schema history is empty: add a table version first")
        return self._tables[-1]

    def version_at(self, schema_version: int) -> TableInfo:
        """The table as of ``schema_version``: the newest known version not after it."""
        i = bisect.bisect_right(self._versions, schema_version)
        if i == 0:
            known = f"known versions start at {self._versions[0]}" if self._versions else "no version is known"
            raise SchemaError(
                f"table id {self.table_id} has no schema at version {schema_version}: {known}; "
                "fetch the table info from upstream"
            )
        return self._tables[i - 1]

    def exact(self, schema_version: int) -> TableInfo:
        i = bisect.bisect_left(self._versions, schema_version)
        if i == len(self._versions) or self._versions[i] != schema_version:
            raise SchemaError(f"table id {self.table_id} has no schema version {schema_version}; known: {self._versions}")
        return self._tables[i]

    def changes(self, from_version: int, to_version: int) -> SchemaChange:
        """Columns added, dropped and changed going from one version to another."""
        return diff_columns(self.version_at(from_version), self.version_at(to_version))


def diff_columns(before: TableInfo, after: TableInfo) -> SchemaChange:
    """Public-column differences between two versions of a table, by column id."""
    old = {c.id: c for c in before.columns}
    new = {c.id: c for c in after.columns}
    added = tuple(c for cid, c in new.items() if cid not in old)
    dropped = tuple(c for cid, c in old.items() if cid not in new)
    changed = tuple(
        (old[cid], new[cid])
        for cid in new
        if cid in old
        and (old[cid].name, old[cid].tp, old[cid].flag, old[cid].flen, old[cid].decimal, old[cid].elems)
        != (new[cid].name, new[cid].tp, new[cid].flag, new[cid].flen, new[cid].decimal, new[cid].elems)
    )
    return SchemaChange(added, dropped, changed)
