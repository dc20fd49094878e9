"""The upstream's own history, for the change-read tests: every committed version of a table's
record keys in the mini cluster's write CF (it keeps every version newer than its GC safe point,
and the newest at or below it), turned into changes as TiDB's change feed would show them, and
the apply check (changes applied to the snapshot at from_ts give the snapshot at to_ts).

Each version's value is decoded with the table at to_ts, as TiDB reads an old version with the
current schema (columns matched by id, columns added since at their origin default): the form
the change read promises (docs/changes.md)."""
from __future__ import annotations

from typing import Any

import pyarrow as pa

from pyspark_theflash.codec.batch import record_batch_from_rows
from pyspark_theflash.codec.keys import decode_record_key
from pyspark_theflash.schema import TableInfo, row_columns
from pyspark_theflash.upstream.tidb import record_range, scan_records
from pyspark_theflash.upstream_client.records import decode_records

ROWID = "_tidb_rowid"
RECORD_PREFIX_LEN = 11  # 't' + table id (8) + '_r'


def handle_of_key(table: dict[str, Any], key: bytes) -> Any:
    """The store's ``_tidb_rowid`` for a record key: the int handle, or a clustered key's datums."""
    if table.get("is_common_handle"):
        return key[RECORD_PREFIX_LEN:]
    return decode_record_key(key)[1]


def _as_arrow_values(table: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Decoded rows as the values Arrow (and so a change read) gives back for them."""
    if not rows:
        return []
    return record_batch_from_rows(rows, row_columns(table)).to_pylist()


def upstream_changes(cluster: Any, qualified: str, from_ts: int, to_ts: int,
                     net: bool = False) -> list[tuple[Any, int, str, dict[str, Any]]]:
    """``(handle, commit_ts, change type, row)`` of every change of ``qualified`` (the table it
    names at to_ts) with from_ts < commit_ts <= to_ts, from the mini cluster's write CF."""
    table = cluster.table_info_at(qualified, to_ts)
    columns = [c.name for c in TableInfo.from_json(table).columns]
    start, end = record_range(table["id"])
    store = cluster.store
    with store.mu:
        history = {k: [v for v in versions if v.write_type in ("P", "D") and v.commit_ts <= to_ts]
                   for k, versions in store._writes.items() if start <= k < end}
        values = {(k, v.start_ts): store._value_of(k, v) for k, vs in history.items() for v in vs
                  if v.write_type == "P"}
    out: list[tuple[Any, int, str, tuple[bytes, bytes]]] = []
    for key, newest_first in history.items():
        versions = list(reversed(newest_first))
        handle = handle_of_key(table, key)

        def row(v: Any) -> tuple[bytes, bytes]:
            return key, values[(key, v.start_ts)]

        if net:
            inside = [v for v in versions if v.commit_ts > from_ts]
            if not inside:
                continue
            before = [v for v in versions if v.commit_ts <= from_ts]
            base = before[-1] if before and before[-1].write_type == "P" else None
            last = inside[-1]
            if last.write_type == "P" and base is not None:
                out += [(handle, last.commit_ts, "update_preimage", row(base)),
                        (handle, last.commit_ts, "update_postimage", row(last))]
            elif last.write_type == "P":
                out.append((handle, last.commit_ts, "insert", row(last)))
            elif base is not None:
                out.append((handle, last.commit_ts, "delete", row(base)))
            continue
        previous = None
        for v in versions:
            if v.commit_ts > from_ts:
                live = previous is not None and previous.write_type == "P"
                if v.write_type == "P" and live:
                    out += [(handle, v.commit_ts, "update_preimage", row(previous)),
                            (handle, v.commit_ts, "update_postimage", row(v))]
                elif v.write_type == "P":
                    out.append((handle, v.commit_ts, "insert", row(v)))
                elif live:
                    out.append((handle, v.commit_ts, "delete", row(previous)))
            previous = v
    decoded = _as_arrow_values(table, decode_records(table, [pair for *_, pair in out]))
    return [(h, ts, kind, {c: r[c] for c in columns}) for (h, ts, kind, _), r in zip(out, decoded)]


def upstream_snapshot(cluster: Any, qualified: str, ts: int, schema_ts: int) -> dict[Any, dict[str, Any]]:
    """handle -> row of ``qualified`` (the table it names at ``schema_ts``) at ``ts``, decoded
    with the table at ``schema_ts``: the snapshot a change read's rows apply to."""
    table = cluster.table_info_at(qualified, schema_ts)
    columns = [c.name for c in TableInfo.from_json(table).columns]
    pairs = scan_records(cluster.store, cluster.tso, table, ts)
    rows = _as_arrow_values(table, decode_records(table, pairs))
    return {handle_of_key(table, k): {c: r[c] for c in columns} for (k, _), r in zip(pairs, rows)}


def changes_as_tuples(changes: pa.Table, columns: list[str]) -> list[tuple[Any, int, str, dict[str, Any]]]:
    """A change read's rows in the form ``upstream_changes`` returns."""
    rows = changes.to_pylist()
    return [(r[ROWID], r["_commit_ts"], r["_change_type"], {c: r[c] for c in columns}) for r in rows]


def apply_changes(snapshot: dict[Any, dict[str, Any]], changes: list[tuple[Any, int, str, dict[str, Any]]],
                  ) -> dict[Any, dict[str, Any]]:
    """``snapshot`` (handle -> row) with ``changes`` applied in commit order; a preimage or a
    delete must match the row it replaces (a change that does not is a wrong change)."""
    out = dict(snapshot)
    for handle, ts, kind, row in sorted(changes, key=lambda c: (c[1], {"delete": 0, "update_preimage": 1,
                                                                      "update_postimage": 2, "insert": 3}[c[2]])):
        if kind in ("delete", "update_preimage"):
            assert out.get(handle) == row, f"{kind} of {handle!r} at {ts}: {row!r} but the row was {out.get(handle)!r}"
            del out[handle]
        else:
            assert handle not in out, f"{kind} of {handle!r} at {ts} over a live row {out[handle]!r}"
            out[handle] = row
    return out
