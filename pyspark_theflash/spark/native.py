"""A theflash read as Spark's own Parquet scan of the clean parts plus the Python data source
for the rest (driver side; see ``scan/native.py`` for which parts are clean and why).

The read is planned here, on the driver, when the DataFrame is built: one snapshot ts, one
read lease, the learner read and lock resolution, as ``partitions()`` would do. The clean
pieces become ``spark.read.parquet`` of their files, filtered to the rows visible at ts; the
handle ranges left over are read by the ``theflash`` Python source at the same ts,
restricted to those ranges; the two are unioned. The lease is renewed for as long as the
returned DataFrame object lives (Spark reads the files only when an action runs), then
expires after ``lease_ttl``.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Callable, Sequence

from pyspark_theflash.scan.native import (
    NativePiece,
    NativeSplit,
    low_end_key,
    natively_readable_partition,
    split_native,
)
from pyspark_theflash.scan.options import (
    HANDLE_RANGES_OPTION,
    HIDDEN_READABLE,
    OVERLAYS_OPTION,
    ScanOptions,
    format_handle_ranges,
    format_overlays,
)
from pyspark_theflash.store.keyspace import Handle

log = logging.getLogger(__name__)


def _file_hidden(binary_handle: bool, signed_commit_ts: bool) -> str:
    """The hidden columns as Spark's Parquet reader sees them in a part file: the handle is
    int64, or a common handle's memcomparable bytes; the commit ts is signed INT64 (BIGINT),
    or unsigned in parts written before (DECIMAL(20,0))."""
    rowid = "BINARY" if binary_handle else "BIGINT"
    return f"`_tidb_rowid` {rowid}, `_tidb_commit_ts` {_commit_ts_type(signed_commit_ts)}, `_tidb_delmark` BOOLEAN"


def _commit_ts_type(signed: bool) -> str:
    return "BIGINT" if signed else "DECIMAL(20,0)"


def _commit_ts_literal(ts: int, signed: bool) -> str:
    return str(int(ts)) if signed else f"CAST({int(ts)} AS DECIMAL(20,0))"


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def handle_literal(handle: Handle) -> str:
    """A handle as a Spark SQL literal of ``_tidb_rowid``'s type: BIGINT, or a BINARY hex
    literal (Spark compares BINARY as unsigned bytes, a proper prefix first: memcomparable
    order, the order the store cut its ranges in)."""
    if isinstance(handle, bytes):
        return f"X'{handle.hex().upper()}'"
    return str(int(handle))


def _range_sql(lo: Handle | None, hi: Handle | None) -> str | None:
    bounds = ([f"_tidb_rowid >= {handle_literal(lo)}"] if lo is not None else []) + (
        [f"_tidb_rowid < {handle_literal(hi)}"] if hi is not None else [])
    return " AND ".join(bounds) or None


def _piece_sql(piece: NativePiece) -> str | None:
    """Rows of the piece's file that are the piece's: in its range, outside its tombstones."""
    conds = [c for c in [_range_sql(piece.lo, piece.hi)] if c is not None]
    for tlo, thi in piece.tombstones:
        inside = _range_sql(tlo, thi)
        conds.append("false" if inside is None else f"NOT ({inside})")
    return " AND ".join(conds) or None


def _merged(pieces: Sequence[NativePiece]) -> list[NativePiece]:
    """Adjacent pieces of one file with the same tombstones as one piece (a plan cuts a part
    at region bounds; the file does not care)."""
    out: list[NativePiece] = []
    for p in sorted(pieces, key=lambda p: (p.path, low_end_key(p.lo))):
        last = out[-1] if out else None
        if (last is not None and last.path == p.path and last.tombstones == p.tombstones
                and last.hi is not None and last.hi == p.lo):
            out[-1] = replace(last, hi=p.hi, deletion_vector=_joined(last.deletion_vector, p.deletion_vector),
                              dropped_handles=_joined_handles(last.dropped_handles, p.dropped_handles))
        else:
            out.append(p)
    return out


def _joined(a: Any, b: Any) -> Any:
    """Two pieces' deletion vectors as one (None: empty)."""
    import pyarrow as pa

    vectors = [v for v in (a, b) if v is not None]
    return None if not vectors else vectors[0] if len(vectors) == 1 else pa.concat_tables(vectors)


def _joined_handles(a: Any, b: Any) -> Any:
    """Two pieces' dropped handles as one (None when either names none: join by version)."""
    import pyarrow as pa

    return None if a is None or b is None else pa.concat_arrays([a, b])


def _vector_columns(pieces: Sequence[NativePiece]) -> tuple[str, str]:
    """Names for a vector's handle and commit ts columns that no column of the pieces' files
    has (the join condition names each column once, unqualified)."""
    taken = {n.lower() for n in pieces[0].file_columns}
    prefix = "_dv"
    while f"{prefix}_rowid" in taken or f"{prefix}_commit_ts" in taken:
        prefix += "_"
    return f"{prefix}_rowid", f"{prefix}_commit_ts"


