"""TiDB table info JSON (``model.TableInfo`` / ``model.ColumnInfo``) as typed Python objects.

Accepted input is what TiDB's status port serves at ``/schema/{db}/{table}`` plus the
``schema_version`` the mini cluster adds: names as ``{"O": original, "L": lower}`` or plain
strings, ``cols`` with a ``type`` object (``Tp``, ``Flag``, ``Flen``, ``Decimal``,
``Charset``, ``Collate``, ``Elems``), ``origin_default``/``default``, ``pk_is_handle``,
``is_common_handle`` and ``index_info``. Without ``schema_version`` (a real TiDB) the
``update_timestamp`` (a TSO that grows with every DDL on the table) serves as the version.

``TableInfo.columns`` are the *public* columns in offset order: columns still being added or
already being dropped (``state`` other than public) stay in ``all_columns`` and ``raw`` but are
not visible to readers, as in TiDB. ``to_json`` gives TiDB-shaped JSON back; keys this module
does not model are carried through from ``raw`` unchanged.

This module is the bottom of ``schema/``: the data, nothing computed from it. Whether a VIRTUAL
generated column is readable is decided by a ``VirtualColumnJudge`` (``schema.generated``, which
the ``schema`` package sets on import: ``judge_virtual_columns_with``); a table's partitioning
is read with ``schema.partitioning`` (``partitioning_of``, ``physical_ids_of``).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pyspark_theflash.codec import column_types as T
from pyspark_theflash.schema.errors import SchemaError, UnknownColumnError
from pyspark_theflash.schema.info_json import ColumnInfoJson, FieldTypeJson, IndexInfoJson, NameJson, TableInfoJson

# column/table states (model.SchemaState); only public columns are visible to readers
STATE_NONE = 0
STATE_DELETE_ONLY = 1
STATE_WRITE_ONLY = 2
STATE_WRITE_REORGANIZATION = 3
STATE_DELETE_REORGANIZATION = 4
STATE_PUBLIC = 5

# TiDB's model.ColumnInfo.Version: ColumnInfoVersion0 (TIMESTAMP defaults in the TiDB server's
# system time zone), ColumnInfoVersion1 (TIMESTAMP defaults in UTC), ColumnInfoVersion2 (charset
# fix; the latest, CurrLatestColumnInfoVersion).
COLUMN_INFO_VERSION_UTC_TIMESTAMP_DEFAULTS = 1
CURRENT_COLUMN_INFO_VERSION = 2


def parse_name(value: object, what: str) -> str:
    """The original spelling of a TiDB name (``{"O": .., "L": ..}`` or a plain string)."""
    if isinstance(value, Mapping):
        name = value.get("O", value.get("L"))
        if isinstance(name, str):
            return name
    elif isinstance(value, str):
        return value
    raise SchemaError(f"{what} name {value!r} is neither a string nor {{'O': ..., 'L': ...}}")


def name_json(name: str) -> NameJson:
    return {"O": name, "L": name.lower()}


@dataclass(frozen=True)
class ColumnInfo:
    """One column of a TiDB table at one schema version."""

    id: int
    name: str
    offset: int
    tp: int
    flag: int = 0
    flen: int = T.UNSPECIFIED_LENGTH
    decimal: int = T.UNSPECIFIED_LENGTH
    charset: str = ""
    collate: str = ""
    elems: tuple[str, ...] = ()
    origin_default: object = None
    default: object = None
    origin_default_bit: str | None = None  # base64 of a BIT column's origin default bytes
    state: int = STATE_PUBLIC
    generated_expr: str = ""
    generated_stored: bool = False
    # TiDB's ColumnInfo.Version: 0 for columns made by TiDB before 2.1, whose TIMESTAMP defaults
    # are in the TiDB server's system time zone; 1 and up keep them in UTC. A table info without
    # it is taken as today's (2).
    version: int = CURRENT_COLUMN_INFO_VERSION
    raw: ColumnInfoJson = field(default_factory=ColumnInfoJson, compare=False, repr=False)

    # --- flags and derived facts
    @property
    def not_null(self) -> bool:
        return bool(self.flag & T.NOT_NULL_FLAG)

    @property
    def unsigned(self) -> bool:
        return bool(self.flag & T.UNSIGNED_FLAG)

    @property
    def is_primary_key(self) -> bool:
        return bool(self.flag & T.PRI_KEY_FLAG)

    @property
    def is_public(self) -> bool:
        return self.state == STATE_PUBLIC

    @property
    def is_virtual_generated(self) -> bool:
        """A generated column computed on read, never stored in rows."""
        return bool(self.generated_expr) and not self.generated_stored

    @property
    def is_binary_string(self) -> bool:
        """CHAR/VARCHAR/BLOB-family column of the binary charset (BINARY, VARBINARY, BLOB)."""
        if self.tp not in T.STRING_TYPES:
            return False
        if self.charset:
            return self.charset == T.BINARY_CHARSET
        return self.collate == T.BINARY_COLLATE or bool(self.flag & T.BINARY_FLAG)

    @property
    def type_name(self) -> str:
        return T.type_name(self.tp)

    # --- JSON
    @property
    def type_text(self) -> str:
        """The type as TiDB's ``SHOW CREATE TABLE`` writes it: ``DECIMAL(12,2)``,
        ``BIGINT UNSIGNED``, ``ENUM('a','b')``, ``VARBINARY(32)``, ``DATETIME(6)``."""
        name = self.type_name
        if self.tp in T.STRING_TYPES and self.is_binary_string:
            name = {"CHAR": "BINARY", "VARCHAR": "VARBINARY", "VAR_STRING": "VARBINARY"}.get(name, name)
        elif self.tp in T.BLOB_TYPES or self.tp == T.TYPE_BLOB:
            name = {"BLOB": "TEXT", "TINYBLOB": "TINYTEXT", "MEDIUMBLOB": "MEDIUMTEXT", "LONGBLOB": "LONGTEXT"}.get(name, name)
        if self.tp in (T.TYPE_ENUM, T.TYPE_SET):
            return name + "(" + ",".join("'" + e.replace("'", "''") + "'" for e in self.elems) + ")"
        if self.tp in T.DECIMAL_TYPES and self.flen > 0:
            name += f"({self.flen},{max(self.decimal, 0)})"
        elif self.tp in (T.TYPE_DATETIME, T.TYPE_TIMESTAMP, T.TYPE_DURATION) and self.decimal > 0:
            name += f"({self.decimal})"
        elif self.tp in (T.TYPE_BIT,) or (self.tp in (T.TYPE_STRING, T.TYPE_VARCHAR, T.TYPE_VAR_STRING) and self.flen > 0):
            name += f"({self.flen})"
        if self.unsigned and self.tp not in (T.TYPE_BIT, T.TYPE_YEAR):  # TiDB flags YEAR unsigned too
            name += " UNSIGNED"
        return name

    @classmethod
    def from_json(cls, d: ColumnInfoJson) -> ColumnInfo:
        name = parse_name(d.get("name"), "column")
        t = d.get("type")
        if not isinstance(t, Mapping) or "Tp" not in t:
            raise SchemaError(f"column {name!r} has no type object with 'Tp' in its table info: {dict(d)!r}")
        if "id" not in d:
            raise SchemaError(f"column {name!r} has no 'id' in its table info")
        return cls(
            id=int(d["id"]),
            name=name,
            offset=int(d.get("offset", 0)),
            tp=int(t["Tp"]),
            flag=int(t.get("Flag") or 0),
            flen=int(t["Flen"]) if t.get("Flen") is not None else T.UNSPECIFIED_LENGTH,
            decimal=int(t["Decimal"]) if t.get("Decimal") is not None else T.UNSPECIFIED_LENGTH,
            charset=str(t.get("Charset") or ""),
            collate=str(t.get("Collate") or ""),
            elems=tuple(str(e) for e in (t.get("Elems") or ())),
            origin_default=d.get("origin_default"),
            default=d.get("default"),
            origin_default_bit=d.get("origin_default_bit"),
            state=int(d.get("state", STATE_PUBLIC)),
            generated_expr=str(d.get("generated_expr_string") or ""),
            generated_stored=bool(d.get("generated_stored", False)),
            version=int(d["version"]) if d.get("version") is not None else CURRENT_COLUMN_INFO_VERSION,
            raw=copy.deepcopy(d),
        )

    def to_json(self) -> ColumnInfoJson:
        out = copy.deepcopy(self.raw)
        out.update({
            "id": self.id,
            "name": name_json(self.name),
            "offset": self.offset,
            "origin_default": self.origin_default,
            "default": self.default,
            "state": self.state,
            "version": self.version,
        })
        if self.origin_default_bit is not None or "origin_default_bit" in out:
            out["origin_default_bit"] = self.origin_default_bit
        if self.generated_expr or "generated_expr_string" in out:
            out["generated_expr_string"] = self.generated_expr
            out["generated_stored"] = self.generated_stored
        type_json = copy.copy(out.get("type") or FieldTypeJson())
        type_json.update({
            "Tp": self.tp,
            "Flag": self.flag,
            "Flen": self.flen,
            "Decimal": self.decimal,
            "Charset": self.charset,
            "Collate": self.collate,
            "Elems": list(self.elems) if self.elems else None,
        })
        out["type"] = type_json
        return out


class VirtualColumnJudge(Protocol):
    """Why a VIRTUAL generated column of ``table`` cannot be computed on read, or None if it can."""

    def __call__(self, table: TableInfo, column: ColumnInfo, /) -> str | None: ...


_judge: VirtualColumnJudge | None = None


def judge_virtual_columns_with(judge: VirtualColumnJudge) -> None:
    """Set what decides which VIRTUAL generated columns a read can return (the ``schema``
    package sets ``schema.generated``'s on import, before any table is read)."""
    global _judge
    _judge = judge


@dataclass(frozen=True)
class TableInfo:
    """One TiDB table at one schema version."""

    id: int
    name: str
    all_columns: tuple[ColumnInfo, ...]
    db: str = ""
    pk_is_handle: bool = False
    is_common_handle: bool = False
    schema_version: int = 0
    primary_key: tuple[str, ...] = ()  # key column names (handle column or common handle)
    raw: TableInfoJson = field(default_factory=TableInfoJson, compare=False, repr=False)

    def __post_init__(self) -> None:
        public = tuple(sorted((c for c in self.all_columns if c.is_public), key=lambda c: c.offset))
        object.__setattr__(self, "_all_public", public)
        object.__setattr__(self, "_all_by_name", {c.name.lower(): c for c in public})
        object.__setattr__(self, "_by_id", {c.id: c for c in self.all_columns})
        if any(c.is_virtual_generated for c in public):
            object.__setattr__(self, "_public", None)  # worked out on first use (schema.generated)
        else:
            object.__setattr__(self, "_public", public)
            object.__setattr__(self, "_by_name", self._all_by_name)  # type: ignore[attr-defined]
            object.__setattr__(self, "_uncomputable", {})

    def _readable(self) -> tuple[ColumnInfo, ...]:
        if self._public is None:  # type: ignore[attr-defined]
            judge = _judge
            if judge is None:
                raise SchemaError(f"table {self.qualified_name} has VIRTUAL generated columns and nothing "
                                  "judges them: import pyspark_theflash.schema, which sets schema.generated's")
            uncomputable: dict[str, str] = {}
            for c in self._all_public:  # type: ignore[attr-defined]
                if c.is_virtual_generated:
                    why = judge(self, c)
                    if why is not None:
                        uncomputable[c.name.lower()] = why
            public = tuple(c for c in self._all_public if c.name.lower() not in uncomputable)  # type: ignore[attr-defined]
            object.__setattr__(self, "_uncomputable", uncomputable)
            object.__setattr__(self, "_by_name", {c.name.lower(): c for c in public})
            object.__setattr__(self, "_public", public)
        return self._public  # type: ignore[attr-defined,no-any-return]

    @property
    def columns(self) -> tuple[ColumnInfo, ...]:
        """Public columns in offset (``SELECT *``) order — the columns a read can return: a
        VIRTUAL generated column whose expression TheFlash does not compute
        (``schema.generated``) is left out, as ``uncomputable_columns`` lists."""
        return self._readable()

    @property
    def uncomputable_columns(self) -> dict[str, str]:
        """lower-case name -> why: public VIRTUAL generated columns left out of ``columns``."""
        self._readable()
        return dict(self._uncomputable)  # type: ignore[attr-defined]

    def column_any(self, name: str) -> ColumnInfo | None:
        """The public column called ``name``, readable or not (generated expressions see all)."""
        return self._all_by_name.get(name.lower())  # type: ignore[attr-defined,no-any-return]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def qualified_name(self) -> str:
        return f"{self.db}.{self.name}" if self.db else self.name

    def column(self, name: str) -> ColumnInfo:
        """The public column called ``name`` (case-insensitive, as in MySQL)."""
        self._readable()
        try:
            return self._by_name[name.lower()]  # type: ignore[attr-defined,no-any-return]
        except KeyError:
            why = self._uncomputable.get(name.lower())  # type: ignore[attr-defined]
            if why is not None:
                c = self._all_by_name[name.lower()]  # type: ignore[attr-defined]
                raise UnknownColumnError(
                    f"column {c.name!r} of {self.qualified_name} is a VIRTUAL generated column "
                    f"({c.generated_expr}) that TiDB never stores and TheFlash does not compute: {why}. "
                    f"Leave it out of the read (its readable columns are {', '.join(self.column_names)}), "
                    f"or make it STORED upstream") from None
            raise UnknownColumnError(
                f"table {self.qualified_name} (id {self.id}, schema version {self.schema_version}) has no "
                f"column {name!r}; its columns are {', '.join(self.column_names)}"
            ) from None

    def has_column(self, name: str) -> bool:
        self._readable()
        return name.lower() in self._by_name  # type: ignore[attr-defined]

    def column_by_id(self, column_id: int) -> ColumnInfo:
        """The column with this id, public or not (rows are keyed by column id)."""
        try:
            return self._by_id[column_id]  # type: ignore[attr-defined,no-any-return]
        except KeyError:
            raise UnknownColumnError(
                f"table {self.qualified_name} (id {self.id}, schema version {self.schema_version}) "
                f"has no column with id {column_id}"
            ) from None

    @property
    def handle_column(self) -> ColumnInfo | None:
        """The integer primary key column that is the row handle (``pk_is_handle``), else None."""
        if not self.pk_is_handle:
            return None
        if self.primary_key:
            return self.column(self.primary_key[0])
        for c in self.columns:
            if c.is_primary_key and c.tp in T.INTEGER_TYPES:
                return c
        raise SchemaError(f"table {self.qualified_name} is pk_is_handle but no integer column has the primary key flag")

    @property
    def primary_key_columns(self) -> tuple[ColumnInfo, ...]:
        return tuple(self.column(n) for n in self.primary_key)

    # --- partitioned tables (their partitions: ``schema.partitioning``)
    @property
    def partition_of(self) -> int | None:
        """For one partition's physical table as the store keeps it: the logical table's id."""
        d = self.raw.get("partition_of")
        return int(d["id"]) if d else None

    # --- JSON
    @classmethod
    def from_json(cls, d: TableInfoJson, db: str | None = None) -> TableInfo:
        if "id" not in d:
            raise SchemaError(f"table info has no 'id': keys are {sorted(d)}")
        name = parse_name(d.get("name"), "table")
        cols = d.get("cols")
        if not isinstance(cols, Sequence) or isinstance(cols, (str, bytes)):
            raise SchemaError(f"table info of {name!r} has no 'cols' list")
        columns = tuple(ColumnInfo.from_json(c) for c in cols)
        version = d.get("schema_version")
        if version is None:
            version = d.get("update_timestamp", 0)
        pk_is_handle = bool(d.get("pk_is_handle", False))
        primary_key = _primary_key_names(d, columns, pk_is_handle)
        return cls(
            id=int(d["id"]),
            name=name,
            all_columns=columns,
            db=db if db is not None else str(d.get("db_name") or ""),
            pk_is_handle=pk_is_handle,
            is_common_handle=bool(d.get("is_common_handle", False)),
            schema_version=int(version or 0),
            primary_key=primary_key,
            raw=copy.deepcopy(d),
        )

    def to_json(self) -> TableInfoJson:
        out = copy.deepcopy(self.raw)
        out.update({
            "id": self.id,
            "name": name_json(self.name),
            "cols": [c.to_json() for c in self.all_columns],
            "pk_is_handle": self.pk_is_handle,
            "is_common_handle": self.is_common_handle,
        })
        if "schema_version" in out or "update_timestamp" not in out:
            out["schema_version"] = self.schema_version
        return out


def _primary_key_names(d: TableInfoJson, columns: Sequence[ColumnInfo], pk_is_handle: bool) -> tuple[str, ...]:
    by_lower = {c.name.lower(): c.name for c in columns}
    for index in d.get("index_info") or []:
        if index.get("primary"):
            names = [parse_name(c.get("name"), "index column") for c in index.get("idx_cols") or []]
            missing = [n for n in names if n.lower() not in by_lower]
            if missing:
                raise SchemaError(f"primary index names column(s) {missing} that the table does not have")
            return tuple(by_lower[n.lower()] for n in names)
    flagged = [c for c in columns if c.is_primary_key and c.is_public]
    if pk_is_handle:
        ints = [c for c in flagged if c.tp in T.INTEGER_TYPES]
        return (ints[0].name,) if ints else ()
    return tuple(c.name for c in sorted(flagged, key=lambda c: c.offset))


def primary_index_json(table_columns: Sequence[ColumnInfo], index_id: int = 1) -> IndexInfoJson:
    """TiDB's ``index_info`` entry of a PRIMARY KEY on these columns."""
    return {
        "id": index_id,
        "idx_name": name_json("PRIMARY"),
        "tbl_name": name_json(""),
        "idx_cols": [
            {"name": name_json(c.name), "offset": c.offset, "length": T.UNSPECIFIED_LENGTH} for c in table_columns
        ],
        "state": STATE_PUBLIC,
        "unique": True,
        "primary": True,
        "index_type": 1,
    }
