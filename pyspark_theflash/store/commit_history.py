"""When a table changed: the first commit in (after, through] that makes a read of the table at
``through`` differ from its read at ``after``, from what the store keeps.

A read at ``after`` and a read at ``through`` return the same rows when none of the table's
rows was written in between (no version with after < commit_ts <= through), its schema did not
change (no schema version in force from a ts in between) and its name still means the same
table id (no TRUNCATE, no DROP and CREATE). The store knows all three:

* rows: every part records its least and greatest commit ts (the manifest's ``parts``), so a
  part whose versions all lie at or below ``after``, or all above ``through``, says so without
  being opened; a part whose least commit is past ``after`` has its first one at that least
  (if it is at or below ``through``); only a part whose versions straddle ``after`` is opened,
  and then only its ``_tidb_commit_ts`` column, in the row groups whose statistics straddle it.
  A quiet table's parts are all at or below ``after``: the answer is metadata alone.
* schema versions and table lifetimes: ``StoreView.histories()`` (``store.schemas``).

The store keeps every version newer than its GC safe point (``store.compaction``); below it a
version and the delete that followed it may both be gone, so a question with ``after`` below
the safe point cannot be answered from the store, and :func:`first_change` says so instead of
guessing. A part the store's engine keeps as a record (the ClickHouse engine: no file here)
cannot be opened either; a record that straddles ``after`` is answered the same way.

The caller makes sure the store holds every commit at or below ``through`` (the planner's
learner read and lock resolution at ``through``) and pins the parts (a read lease).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import pyarrow as pa

from pyspark_theflash.store import integrity
from pyspark_theflash.store.errors import UnknownTableNameError
from pyspark_theflash.store.part_ref import PartRef
from pyspark_theflash.store.txn_merge_tree import COMMIT_TS, is_ipc

if TYPE_CHECKING:
    from pyspark_theflash.store.views import StoreView

__all__ = ["ChangeKind", "TableChange", "first_change", "first_row_commit"]


class ChangeKind(Enum):
    """What changed a table between two ts."""

    ROWS = "rows"              # a row was inserted, updated or deleted
    SCHEMA = "schema"          # a schema change (ALTER TABLE ...) took effect
    TABLE = "table"            # the name means another table id (TRUNCATE, DROP + CREATE)
    UNKNOWN = "unknown"        # the store cannot tell (below its GC safe point, rows kept by its engine)


@dataclass(frozen=True)
class TableChange:
    """The first change of a table in (after, through]: its ``commit_ts`` (None when ``kind``
    is UNKNOWN) and ``why`` the store cannot tell, when it cannot."""

    kind: ChangeKind
    commit_ts: int | None
    why: str = ""

    def describe(self) -> str:
        """"a commit at ts 451..." / "a schema change at ts ..." / why the store cannot tell."""
        if self.kind is ChangeKind.ROWS:
            return f"a commit at ts {self.commit_ts}"
        if self.kind is ChangeKind.SCHEMA:
            return f"a schema change at ts {self.commit_ts}"
        if self.kind is ChangeKind.TABLE:
            return ("a TRUNCATE or DROP and CREATE" if self.commit_ts is None
                    else f"a TRUNCATE or DROP and CREATE at ts {self.commit_ts}")
        return f"the store cannot tell ({self.why})"


class _Unreadable(Exception):
    """A part whose commits the store cannot list (a record its engine keeps)."""


def first_row_commit(parts: Iterable[PartRef], root: str | Path, after: int, through: int) -> int | None:
    """The least commit ts c with after < c <= through of any version in ``parts`` (delete
    marks included), or None when there is none. Raises ``_Unreadable`` for an engine's record
    that straddles ``after``."""
    first: int | None = None
    seen: set[int] = set()
    for p in parts:
        if p.part_id in seen or p.rows == 0 or p.min_commit_ts is None or p.max_commit_ts is None:
            continue
        seen.add(p.part_id)
        lo, hi = int(p.min_commit_ts), int(p.max_commit_ts)
        bound = through if first is None else min(through, first - 1)
        if hi <= after or lo > bound:
            continue  # every version at or below after, or past what is already found
        if lo > after:
            first = lo
            continue
        found = _first_in_part(p, Path(root), after, bound)
        if found is not None:
            first = found
    return first


def _first_in_part(part: PartRef, root: Path, after: int, through: int) -> int | None:
    """The least commit ts in (after, through] in one part whose versions straddle ``after``:
    its commit ts column only (a Parquet part: the row groups whose statistics overlap)."""
    if part.in_engine:
        raise _Unreadable(f"part {part.part_id} is a record the store's engine keeps")
    path = root / part.path
    columns: list[pa.ChunkedArray | pa.Array] = []
    if is_ipc(part.path):
        try:
            columns.append(integrity.read_ipc(path, part).column(COMMIT_TS))
        except KeyError as exc:
            raise integrity.damaged(path, part, exc) from exc
    else:
        f = integrity.open_parquet(path, part)
        md = f.metadata
        index = {md.schema.column(i).name: i for i in range(md.num_columns)}
        if COMMIT_TS not in index:
            raise integrity.damaged(path, part, KeyError(COMMIT_TS))
        wanted = []
        for rg in range(md.num_row_groups):
            rgm = md.row_group(rg)
            st = rgm.column(index[COMMIT_TS]).statistics
            if rgm.num_rows == 0:
                continue
            if st is not None and st.has_min_max and (int(st.max) <= after or int(st.min) > through):
                continue
            wanted.append(rg)
        if wanted:
            try:
                columns.append(f.read_row_groups(wanted, columns=[COMMIT_TS]).column(COMMIT_TS))
            except (OSError, pa.ArrowInvalid, KeyError) as exc:
                raise integrity.damaged(path, part, exc) from exc
    first: int | None = None
    for col in columns:
        ts = np.asarray(col.to_numpy() if isinstance(col, pa.ChunkedArray) else col.to_numpy(zero_copy_only=False),
                        dtype=np.uint64)
        inside = ts[(ts > np.uint64(after)) & (ts <= np.uint64(through))]
        if inside.size:
            found = int(inside.min())
            first = found if first is None else min(first, found)
    return first


def first_change(view: "StoreView", root: str | Path, table: str, parts: Sequence[PartRef], after: int,
                 through: int) -> TableChange | None:
    """The first change of ``table`` (``db.table``) in (after, through], or None when a read of
    it at ``through`` returns what a read at ``after`` returned. ``parts``: the table's parts
    a read at ``through`` reads (pinned by its lease), every physical table's of a partitioned
    one."""
    if after >= through:
        return None
    safe_point = int(view.gc_safe_point())
    if after < safe_point:
        return TableChange(ChangeKind.UNKNOWN, None,
                           f"ts {after} is below the store's GC safe point {safe_point}, and the versions "
                           "written between may be gone")
    try:
        before, now = view.table_at(table, after), view.table_at(table, through)
    except UnknownTableNameError:
        return TableChange(ChangeKind.UNKNOWN, None, f"the store has no table {table} at both ts {after} and {through}")
    if int(before.id) != int(now.id):
        made = view.histories()[int(now.id)].created_ts or view.histories()[int(before.id)].retired_ts
        return TableChange(ChangeKind.TABLE, int(made) if made else None)
    history = view.histories().get(int(now.id))
    schema_at = min((ts for ts in (history.commit_ts if history is not None else ()) if after < ts <= through),
                    default=None)
    try:
        rows_at = first_row_commit(parts, root, after, through if schema_at is None else schema_at)
    except _Unreadable as exc:
        return TableChange(ChangeKind.UNKNOWN, None, str(exc))
    if rows_at is not None and (schema_at is None or rows_at < schema_at):
        return TableChange(ChangeKind.ROWS, rows_at)
    if schema_at is not None:
        return TableChange(ChangeKind.SCHEMA, schema_at)
    return None
