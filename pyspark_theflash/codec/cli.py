"""``theflash codec``: decode TiDB/TiKV bytes by hand (what ``tidb_decode_key`` and
``tikv-ctl`` show), printing one JSON object per input.

    theflash codec key <hex> [--encoded]   record key (int or common handle) or index key;
                                           --encoded: PD's memcomparable form of a region bound
    theflash codec datums <hex>            flag-prefixed datums (codec.EncodeKey / EncodeValue)
    theflash codec row <hex>               row v2 (first byte 0x80): raw value bytes per column id;
                                           otherwise row v1: datums per column id
    theflash codec lock <hex>              TiKV lock CF value (Percolator lock)
    theflash codec write <hex>             TiKV write CF value (Percolator write record)
    theflash codec ts <tso>                TSO → physical ms, logical and UTC time
    theflash codec time <packed>           packed DATE/DATETIME/TIMESTAMP uint64 → fields

Hex may contain spaces and a ``0x`` prefix. Bytes print as ``{"hex": .., "text": ..}`` (text
only when they are printable UTF-8).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
from decimal import Decimal
from typing import Callable, TypeVar

from pyspark_theflash.cli import CommandError

_T = TypeVar("_T")  # what a decoding function returns


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "codec", help="decode TiDB/TiKV keys, values, rows, locks, writes and timestamps",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="codec_command", metavar="SUBCOMMAND", required=True)
    key = sub.add_parser("key", help="decode a record or index key")
    key.add_argument("hex", help="the key's bytes in hex (spaces and a 0x prefix allowed)")
    key.add_argument("--encoded", action="store_true", help="the key is PD's encoded form (region boundary)")
    key.set_defaults(func=run_key)
    for name, helptext, func in (
        ("datums", "decode flag-prefixed datums", run_datums),
        ("row", "decode a row value (v2 or v1)", run_row),
        ("lock", "decode a TiKV lock CF value", run_lock),
        ("write", "decode a TiKV write CF value", run_write),
    ):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("hex", help="the bytes in hex (spaces and a 0x prefix allowed)")
        sp.set_defaults(func=func)
    ts = sub.add_parser("ts", help="split a TSO timestamp")
    ts.add_argument("tso", type=int, help="a TSO timestamp (a decimal uint64)")
    ts.set_defaults(func=run_ts)
    packed = sub.add_parser("time", help="unpack a packed DATE/DATETIME/TIMESTAMP")
    packed.add_argument("packed", type=int, help="a packed DATE/DATETIME/TIMESTAMP value (a decimal uint64)")
    packed.set_defaults(func=run_time)


def parse_hex(text: str) -> bytes:
    cleaned = "".join(text.split())
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise CommandError(f"{text!r} is not hex bytes") from None


def jsonable(value: object) -> object:
    """A JSON-friendly rendering of decoded values (bytes as hex plus text when printable)."""
    from pyspark_theflash.codec.datum import Datum

    if isinstance(value, Datum):
        return {"kind": value.kind, "value": jsonable(value.value)}
    if isinstance(value, (bytes, bytearray)):
        out: dict[str, object] = {"hex": bytes(value).hex()}
        try:
            text = bytes(value).decode("utf-8")
            if text.isprintable():
                out["text"] = text
        except UnicodeDecodeError:
            pass
        return out
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.timedelta)):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def _print(obj: object) -> int:
    print(json.dumps(jsonable(obj), ensure_ascii=False))
    return 0


def _decoding(func: Callable[..., _T], *args: object) -> _T:
    from pyspark_theflash.codec.errors import CodecError

    try:
        return func(*args)
    except CodecError as exc:
        raise CommandError(str(exc)) from None


def decode_any_key(key: bytes) -> dict[str, object]:
    """What a TiDB key is: a record key (int or common handle) or an index key."""
    from pyspark_theflash.codec import keys

    if keys.is_record_key(key):
        if len(key) == keys.RECORD_KEY_LEN:
            table_id, handle = keys.decode_record_key(key)
            return {"kind": "record", "table_id": table_id, "handle": handle}
        table_id, datums = keys.decode_common_handle_key(key)
        return {"kind": "record", "table_id": table_id, "common_handle": datums}
    if key[9:11] == keys.INDEX_SEP:
        table_id, index_id, datums = keys.decode_index_key(key)
        return {"kind": "index", "table_id": table_id, "index_id": index_id, "values": datums}
    if len(key) == keys.TABLE_PREFIX_LEN and key[:1] == keys.TABLE_PREFIX:
        from pyspark_theflash.codec.number import decode_int_at

        return {"kind": "table", "table_id": decode_int_at(key, 1)[0]}
    from pyspark_theflash.codec.errors import BadKeyError

    raise BadKeyError(f"key {key.hex()} is not a TiDB table, record or index key")


def run_key(args: argparse.Namespace) -> int:
    from pyspark_theflash.codec.keys import decode_region_key

    key = parse_hex(args.hex)
    if args.encoded:
        key = _decoding(decode_region_key, key)
    return _print(_decoding(decode_any_key, key))


def run_datums(args: argparse.Namespace) -> int:
    from pyspark_theflash.codec.datum import decode_datums

    return _print(_decoding(decode_datums, parse_hex(args.hex)))


def run_row(args: argparse.Namespace) -> int:
    data = parse_hex(args.hex)
    if data[:1] == b"\x80":
        from pyspark_theflash.codec.row_v2 import decode_row_v2

        return _print({"format": "v2", "columns": _decoding(decode_row_v2, data)})
    from pyspark_theflash.codec.row_v1 import decode_row_v1

    return _print({"format": "v1", "columns": _decoding(decode_row_v1, data)})


def run_lock(args: argparse.Namespace) -> int:
    from pyspark_theflash.codec.txn import Lock

    return _print(dataclasses.asdict(_decoding(Lock.parse, parse_hex(args.hex))))


def run_write(args: argparse.Namespace) -> int:
    from pyspark_theflash.codec.txn import Write

    return _print(dataclasses.asdict(_decoding(Write.parse, parse_hex(args.hex))))


def run_ts(args: argparse.Namespace) -> int:
    from pyspark_theflash.codec.tso import logical, physical_ms, ts_to_datetime

    if not 0 <= args.tso < 1 << 64:
        raise CommandError(f"{args.tso} is not a uint64 TSO")
    return _print({"ts": args.tso, "physical_ms": physical_ms(args.tso), "logical": logical(args.tso),
                   "utc": ts_to_datetime(args.tso).isoformat()})


def run_time(args: argparse.Namespace) -> int:
    from pyspark_theflash.codec.time import unpack_datetime, unpack_time_fields

    fields = _decoding(unpack_time_fields, args.packed)
    names = ("year", "month", "day", "hour", "minute", "second", "microsecond")
    out: dict[str, object] = dict(zip(names, fields))
    out["datetime"] = _decoding(unpack_datetime, args.packed)
    return _print(out)