def _without_dropped_handles(spark: Any, df: Any, pieces: Sequence[NativePiece]) -> Any:
    """``df`` minus the rows of the pieces' ``dropped_handles`` (one-version int-handle parts:
    the vector's handles and those committed after ts), a broadcast anti-join on the handle."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyspark.sql.functions import broadcast, expr

    dropped = [p.dropped_handles for p in pieces if len(p.dropped_handles)]
    if not dropped:
        return df
    # pieces of one file each name the file's handles committed after ts: once is enough
    rowid, _ = _vector_columns(pieces)
    handles = pa.table({rowid: pc.unique(pa.concat_arrays(dropped))})
    vector = spark.createDataFrame(handles, schema=f"{rowid} BIGINT")
    return df.join(broadcast(vector), expr(f"_tidb_rowid = {rowid}"), "left_anti")


def _without_deleted(spark: Any, df: Any, pieces: Sequence[NativePiece]) -> Any:
    """``df`` (rows of the pieces' files) minus their deletion vectors: the versions that are
    no row at ts — superseded by the partitions' deltas, or by a newer version in the same
    file (``store.deletion_vector``). A broadcast anti-join on (handle, commit ts): the vectors
    are the size of the recent changes, the files the stable parts'."""
    import pyarrow as pa
    from pyspark.sql.functions import broadcast, expr

    vectors = [p.deletion_vector for p in pieces if p.deletion_vector is not None]
    if not vectors:
        return df
    dropped = pa.concat_tables(vectors) if len(vectors) > 1 else vectors[0]
    handle_type = "BINARY" if pieces[0].binary_handle else "BIGINT"
    signed = pieces[0].signed_commit_ts
    rowid, commit_ts = _vector_columns(pieces)
    vector = spark.createDataFrame(
        pa.table({rowid: dropped.column("_tidb_rowid"),
                  commit_ts: dropped.column("_tidb_commit_ts").cast(pa.int64() if signed else pa.decimal128(20, 0))}),
        schema=f"{rowid} {handle_type}, {commit_ts} {_commit_ts_type(signed)}")
    if signed and not pieces[0].binary_handle:
        # The commit ts as a condition on the matched rows, not a second join key: with the
        # handle alone as its key Spark builds a LongHashedRelation (an array probed by the
        # bigint) instead of hashing a two-column row per probe.
        condition = f"_tidb_rowid = {rowid} AND _tidb_commit_ts - {commit_ts} = 0"
    else:
        condition = f"_tidb_rowid = {rowid} AND _tidb_commit_ts = {commit_ts}"
    # one expression (the names are each on one side only): each Column operation is a JVM call
    return df.join(broadcast(vector), expr(condition), "left_anti")


def parquet_frame(spark: Any, ts: int, pieces: Sequence[NativePiece], target: Any) -> Any:
    """The visible rows of ``pieces`` (all with the same file column names, handle type and
    commit ts type) as ``target``. Built from SQL text: each DataFrame call is a round trip to the JVM."""
    pieces = _merged(pieces)
    user = [f for f in target.fields if f.name not in HIDDEN_READABLE]
    file_cols = pieces[0].file_columns
    read_schema = ", ".join([f"{_quote(n)} {f.dataType.simpleString()}" for n, f in zip(file_cols, user)]
                            + [_file_hidden(pieces[0].binary_handle, pieces[0].signed_commit_ts)])
    df = spark.read.schema(read_schema).parquet(*sorted({p.path for p in pieces}))
    by_handle = all(p.dropped_handles is not None for p in pieces)
    conds = []
    if not by_handle and any(p.newer_than_ts for p in pieces):
        conds.append(f"_tidb_commit_ts <= {_commit_ts_literal(ts, pieces[0].signed_commit_ts)}")
    if any(p.delete_marks for p in pieces):
        conds.append("NOT _tidb_delmark")
    ranges = [_piece_sql(p) for p in pieces]
    if all(r is not None for r in ranges):  # (a piece without conditions takes its whole file)
        conds.append(" OR ".join(f"({r})" for r in ranges))
    if conds:
        df = df.where(" AND ".join(f"({c})" for c in conds))
    df = _without_dropped_handles(spark, df, pieces) if by_handle else _without_deleted(spark, df, pieces)
    by_user = dict(zip((f.name for f in user), file_cols))
    exprs = []
    for f in target.fields:
        source = _quote(by_user.get(f.name, f.name))
        if f.name == "_tidb_commit_ts":
            source = f"CAST({source} AS {f.dataType.simpleString()})"
        # Spark's file sources read every column as nullable (a NOT NULL column stays free of
        # NULLs all the same); marking it otherwise would cost the filters on it their pushdown.
        exprs.append(f"{source} AS {_quote(f.name)}")
    return df.selectExpr(*exprs)


# Delta halves of at most this many rows are read on the driver when the DataFrame is planned
# and handed to Spark as a local relation; bigger ones are read by the Python source's tasks.
# A delta half is the recent changes, usually a few thousand rows: reading them here costs a
# few milliseconds, where a Python-source task costs a Python worker and its planning.
INLINE_DELTA_ROWS = 100_000


def delta_halves_frame(spark: Any, plan: Any, split: NativeSplit, columns: Sequence[str] | None,
                       hidden: Sequence[str], target: Any) -> Any:
    """The delta halves of ``split`` read now, at the plan's ts, as a DataFrame of ``target``."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    from pyspark_theflash.spark.datasource import conform
    from pyspark_theflash.store.deletion_vector import superseding_rows

    expected = to_arrow_schema(target, timezone="UTC")
    batches = [conform(batch, expected, pa)
               for half in split.delta_halves
               for batch in superseding_rows(half.superseded, half.deltas, plan.table_info, plan.ts,
                                             (half.lo, half.hi), list(columns) if columns is not None else None,
                                             None, tuple(hidden), plan.store, 1 << 30, cache_deltas=True)]
    return spark.createDataFrame(pa.Table.from_batches(batches, schema=expected), schema=target)


class NativeRead:
    """A planned native read: the DataFrame and the plan whose lease it needs."""

    def __init__(self, dataframe: Any, plan: Any, split: NativeSplit) -> None:
        self.dataframe = dataframe
        self.plan = plan
        self.split = split


def native_read(spark: Any, options: dict[str, str], user_schema: Any,
                python_load: Callable[[dict[str, str], Any], Any]) -> NativeRead | None:
    """The read as a native + Python DataFrame, or None when no part is clean (the caller then
    loads the Python source as usual). ``python_load(options, schema)`` loads the Python source
    (with the schema given, Spark need not ask the source for it)."""
    from pyspark_theflash.scan.planner import plan
    from pyspark_theflash.schema import spark_schema

    opts = ScanOptions.from_mapping(options)
    if not opts.native_read or opts.handle_ranges is not None or not _has_clean_partition(opts):
        return None
    if user_schema is not None:
        names = [f.name for f in user_schema.fields]
        columns = [n for n in names if n not in HIDDEN_READABLE]
        hidden = tuple(n for n in names if n in HIDDEN_READABLE)
    else:
        columns, hidden = list(opts.columns) or None, opts.hidden
    scan_plan = plan(opts.store, None, opts, columns=columns, hidden=hidden)
    try:
        info = scan_plan.table_info
        if not scan_plan.partitions:
            scan_plan.close()
            return None
        resolved = scan_plan.partitions[0].columns  # as the table spells them; None = all
        declared = spark_schema(info, list(resolved) if resolved is not None else None, hidden)
        target = user_schema if user_schema is not None else declared
        needed = [f.name for f in declared.fields if f.name not in HIDDEN_READABLE]
        split = split_native(scan_plan, needed)
        if not split.pieces or not _same_types(target, declared):
            scan_plan.close()
            return None
        groups: dict[tuple[tuple[str, ...], bool, bool], list[NativePiece]] = {}
        for piece in split.pieces:
            groups.setdefault((piece.file_columns, piece.binary_handle, piece.signed_commit_ts), []).append(piece)
        frames = [parquet_frame(spark, scan_plan.ts, pieces, target) for pieces in groups.values()]
        overlays = split.overlays
        if overlays and split.delta_half_rows <= INLINE_DELTA_ROWS:
            frames.append(delta_halves_frame(spark, scan_plan, split, resolved, hidden, target))
            overlays = []
        if split.rest or overlays:
            rest_options = dict(options)
            rest_options["snapshot_ts"] = str(scan_plan.ts)
            rest_options.pop("as_of", None)
            rest_options[HANDLE_RANGES_OPTION] = format_handle_ranges(split.rest)
            if overlays:
                rest_options[OVERLAYS_OPTION] = format_overlays(overlays)
            frames.append(python_load(rest_options, target))
        df = frames[0]
        for other in frames[1:]:
            df = df.unionByName(other)
    except BaseException:
        scan_plan.close()
        raise
    log.debug("theflash %s at ts %d: %d clean part(s) read by Spark's Parquet reader (%d minus a deletion "
              "vector), %d range(s) by the Python source", opts.table, scan_plan.ts, len(split.pieces),
              len(split.overlays), len(split.rest))
    return NativeRead(df, scan_plan, split)


def _has_clean_partition(opts: ScanOptions) -> bool:
    """Whether some TxnMergeTree partition of the table holds a one-version Parquet part
    bigger than its deltas (a manifest lookup). Without one nothing can be read natively, and
    planning here would only make the Python source plan — and wait for the learner read — twice."""
    from pyspark_theflash.scan.planner import lookup_table, open_store

    with open_store(opts.store) as store, store.snapshot() as view:
        info = lookup_table(view, opts.table)
        if info is None:
            return False
        by_partition: dict[int, list[Any]] = {}
        for p in view.parts(int(info.id)):
            by_partition.setdefault(p.partition_id, []).append(p)
    return any(natively_readable_partition(ps) for ps in by_partition.values())


def _same_types(user_schema: Any, declared: Any) -> bool:
    """A user's ``.schema(...)`` asking for the declared types (by name, any case): the native
    read gives exactly those; a schema asking for casts is left to the Python source."""
    return len(user_schema.fields) == len(declared.fields) and all(
        u.name.lower() == d.name.lower() and u.dataType == d.dataType
        for u, d in zip(user_schema.fields, declared.fields))
