"""``theflash codec``: keys, datums, rows, locks, writes and timestamps decoded from hex."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from pyspark_theflash import codec
from pyspark_theflash.cli import main
from pyspark_theflash.codec import Datum, DecimalValue, Lock, Write
from pyspark_theflash.codec.keys import encode_index_key
from pyspark_theflash.codec.time import pack_time_fields


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(["codec", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_keys_of_every_kind_are_told_apart(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "key", codec.encode_record_key(43, -7).hex()) == {"kind": "record", "table_id": 43, "handle": -7}
    common = codec.encode_common_handle_key(9, [Datum("bytes", b"eu"), Datum("int", 3)])
    assert run(capsys, "key", common.hex()) == {
        "kind": "record", "table_id": 9,
        "common_handle": [{"kind": "bytes", "value": {"hex": "6575", "text": "eu"}}, {"kind": "int", "value": 3}],
    }
    index = encode_index_key(105, 1, [Datum("int", 20000)])
    assert run(capsys, "key", "0x " + index.hex()) == {
        "kind": "index", "table_id": 105, "index_id": 1, "values": [{"kind": "int", "value": 20000}],
    }
    bound = codec.encode_region_key(codec.encode_record_key(5, 100))
    assert run(capsys, "key", bound.hex(), "--encoded") == {"kind": "record", "table_id": 5, "handle": 100}


def test_rows_of_both_formats(capsys: pytest.CaptureFixture[str]) -> None:
    v1 = codec.encode_row_v1([(1, Datum("int", 127)), (2, Datum("null"))])
    assert run(capsys, "row", v1.hex()) == {
        "format": "v1", "columns": {"1": {"kind": "int", "value": 127}, "2": {"kind": "null", "value": None}},
    }
    v2 = codec.encode_row_v2([(1, Datum("int", 1000)), (3, Datum("null"))])  # type: ignore[attr-defined]
    assert run(capsys, "row", v2.hex()) == {"format": "v2", "columns": {"1": {"hex": "e803"}, "3": None}}


def test_datums_locks_and_writes(capsys: pytest.CaptureFixture[str]) -> None:
    datums = codec.encode_value([Datum("float", 1.5), Datum("decimal", DecimalValue(Decimal("-10.55"), 4, 2))])
    assert run(capsys, "datums", datums.hex()) == [{"kind": "float", "value": 1.5}, {"kind": "decimal", "value": "-10.55"}]
    lock = run(capsys, "lock", Lock("P", b"pk", 111, 222, min_commit_ts=555).to_bytes().hex())
    assert (lock["lock_type"], lock["primary"]["text"], lock["start_ts"], lock["ttl"], lock["min_commit_ts"]) == ("P", "pk", 111, 222, 555)
    write = run(capsys, "write", Write("R", 1 << 40, b"p").to_bytes().hex())
    assert (write["write_type"], write["start_ts"], write["short_value"]) == ("R", 1 << 40, {"hex": "70", "text": "p"})


def test_timestamps_and_packed_times(capsys: pytest.CaptureFixture[str]) -> None:
    ts = codec.compose_ts(1_690_775_098_378, 245_773)
    assert run(capsys, "ts", str(ts)) == {
        "ts": ts, "physical_ms": 1_690_775_098_378, "logical": 245_773, "utc": "2023-07-31T03:44:58.378000+00:00",
    }
    packed = codec.pack_datetime(dt.datetime(2018, 1, 19, 3, 14, 7, 5))
    out = run(capsys, "time", str(packed))
    assert (out["year"], out["microsecond"], out["datetime"]) == (2018, 5, "2018-01-19 03:14:07.000005")


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["key", "zz"], "'zz' is not hex bytes"), (["datums", "63"], "unknown datum flag 0x63 at offset 0"),
     (["key", "7800"], "not a TiDB table, record or index key"), (["lock", ""], "lock : is empty"),
     (["time", str(pack_time_fields(2021, 2, 30))], "not a valid date")],
)
def test_bad_input_is_a_user_error(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main(["codec", *argv]) == 2
    assert message in capsys.readouterr().err
