"""Bulk inserts into the mini cluster: an Arrow table in, TiDB's keys and row v2 values out,
committed as ordinary Percolator transactions of ``txn_rows`` rows each.

What a large ``INSERT`` split into batches (TiDB's batch-insert / non-transactional DML) does,
in three steps:

1. Encode: every column is checked and encoded a column at a time (``TableRows.encode_batch``
   -> ``upstream.values`` -> ``codec.batch_encode``), ``ENCODE_ROWS`` rows per pass. The whole
   input is checked before anything commits: a bad value (``InvalidValueError``) or a key that
   appears twice in the input (``DuplicateKeyError``) writes nothing.
2. Keys that already have a row (``DuplicateKeyError``, found before the first commit too).
3. Commit: rows ``[i, i + txn_rows)`` form one transaction, its keys sorted. 1PC when its keys
   lie in one region (they do: every table has a region of its own), else, or with
   ``one_pc=False``, two-phase commit: PREWRITE of every key, COMMIT of the primary, then of
   the secondaries, with TiDB's lock TTL for the transaction's size. Each is one raft entry per
   region in the binlog, as any transaction's, so replicas apply them like any other. Keys are
   Insert mutations: a row that appears meanwhile fails the transaction with
   ``DuplicateKeyError``; transactions before it stay committed (as with TiDB's batch commits).
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash.upstream_client.errors import (
    AlreadyExistError,
    DuplicateKeyError,
    RegionError,
    TxnAbortedError,
    TxnRolledBackError,
    UpstreamError,
    WriteConflictError,
)
from pyspark_theflash.upstream.percolator import PercolatorStore
from pyspark_theflash.upstream.rows import ROWID, EncodedRows, duplicate_in_batch
from pyspark_theflash.upstream.tidb import Catalog, LockResolver
from pyspark_theflash.upstream_client.records import split_table_name
from pyspark_theflash.upstream.tso import TimestampOracle

ENCODE_ROWS = 1 << 16  # rows per vectorised encoding pass (bounds the temporary arrays)
TXN_COMMIT_BATCH_BYTES = 16 * 1024  # client-go: transactions below this keep the default TTL
TTL_FACTOR_MS = 6000  # client-go's ttlFactor: TTL = 6 s * sqrt(size in MiB)
MAX_TTL_MS = 20_000  # client-go's ManagedLockTTL


def lock_ttl_ms(txn_bytes: int, default_ms: int) -> int:
    """client-go's ``txnLockTTL``: large transactions get longer locks (their commit takes longer)."""
    if txn_bytes < TXN_COMMIT_BATCH_BYTES:
        return default_ms
    return max(default_ms, min(int(TTL_FACTOR_MS * math.sqrt(txn_bytes / (1 << 20))), MAX_TTL_MS))


