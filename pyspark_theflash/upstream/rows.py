"""One table's rows as TiDB writes them: the handle and record key of a row, its row v2 value
(an insert fills left-out columns with their DEFAULT, as TiDB's INSERT does), values checked
as TiDB's strict SQL mode checks them (``upstream.values``), one row at a time
(``Txn.insert``/``update``) or a batch at a time (``encode_batch``, for bulk inserts).

A ``TableRows`` is built once per table and schema version (the catalog caches it), so the
per-row work is only what the row itself needs: the primary key columns, handle kind and
column ids are worked out once, not on every insert.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, SupportsIndex, SupportsInt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash import codec
from pyspark_theflash.codec import batch_encode as B
from pyspark_theflash.codec import decode_row
from pyspark_theflash.codec.datum import Datum
from pyspark_theflash.codec.row_v1 import encode_row_v1
from pyspark_theflash.codec.row_v2 import datum_for_column, encode_row_v2
from pyspark_theflash.schema import ColumnInfo, TableInfo, row_columns
from pyspark_theflash.schema.errors import UnknownColumnError
from pyspark_theflash.schema.info_json import TableInfoJson
from pyspark_theflash.schema.partitioning import partitioning_of
from pyspark_theflash.upstream_client.errors import DuplicateKeyError, GeneratedValueError, SchemaError
from pyspark_theflash.upstream.values import check_value, datum, default_value, encode_column, require_column

ROWID = "_tidb_rowid"
Handle = int | tuple[object, ...]  # a row's handle: an int, or the values of a common handle's key columns


def int_handle(handle: object) -> int:
    """``int(handle)``: the handle of a table whose handle is an integer (an int, or what
    ``int`` takes: a NumPy integer, a numeric string)."""
    if isinstance(handle, (str, bytes, bytearray, SupportsInt, SupportsIndex)):
        return int(handle)
    raise TypeError(f"int() argument must be a string, a bytes-like object or a real number, not "
                    f"'{type(handle).__name__}'")


class TableRows:
    """Keys and values of one table at one schema version. ``kind``: ``"int"`` (an integer
    primary key is the handle), ``"common"`` (clustered primary key: the key columns' datums
    are the handle) or ``"rowid"`` (the hidden ``_tidb_rowid``)."""

    def __init__(self, qualified: str, table: TableInfoJson, row_format: int = 2) -> None:
        self.qualified = qualified
        self.table = table
        self.row_format = row_format  # 1: TiDB's old datum format (a cluster upgraded from before 4.0)
        self.info: TableInfo = TableInfo.from_json(table)
        self.id = self.info.id
        self.kind = "int" if self.info.pk_is_handle else "common" if self.info.is_common_handle else "rowid"
        self.key_columns: tuple[ColumnInfo, ...] = self.info.primary_key_columns
        self.handle_column = self.info.handle_column
        handle_id = self.handle_column.id if self.handle_column is not None else None
        # stored in the row value: every column but the handle and VIRTUAL generated ones (TiDB never stores those)
        self.value_columns = tuple(c for c in self.info.columns if c.id != handle_id and not c.is_virtual_generated)
        self.generated = tuple(c for c in self.info.columns if c.generated_expr)
        self._by_name = {c.name: c for c in self.info.columns}  # exact names: the common case, one lookup
        # PARTITION BY: rows go under their partition's physical id (``schema.partitioning``)
        self.partitioning = partitioning_of(self.info)
        self._route = self.partitioning.router(self.info) if self.partitioning is not None else None
        self.physical_ids = self.partitioning.physical_ids if self.partitioning is not None else (self.id,)

    def physical_id(self, row: Mapping[str, object]) -> int:
        """The table id a row's record key carries: its partition's, or the table's own."""
        if self._route is None:
            return self.id
        assert self.partitioning is not None
        values = []
        for name in self.partitioning.key_columns():
            col = self.column(name)
            given = any(k.lower() == col.name.lower() for k in row)
            value = self._key_value(row, col) if given else default_value(self.qualified, col)
            values.append(None if value is None else check_value(self.qualified, col, value, 0))
        return self._route(values)

    def keys(self, handle: object, index: int = 0) -> list[bytes]:
        """Every record key a handle may have: one per partition (a partitioned table's row
        with a handle lives in exactly one), or the one key."""
        return [self.key(handle, index, pid) for pid in self.physical_ids]

    # ------------------------------------------------------------------ one row

    def column(self, name: str) -> ColumnInfo:
        col = self._by_name.get(name)
        if col is not None:
            return col
        try:
            return self.info.column(name)  # any case, as MySQL
        except UnknownColumnError as err:
            raise SchemaError(str(err)) from None

    def handle(self, row: Mapping[str, object], index: int = 0) -> Handle:
        """The row's handle: an int, the tuple of key values (checked: CHAR keys trimmed), or
        its _tidb_rowid."""
        if self.kind == "int":
            col = self.handle_column
            assert col is not None
            h = int_handle(check_value(self.qualified, col, self._key_value(row, col), index))
            return h - (1 << 64) if h >= 1 << 63 else h  # an unsigned BIGINT handle keeps its bits
        if self.kind == "common":
            return tuple(check_value(self.qualified, c, self._key_value(row, c), index) for c in self.key_columns)
        return int_handle(row[ROWID])

    def _key_value(self, row: Mapping[str, object], col: ColumnInfo) -> object:
        if col.name in row:
            return row[col.name]
        for name, value in row.items():
            if name.lower() == col.name.lower():
                return value
        return default_value(self.qualified, col)

    def key(self, handle: object, index: int = 0, physical_id: int | None = None) -> bytes:
        """The record key of a handle (an int, or the tuple of common-handle values), under
        ``physical_id`` (a partition's) or the table's id."""
        table_id = self.id if physical_id is None else int(physical_id)
        if self.kind == "common":
            values = handle if isinstance(handle, (tuple, list)) else (handle,)
            if len(values) != len(self.key_columns):
                raise SchemaError(
                    f"{self.qualified} has a {len(self.key_columns)}-column primary key "
                    f"({', '.join(c.name for c in self.key_columns)}); got the handle {handle!r}")
            datums = [datum(self.qualified, c, v, index) for c, v in zip(self.key_columns, values)]
            return bytes(codec.encode_common_handle_key(table_id, datums))
        return bytes(codec.encode_record_key(table_id, int_handle(handle)))

    def value(self, row: Mapping[str, object], index: int = 0, *, fill_defaults: bool = True,
              checked: frozenset[str] | None = None) -> bytes:
        """Row v2 bytes of a row (v1 for a table of row format 1). ``fill_defaults``: columns the row leaves out take their
        DEFAULT (an insert); otherwise they are left out (readers give them their origin
        default). ``checked``: only these columns' values (lower-case names) are checked (an update checks what
        it sets; the rest was checked when written); None checks all."""
        given: dict[int, object] = {}
        for name, v in row.items():
            if name != ROWID:
                col = self.column(name)
                if col.generated_expr:
                    if checked is None or name.lower() in checked:
                        raise GeneratedValueError(self.qualified, col.name, index, v,
                                                  f"it is generated ({col.generated_expr}); leave it out")
                    continue  # an update's merged row carries the old values: recomputed below
                given[col.id] = v
        cols = []
        for col in self.value_columns:
            if col.generated_expr:
                continue
            if col.id in given:
                v = given[col.id]
            elif fill_defaults:
                v = default_value(self.qualified, col)
            else:
                continue
            if checked is None or col.name.lower() in checked:
                cols.append((col.id, datum(self.qualified, col, v, index)))
            else:
                cols.append((col.id, datum_for_column(col, v)))
        if self.generated:
            cols += self._generated_datums(cols, index)
        return bytes(encode_row_v1(cols) if self.row_format == 1 else encode_row_v2(cols))

    def _generated_datums(self, cols: list[tuple[int, Datum]], index: int) -> list[tuple[int, Datum]]:
        """TiDB's insert computes every generated column and checks it in strict mode: a value
        its type cannot hold fails the statement. STORED ones go into the row; VIRTUAL ones are
        only checked (never stored)."""
        from pyspark_theflash.codec.batch import decode_rows_to_arrow
        from pyspark_theflash.schema.generated import GeneratedColumnError, compile_column

        base = encode_row_v2(cols)
        handle = np.zeros(1, dtype=np.int64)
        arrays = decode_rows_to_arrow([bytes(base)], handle, row_columns(
            self.info, [c.name for c in self.info.columns if not c.generated_expr]))
        values = {name: arrays.column(name) for name in arrays.schema.names}
        out = []
        for col in self.generated:
            try:
                v = compile_column(self.info, col).compute(values, 1)
            except GeneratedColumnError as exc:
                raise GeneratedValueError(self.qualified, col.name, index, None, str(exc)) from None
            values[col.name] = v
            d = datum(self.qualified, col, v[0].as_py(), index)
            if col.generated_stored:
                out.append((col.id, d))
        return out

    def decode(self, key: bytes, value: bytes) -> dict[str, object]:
        """Column values of a stored row, with the handle column (or _tidb_rowid) from the key."""
        if self.kind == "int":
            _, handle = codec.decode_record_key(key)
            return dict(decode_row(value, row_columns(self.info), handle=handle))
        row = dict(decode_row(value, row_columns(self.info)))
        if self.kind == "rowid":
            row[ROWID] = codec.decode_record_key(key)[1]
        return row

    # ------------------------------------------------------------------ a batch

    def encode_batch(self, batch: pa.Table, row_ids: np.ndarray | None, row_base: int = 0) -> EncodedRows:
        """Keys and row v2 values of every row of an Arrow table whose column names are this
        table's (any order, any case; left-out columns take their DEFAULT). ``row_ids``: the
        _tidb_rowid of each row of a rowid table that does not give them itself."""
        n = batch.num_rows
        if any(c.generated_stored for c in self.generated):
            raise SchemaError(f"{self.qualified} has STORED generated columns: the mini cluster computes them "
                              "for inserts in transactions (Txn.insert), not for bulk inserts")
        given: dict[int, pa.Array] = {}
        explicit_rowid: pa.Array | None = None
        for name, arr in zip(batch.column_names, batch.columns):
            if name == ROWID and self.kind == "rowid":
                explicit_rowid = arr
                continue
            col = self.column(name)
            if col.id in given:
                raise SchemaError(f"column {col.name!r} of {self.qualified} appears twice in the Arrow table")
            given[col.id] = arr
        key_ids = {c.id for c in self.key_columns}
        encoded = {}
        for col in self.info.columns:
            if col.is_virtual_generated:
                if col.id in given:
                    raise GeneratedValueError(self.qualified, col.name, 0, None,
                                              f"it is generated ({col.generated_expr}); leave it out")
                continue
            arr = given.get(col.id)
            if arr is None:
                arr = require_column(self.qualified, col, n)
            encoded[col.id] = encode_column(self.qualified, col, arr, key=col.id in key_ids, row_base=row_base)
        if self.kind == "int":
            assert self.handle_column is not None
            ints = encoded[self.handle_column.id].ints
            assert ints is not None
            handles = ints.view(np.int64)  # unsigned BIGINT handles keep their bits
            keys = self._routed(batch, lambda tid, pick: B.int_record_keys(tid, handles[pick]))
        elif self.kind == "common":
            datums = []
            for c in self.key_columns:
                d = encoded[c.id].key_datums
                assert d is not None  # a key column's (encode_column with key=True)
                datums.append(d)
            keys = self._routed(batch, lambda tid, pick: B.common_handle_record_keys(
                tid, [d.take(pa.array(pick)) for d in datums]))
        else:
            if explicit_rowid is not None:
                ids = pc.fill_null(explicit_rowid.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
            elif row_ids is not None:
                ids = row_ids
            else:
                raise SchemaError(f"{self.qualified} keys rows by _tidb_rowid: allocate row ids for the batch")
            rowids = np.asarray(ids, dtype=np.int64)
            keys = self._routed(batch, lambda tid, pick: B.int_record_keys(tid, rowids[pick]))
        values = B.encode_rows_v2([c.id for c in self.value_columns], [encoded[c.id].values for c in self.value_columns])
        pk_keys = None
        if self.kind == "rowid" and self.key_columns:  # a nonclustered primary key is still unique
            pk_keys = B.common_handle_record_keys(self.id, [encoded[c.id].key_datums for c in self.key_columns])
        return EncodedRows(keys, values, pk_keys)

    def _routed(self, batch: pa.Table, keys_of: Callable[[int, np.ndarray], pa.Array]) -> pa.BinaryArray:
        """Record keys of every row of ``batch``: ``keys_of(table id, row indexes)`` under the
        table's id, or per partition under each row's partition id (in row order)."""
        n = batch.num_rows
        if self._route is None:
            return keys_of(self.id, np.arange(n))
        assert self.partitioning is not None
        lower = {name.lower(): name for name in batch.column_names}
        columns = []
        for name in self.partitioning.key_columns():
            col = self.column(name)
            given = lower.get(col.name.lower())
            columns.append(batch.column(given).to_pylist() if given is not None else
                           [default_value(self.qualified, col)] * n)
        pids = np.fromiter((self._route(values) for values in zip(*columns)), dtype=np.int64, count=n)
        chunks, order = [], []
        for pid in np.unique(pids):
            pick = np.flatnonzero(pids == pid)
            chunks.append(keys_of(int(pid), pick))
            order.append(pick)
        where = np.concatenate(order)
        back = np.empty(n, dtype=np.int64)
        back[where] = np.arange(n)
        return pa.concat_arrays([c.cast(pa.binary()) for c in chunks]).take(pa.array(back))

    def key_text(self, batch: pa.Table, index: int) -> object:
        """The key columns' values of row ``index`` of a batch (for a duplicate-key error)."""
        lower = {name.lower(): name for name in batch.column_names}
        cols = self.key_columns if self.key_columns else ()
        values = tuple(batch.column(lower[c.name.lower()])[index].as_py() if c.name.lower() in lower else None
                       for c in cols)
        if not values and ROWID in batch.column_names:
            return batch.column(ROWID)[index].as_py()
        return values[0] if len(values) == 1 else values


@dataclass
class EncodedRows:
    """A batch in TiDB's bytes: ``keys`` (record keys) and ``values`` (row v2), one per row;
    ``unique_keys``: the primary key's datums for a table whose primary key is not its
    handle (nonclustered), to find duplicates in the batch."""

    keys: pa.BinaryArray
    values: pa.BinaryArray
    unique_keys: pa.BinaryArray | None = None


def first_duplicate(keys: pa.Array) -> tuple[int, int] | None:
    """(i, j), i < j, row indexes of two equal keys, or None when all keys differ."""
    n = len(keys)
    if n < 2:
        return None
    if pc.all(pc.less(keys.slice(0, n - 1), keys.slice(1))).as_py():
        return None  # strictly ascending: the common case of a load in key order
    order = pc.sort_indices(keys).to_numpy()
    ordered = keys.take(pa.array(order))
    same = pc.equal(ordered.slice(0, n - 1), ordered.slice(1)).to_numpy(zero_copy_only=False)
    if not same.any():
        return None
    at = int(np.flatnonzero(same)[0])
    i, j = int(order[at]), int(order[at + 1])
    return min(i, j), max(i, j)


def duplicate_in_batch(rows: TableRows, batch: pa.Table, keys: pa.Array) -> None:
    """Raise DuplicateKeyError for the first key that appears twice in ``keys``."""
    pair = first_duplicate(keys)
    if pair is not None:
        i, j = pair
        raise DuplicateKeyError(rows.qualified, rows.key_text(batch, j), row=j,
                                why=f"row index {i} of the same input has the same key")
