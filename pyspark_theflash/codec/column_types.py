"""MySQL column type codes and flags (a column's field type: ``type.Tp``, ``type.Flag``,
``Flen``, ``Charset`` in TiDB's table info JSON); values from TiDB's ``parser/mysql/type.go``
and ``const.go``. They are facts of the wire, not of a schema: a row value's bytes are read by
its column's type code and flags, so the codec owns them and ``schema`` reads them from here.

Names are given in Python style (``TYPE_NEWDECIMAL``) and, for readers of TiDB's source,
in TiDB's own spelling (``TypeNewDecimal``).
"""
from __future__ import annotations

# ----------------------------------------------------------------- type codes (type.Tp)
TYPE_DECIMAL = 0x00  # the pre-5.0 MySQL DECIMAL; TiDB writes TYPE_NEWDECIMAL
TYPE_TINY = 0x01
TYPE_SHORT = 0x02
TYPE_LONG = 0x03
TYPE_FLOAT = 0x04
TYPE_DOUBLE = 0x05
TYPE_NULL = 0x06
TYPE_TIMESTAMP = 0x07
TYPE_LONGLONG = 0x08
TYPE_INT24 = 0x09
TYPE_DATE = 0x0A
TYPE_DURATION = 0x0B
TYPE_DATETIME = 0x0C
TYPE_YEAR = 0x0D
TYPE_NEWDATE = 0x0E
TYPE_VARCHAR = 0x0F
TYPE_BIT = 0x10
TYPE_JSON = 0xF5
TYPE_NEWDECIMAL = 0xF6
TYPE_ENUM = 0xF7
TYPE_SET = 0xF8
TYPE_TINY_BLOB = 0xF9
TYPE_MEDIUM_BLOB = 0xFA
TYPE_LONG_BLOB = 0xFB
TYPE_BLOB = 0xFC
TYPE_VAR_STRING = 0xFD
TYPE_STRING = 0xFE
TYPE_GEOMETRY = 0xFF

TYPE_NAMES: dict[int, str] = {
    TYPE_DECIMAL: "DECIMAL(old)",
    TYPE_TINY: "TINYINT",
    TYPE_SHORT: "SMALLINT",
    TYPE_LONG: "INT",
    TYPE_FLOAT: "FLOAT",
    TYPE_DOUBLE: "DOUBLE",
    TYPE_NULL: "NULL",
    TYPE_TIMESTAMP: "TIMESTAMP",
    TYPE_LONGLONG: "BIGINT",
    TYPE_INT24: "MEDIUMINT",
    TYPE_DATE: "DATE",
    TYPE_DURATION: "TIME",
    TYPE_DATETIME: "DATETIME",
    TYPE_YEAR: "YEAR",
    TYPE_NEWDATE: "DATE(new)",
    TYPE_VARCHAR: "VARCHAR",
    TYPE_BIT: "BIT",
    TYPE_JSON: "JSON",
    TYPE_NEWDECIMAL: "DECIMAL",
    TYPE_ENUM: "ENUM",
    TYPE_SET: "SET",
    TYPE_TINY_BLOB: "TINYBLOB",
    TYPE_MEDIUM_BLOB: "MEDIUMBLOB",
    TYPE_LONG_BLOB: "LONGBLOB",
    TYPE_BLOB: "BLOB",
    TYPE_VAR_STRING: "VAR_STRING",
    TYPE_STRING: "CHAR",
    TYPE_GEOMETRY: "GEOMETRY",
}

INTEGER_TYPES = frozenset({TYPE_TINY, TYPE_SHORT, TYPE_INT24, TYPE_LONG, TYPE_LONGLONG})
FLOAT_TYPES = frozenset({TYPE_FLOAT, TYPE_DOUBLE})
DECIMAL_TYPES = frozenset({TYPE_NEWDECIMAL, TYPE_DECIMAL})
TIME_TYPES = frozenset({TYPE_DATE, TYPE_NEWDATE, TYPE_DATETIME, TYPE_TIMESTAMP})
STRING_TYPES = frozenset(
    {TYPE_VARCHAR, TYPE_VAR_STRING, TYPE_STRING, TYPE_TINY_BLOB, TYPE_MEDIUM_BLOB, TYPE_LONG_BLOB, TYPE_BLOB}
)
BLOB_TYPES = frozenset({TYPE_TINY_BLOB, TYPE_MEDIUM_BLOB, TYPE_LONG_BLOB, TYPE_BLOB})