def bulk_insert(
    catalog: Catalog, store: PercolatorStore, tso: TimestampOracle, qualified: str, rows: pa.Table | pa.RecordBatch,
    *, txn_rows: int = 10_000, one_pc: bool = True, ttl_ms: int = 3000, retries: int = 20,
) -> int:
    """Insert every row of ``rows`` into ``db.table`` (see the module docstring); returns the
    number of rows inserted."""
    if txn_rows < 1:
        raise ValueError(f"txn_rows must be at least 1, got {txn_rows}")
    if isinstance(rows, pa.RecordBatch):
        rows = pa.Table.from_batches([rows])
    if not isinstance(rows, pa.Table):
        raise TypeError(f"bulk_insert takes a pyarrow.Table (or RecordBatch), got {type(rows).__name__}")
    table = catalog.rows(*split_table_name(qualified))
    n: int = rows.num_rows
    if n == 0:
        return 0
    row_ids = None
    if table.kind == "rowid" and ROWID not in rows.column_names:
        first = catalog.alloc_row_ids(table.id, n)
        row_ids = np.arange(first, first + n, dtype=np.int64)
    elif table.kind == "rowid":  # ids given: never allocate them again
        given = pc.max(rows.column(ROWID)).as_py()
        if given is not None:
            catalog.bump_row_id(table.id, int(given))
    step = max(ENCODE_ROWS // txn_rows, 1) * txn_rows  # passes end on transaction boundaries
    parts: list[EncodedRows] = []
    for lo in range(0, n, step):
        ids = row_ids[lo:lo + step] if row_ids is not None else None
        parts.append(table.encode_batch(rows.slice(lo, step), ids, row_base=lo))
    keys = pa.chunked_array([p.keys for p in parts], pa.binary()).combine_chunks()
    duplicate_in_batch(table, rows, keys)
    if parts[0].unique_keys is not None:
        duplicate_in_batch(table, rows, pa.chunked_array([p.unique_keys for p in parts], pa.binary()).combine_chunks())
    existing = store.find_existing(keys.to_pylist(), tso.get_ts())
    if existing is not None:
        raise DuplicateKeyError(table.qualified, table.key_text(rows, existing), row=existing,
                                why="a row with this key exists already")
    del keys
    resolver = LockResolver(store, tso)
    for p, lo in zip(parts, range(0, n, step)):
        for at in range(0, len(p.keys), txn_rows):
            k, v = p.keys.slice(at, txn_rows), p.values.slice(at, txn_rows)
            order = np.arange(len(k))
            if not pc.all(pc.less(k.slice(0, len(k) - 1), k.slice(1))).as_py():
                order = pc.sort_indices(k).to_numpy()
                k, v = k.take(pa.array(order)), v.take(pa.array(order))
            try:
                _commit(store, tso, resolver, k, v, one_pc=one_pc, ttl_default_ms=ttl_ms, retries=retries)
            except AlreadyExistError as err:
                row = lo + at + int(order[k.to_pylist().index(err.key)])
                raise DuplicateKeyError(table.qualified, table.key_text(rows, row), row=row,
                                        why=f"a row with this key was committed meanwhile ({err})") from None
    return n


def _commit(store: PercolatorStore, tso: TimestampOracle, resolver: LockResolver, keys: pa.Array, values: pa.Array,
            *, one_pc: bool, ttl_default_ms: int, retries: int) -> int:
    """Commit one transaction of Insert mutations (sorted keys); retried with a new start_ts
    after a write conflict. Returns its commit_ts."""
    for attempt in range(retries + 1):
        start_ts = tso.get_ts()
        try:
            if one_pc:
                try:
                    return int(resolver.retry(lambda: store.one_pc_insert(keys, values, start_ts), start_ts))
                except RegionError:
                    pass  # keys span regions: two-phase commit
            return _two_phase(store, tso, resolver, keys, values, start_ts, ttl_default_ms)
        except (WriteConflictError, TxnRolledBackError) as err:
            if attempt == retries:
                raise TxnAbortedError(f"bulk transaction aborted after {retries + 1} attempts: {err}") from err
    raise AssertionError("unreachable")


def _two_phase(store: PercolatorStore, tso: TimestampOracle, resolver: LockResolver, keys: pa.Array, values: pa.Array,
               start_ts: int, ttl_default_ms: int) -> int:
    key_list: list[bytes] = keys.to_pylist()
    primary = key_list[0]
    size = int(pc.sum(pc.binary_length(keys)).as_py() or 0) + int(pc.sum(pc.binary_length(values)).as_py() or 0)
    ttl = lock_ttl_ms(size, ttl_default_ms)
    try:
        resolver.retry(lambda: store.prewrite_insert(keys, values, primary, start_ts, ttl), start_ts)
    except UpstreamError:  # a conflict, a lock that did not go away, an existing key
        store.rollback(key_list, start_ts)
        raise
    commit_ts = tso.get_ts()
    try:
        store.commit([primary], start_ts, commit_ts)
    except TxnRolledBackError:  # someone found our primary expired and rolled it back
        store.rollback(key_list, start_ts)
        raise
    if len(key_list) > 1:
        store.commit(key_list[1:], start_ts, commit_ts)
    return commit_ts
