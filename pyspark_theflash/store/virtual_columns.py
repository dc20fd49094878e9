"""Reads with VIRTUAL generated columns: TiDB never stores them, so every engine reads the
columns they are computed from and computes them on the way out (``schema.generated``).

``read_computing_virtual(info, columns, predicate, hidden, read)`` wraps an engine's snapshot
read ``read(columns, predicate)`` (the native ``read_parts``, ClickHouse's ``read_snapshot``):
the engine reads the requested stored columns plus what the virtual ones need, with the
conjuncts of the filter that name no virtual column (those prune and filter inside the engine
as always); the virtual columns are computed per batch, the remaining conjuncts applied to the
computed values, and the batch cut to the requested columns. Statistics of a virtual column
(the store holds only NULLs for it) never prune: ``PartRef.stats_by_name`` leaves them out.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import pyarrow as pa

from pyspark_theflash.store.parts import output_schema
from pyspark_theflash.store.predicate import And, Expr

if TYPE_CHECKING:
    from pyspark_theflash.schema import TableInfo

Read = Callable[[list[str] | None, "Expr | None"], Iterator[pa.RecordBatch]]  # columns None: every column


def read_computing_virtual(info: "TableInfo", columns: Sequence[str] | None, predicate: Expr | None,
                           hidden: Sequence[str], read: Read) -> Iterator[pa.RecordBatch]:
    from pyspark_theflash.schema.generated import virtual_columns

    virtual = {c.name for c in info.columns if c.is_virtual_generated}
    wanted = [c.name for c in info.columns] if columns is None else [info.column(n).name for n in columns]
    conjuncts = list(predicate.children) if isinstance(predicate, And) else ([predicate] if predicate else [])
    later = [c for c in conjuncts if c.columns() & virtual]
    if not virtual or (not later and not virtual.intersection(wanted)):
        yield from read(list(columns) if columns is not None else None, predicate)
        return
    pushed = [c for c in conjuncts if not c.columns() & virtual]
    needed = set(wanted) | {n for c in later for n in c.columns()}
    computed = virtual_columns(info, sorted(needed & virtual))
    stored_needed = (needed - virtual) | {d for vc in computed for d in vc.deps if d not in virtual}
    inner = [c.name for c in info.columns if c.name in stored_needed]
    residual = None if not later else (later[0] if len(later) == 1 else And(*later))
    out_schema = output_schema(info, wanted, hidden)
    for batch in read(inner, None if not pushed else (pushed[0] if len(pushed) == 1 else And(*pushed))):
        n = batch.num_rows
        cols = {name: batch.column(name) for name in batch.schema.names}
        for vc in computed:
            cols[vc.name] = vc.compute(cols, n)
        table = pa.table(cols)
        if residual is not None:
            table = table.filter(residual.to_arrow(table.schema))
            if table.num_rows == 0:
                continue
        arrays = [table.column(f.name).cast(f.type) for f in out_schema]
        yield from pa.table(arrays, schema=out_schema).to_batches()


__all__ = ["read_computing_virtual"]