# ----------------------------------------------------------------- column flags (type.Flag)
NOT_NULL_FLAG = 1
PRI_KEY_FLAG = 1 << 1
UNIQUE_KEY_FLAG = 1 << 2
MULTIPLE_KEY_FLAG = 1 << 3
BLOB_FLAG = 1 << 4
UNSIGNED_FLAG = 1 << 5
ZEROFILL_FLAG = 1 << 6
BINARY_FLAG = 1 << 7
ENUM_FLAG = 1 << 8
AUTO_INCREMENT_FLAG = 1 << 9
TIMESTAMP_FLAG = 1 << 10
SET_FLAG = 1 << 11
NO_DEFAULT_VALUE_FLAG = 1 << 12
ON_UPDATE_NOW_FLAG = 1 << 13
PART_KEY_FLAG = 1 << 14
NUM_FLAG = 1 << 15

UNSPECIFIED_LENGTH = -1
BINARY_CHARSET = "binary"
BINARY_COLLATE = "binary"
DEFAULT_CHARSET = "utf8mb4"
DEFAULT_COLLATE = "utf8mb4_bin"

# ----------------------------------------------------------------- TiDB's spelling
TypeDecimal = TYPE_DECIMAL
TypeTiny = TYPE_TINY
TypeShort = TYPE_SHORT
TypeLong = TYPE_LONG
TypeFloat = TYPE_FLOAT
TypeDouble = TYPE_DOUBLE
TypeNull = TYPE_NULL
TypeTimestamp = TYPE_TIMESTAMP
TypeLonglong = TYPE_LONGLONG
TypeInt24 = TYPE_INT24
TypeDate = TYPE_DATE
TypeDuration = TYPE_DURATION
TypeDatetime = TYPE_DATETIME
TypeYear = TYPE_YEAR
TypeNewDate = TYPE_NEWDATE
TypeVarchar = TYPE_VARCHAR
TypeBit = TYPE_BIT
TypeJSON = TYPE_JSON
TypeNewDecimal = TYPE_NEWDECIMAL
TypeEnum = TYPE_ENUM
TypeSet = TYPE_SET
TypeTinyBlob = TYPE_TINY_BLOB
TypeMediumBlob = TYPE_MEDIUM_BLOB
TypeLongBlob = TYPE_LONG_BLOB
TypeBlob = TYPE_BLOB
TypeVarString = TYPE_VAR_STRING
TypeString = TYPE_STRING
TypeGeometry = TYPE_GEOMETRY
NotNullFlag = NOT_NULL_FLAG
PriKeyFlag = PRI_KEY_FLAG
UniqueKeyFlag = UNIQUE_KEY_FLAG
MultipleKeyFlag = MULTIPLE_KEY_FLAG
BlobFlag = BLOB_FLAG
UnsignedFlag = UNSIGNED_FLAG
ZerofillFlag = ZEROFILL_FLAG
BinaryFlag = BINARY_FLAG
EnumFlag = ENUM_FLAG
AutoIncrementFlag = AUTO_INCREMENT_FLAG
TimestampFlag = TIMESTAMP_FLAG
SetFlag = SET_FLAG
NoDefaultValueFlag = NO_DEFAULT_VALUE_FLAG
OnUpdateNowFlag = ON_UPDATE_NOW_FLAG
NumFlag = NUM_FLAG


def type_name(tp: int) -> str:
    """The SQL name of a type code, or ``type 0x..`` for one TiDB does not define."""
    return TYPE_NAMES.get(tp, f"type 0x{tp:02x}")
