"""The writer's tables (``TableCatalog``): every schema version of each replicated table id, by
commit ts; the ids it ignores; and the manifest changes schema changes made that no edit has
committed yet.

A batch's DDL events change the catalog in memory at once (its rows may need the versions
they make) and *stage* their manifest changes (``TableChange`` values): the flush that
persists the batch commits them inside its own edit, so a batch carrying a DDL commits once
and a crash before that flush replays the DDL with the batch. A schema learned from the
schema endpoint (``Store.put_schema``) is committed at once, with whatever is staged ahead of
it, so edits keep the order of the changes.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Sequence

from pyspark_theflash.proto import binlog_pb2
from pyspark_theflash.schema.partitioning import partitioning_of, physical_tables_of
from pyspark_theflash.store import manifest as mf
from pyspark_theflash.store.schemas import TableHistory
from pyspark_theflash.store.views import StoreView

if TYPE_CHECKING:
    from pyspark_theflash.schema import TableInfo


class TableCatalog:
    def __init__(self) -> None:
        self.histories: dict[int, TableHistory] = {}  # every version, by commit ts
        self.latest: dict[int, "TableInfo"] = {}       # newest version of each table id
        self.ignored: set[int] = set()
        self.staged: list[mf.TableChange] = []         # for the next edit, in order

    def load(self, view: StoreView) -> None:
        self.histories = view.histories()
        self.latest = {tid: h.latest for tid, h in self.histories.items()}
        self.ignored = {tid for tid, _db, _name in view.ignored_tables()}

    # --- questions ---------------------------------------------------------------------------
    def replicates(self, table_id: int) -> bool | None:
        """True: the store holds the table's schema; False: it ignores the table; None: neither."""
        if int(table_id) in self.ignored:
            return False
        return True if int(table_id) in self.histories else None

    def known_column_ids(self) -> dict[int, set[int]]:
        """Per replicated table id: the ids of every column any stored version has."""
        return {tid: h.column_ids() for tid, h in self.histories.items()}

    def common_handle_tables(self) -> set[int]:
        """Table ids whose rows are keyed by a clustered primary key (not an int handle)."""
        return {tid for tid, info in self.latest.items() if info.is_common_handle}

    # --- staged changes ----------------------------------------------------------------------
    def take_staged(self) -> tuple[int, mf.ManifestEdit | None]:
        """How many changes are staged and the edit of them (None: none), for the next edit;
        ``forget_staged(n)`` once it committed (or once memory has moved on past it)."""
        n = len(self.staged)
        return n, (mf.ManifestEdit(bump=False, tables=tuple(self.staged[:n])) if n else None)

    def forget_staged(self, n: int) -> None:
        del self.staged[:n]

    # --- changes -----------------------------------------------------------------------------
    def schema_changes(self, db: str, info: "TableInfo", commit_ts: int | None
                       ) -> tuple[list[mf.TableChange], list[tuple["TableInfo", int]]]:
        """A schema version learned from the schema endpoint (``commit_ts`` None: in force from
        its ``update_timestamp``, an estimate that a version already known keeps) or recorded
        with the commit ts of the DDL that made it: its manifest changes, and the versions to
        learn once they committed."""
        history = self.histories.get(info.id)
        known = history is not None and history.by_version(info.schema_version) is not None
        estimate = commit_ts is None
        ts = int(info.raw.get("update_timestamp") or 0) if commit_ts is None else commit_ts
        partitions = self._partition_versions(info, ts)
        changes: list[mf.TableChange] = [_version(db, i, ts, exact=not estimate) for i in [info, *partitions]]
        learn = [] if estimate and known else [(info, ts)]
        return changes, learn + [(part, ts) for part in partitions]

    def learn(self, info: "TableInfo", commit_ts: int) -> None:
        history = self.histories.setdefault(info.id, TableHistory(info.id, info.db))
        history.add(info, commit_ts)
        self.latest[info.id] = history.latest
        self.ignored.discard(info.id)

    def ignore(self, table_id: int, db: str, name: str) -> None:
        """Rows of this table are dropped from now on; staged for the next edit."""
        self.staged.append(mf.TableIgnored(table_id, db, name))
        self.ignored.add(table_id)

    def apply_ddl(self, event: binlog_pb2.Event) -> bool:
        """A binlog DDL event (``binlog_pb2.Ddl``): the table version it makes, in force from its
        commit ts, and the table ids it creates or retires (DROP TABLE, TRUNCATE), learned at
        once and staged for the next edit. A DDL of an ignored table changes nothing (TRUNCATE
        passes the ignoring on to the new id). Idempotent; False when it changed nothing."""
        from pyspark_theflash.schema import TableInfo

        ddl = event.ddl
        Ddl = binlog_pb2.Ddl
        info = TableInfo.from_json(json.loads(ddl.table_info), db=ddl.db)
        tid, ts = int(ddl.table_id), int(ddl.commit_ts)
        retire = tid if ddl.type == Ddl.DROP_TABLE else int(ddl.old_table_id)
        created = ddl.type in (Ddl.CREATE_TABLE, Ddl.TRUNCATE_TABLE)
        if ddl.type == Ddl.TRUNCATE_TABLE and retire in self.ignored and tid not in self.ignored:
            self.ignore(tid, ddl.db, info.name)
        history = self.histories.get(tid)
        new_version = ddl.type != Ddl.DROP_TABLE and tid not in self.ignored and (
            history is None or not history.has(info.schema_version, ts))
        old = self.histories.get(retire) if retire else None
        new_retire = old is not None and old.retired_ts is None
        new_life = created and tid not in self.ignored and (history is None or history.created_ts != ts)
        partitioned = partitioning_of(info) is not None and tid not in self.ignored and ddl.type != Ddl.DROP_TABLE
        if not (new_version or new_retire or new_life or partitioned):
            return False
        why = {Ddl.DROP_TABLE: "dropped", Ddl.TRUNCATE_TABLE: f"truncated (the name is table {tid} now)"}
        changes: list[mf.TableChange] = []
        if new_version:
            changes.append(_version(ddl.db, info, ts))
        partitions = self._partition_versions(info, ts) if partitioned else []
        changes += [_version(ddl.db, part, ts) for part in partitions]
        if new_life:
            changes.append(mf.TableCreated(tid, ts))
        if new_retire:
            changes.append(mf.TableRetired(retire, ts, why.get(ddl.type, "retired")))
        self.staged.extend(changes)
        if new_version:
            self.learn(info, ts)
        for part in partitions:
            self.learn(part, ts)
        if not (new_version or new_retire or new_life or partitions):
            return False
        if new_life:
            self.histories[tid].created_ts = ts
        if new_retire and old is not None:
            old.retired_ts, old.retired_reason = ts, why.get(ddl.type, "retired")
        return True

    def _partition_versions(self, info: "TableInfo", commit_ts: int) -> Sequence["TableInfo"]:
        """A partitioned table's version also as one version per partition id (the physical
        tables its rows arrive under, ``schema.partitioning``): those not known yet."""
        out = []
        for part in physical_tables_of(info):
            history = self.histories.get(part.id)
            if history is None or not history.has(part.schema_version, commit_ts):
                out.append(part)
        return out


def _version(db: str, info: "TableInfo", commit_ts: int, exact: bool = True) -> mf.TableVersion:
    return mf.TableVersion(int(info.id), int(info.schema_version), db, info.name, mf.dumps(info.to_json()),
                           int(commit_ts), exact)
