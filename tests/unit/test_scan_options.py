"""Read options and snapshot ts choice: the pieces of the read path that need neither a store
nor a Spark session."""
from __future__ import annotations

import datetime as dt
import re

import pytest

from pyspark_theflash.codec.tso import compose_ts, physical_ms
from pyspark_theflash.scan.errors import ScanOptionError, SnapshotTsOutOfRangeError
from pyspark_theflash.scan.options import (
    HANDLE_RANGES_OPTION,
    ScanOptions,
    format_handle_ranges,
    parse_duration_s,
    parse_handle_ranges,
    parse_size_bytes,
)
from pyspark_theflash.scan.snapshot import as_of_to_ts, check_snapshot_ts, requested_ts


def test_options_take_the_table_from_the_load_path_and_parse_units() -> None:
    o = ScanOptions.from_mapping({"STORE": "/s", "path": "bank.accounts", "region_wait_timeout": "500ms",
                                  "partition_target_bytes": "8MiB", "isolation": "rc", "columns": "a, b",
                                  "hidden": "_tidb_commit_ts"})
    assert (o.store, o.table, o.isolation) == ("/s", "bank.accounts", "RC")
    assert o.region_wait_timeout_s == pytest.approx(0.5)
    assert o.partition_target_bytes == 8 << 20
    assert o.columns == ("a", "b") and o.hidden == ("_tidb_commit_ts",)
    assert parse_duration_s("x", "2m") == 120.0 and parse_size_bytes("x", "1g") == 1 << 30


@pytest.mark.parametrize("options, message", [
    ({"table": "a.b"}, "store"),
    ({"store": "/s"}, "no table"),
    ({"store": "/s", "table": "nodot"}, "db.table"),
    ({"store": "/s", "table": "a.b", "isolation": "RR"}, "isolation"),
    ({"store": "/s", "table": "a.b", "hidden": "_tidb_delmark"}, "hidden"),
    ({"store": "/s", "table": "a.b", "snapshot_ts": "yesterday"}, "TSO"),
    ({"store": "/s", "table": "a.b", "snapshot_ts": "5", "as_of": "2026-01-01"}, "either"),
    ({"store": "/s", "table": "a.b", "region_wait_timeout": "soon"}, "duration"),
])
def test_bad_options_are_refused_with_what_to_write(options: dict, message: str) -> None:
    with pytest.raises(ScanOptionError, match=message):
        ScanOptions.from_mapping(options)


def test_as_of_is_the_last_ts_of_that_millisecond_utc_unless_an_offset_is_given() -> None:
    ts = as_of_to_ts("2026-11-21 06:00:00")
    moment = dt.datetime(2026, 11, 21, 6, tzinfo=dt.timezone.utc)
    assert physical_ms(ts) == int(moment.timestamp() * 1000)
    assert ts == compose_ts(physical_ms(ts), (1 << 18) - 1)
    assert as_of_to_ts("2026-11-21T14:00:00+08:00") == ts
    assert as_of_to_ts(str(moment.timestamp())) == ts
    with pytest.raises(ScanOptionError, match="ISO-8601"):
        as_of_to_ts("half past six")


def test_snapshot_option_wins_over_the_session_pin() -> None:
    o = ScanOptions.from_mapping({"store": "/s", "table": "a.b", "snapshot_ts": "42", "theflash.snapshot_ts": "7"})
    assert requested_ts(o) == 42
    assert requested_ts(ScanOptions.from_mapping({"store": "/s", "table": "a.b", "theflash.snapshot_ts": "7"})) == 7
    assert requested_ts(ScanOptions.from_mapping({"store": "/s", "table": "a.b"})) is None


def test_ts_outside_the_readable_range_names_the_range() -> None:
    safe, now = compose_ts(1_700_000_000_000), compose_ts(1_800_000_000_000)
    check_snapshot_ts(safe, safe, now)
    with pytest.raises(SnapshotTsOutOfRangeError, match=rf"below the GC safe point.*\[{safe}, {now}\]"):
        check_snapshot_ts(safe - 1, safe, now)
    with pytest.raises(SnapshotTsOutOfRangeError, match=rf"in the future.*\[{safe}, {now}\]"):
        check_snapshot_ts(now + 1, safe, now)


def test_the_handle_ranges_of_one_planned_stream_carry_int_and_common_handles() -> None:
    # A clustered table's handles are memcomparable bytes (any byte, 0x00 and 0xff included);
    # JSON has no bytes, so they travel as {"hex": ...} and come back byte for byte.
    ranges = [(None, b"\x01a\x00\xff\x03\x80"), (b"\x01a\x00\xff\x03\x80", b"\x03\x7f\xff"), (b"\xff", None)]
    text = format_handle_ranges(ranges)
    assert parse_handle_ranges(text) == tuple(ranges)
    assert parse_handle_ranges(format_handle_ranges([(None, -5), (-5, 1 << 62)])) == ((None, -5), (-5, 1 << 62))
    options = ScanOptions.from_mapping({"store": "/s", "path": "db.t", HANDLE_RANGES_OPTION: text})
    assert options.handle_ranges == tuple(ranges)
    for bad in ('[[1]]', '[["1", 2]]', '[[{"hex": "zz"}, null]]', '[[true, null]]'):
        with pytest.raises(ScanOptionError, match=HANDLE_RANGES_OPTION):
            parse_handle_ranges(bad)


@pytest.mark.parametrize("typo, meant", [("isolaton", "isolation"), ("snapshotts", "snapshot_ts"), ("colums", "columns")])
def test_a_misspelt_option_is_refused_naming_the_one_meant_not_ignored(typo: str, meant: str) -> None:
    """Ignored, ``isolaton=RC`` or ``snapshotts=1`` read the latest data under SI: a silent
    wrong answer. Every option a read takes is listed in the error."""
    with pytest.raises(ScanOptionError) as err:
        ScanOptions.from_mapping({"store": "/s", "path": "db.t", typo: "1"})
    text = str(err.value)
    assert f"unknown option '{typo}' (did you mean '{meant}'?)" in text
    assert all(name in text for name in ("store", "snapshot_ts", "as_of", "isolation", "token"))
    # the options Spark and the package themselves pass are known
    ScanOptions.from_mapping({"STORE": "/s", "path": "db.t", "theflash.snapshot_ts": "5", "_theflash_handle_ranges": "[]"})


TOKEN = "scan-t0ken-5e1d"


def test_the_token_option_beats_token_file_whose_first_line_is_the_token(tmp_path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"  {TOKEN}\n# the first line is the token\n")
    base = {"store": "/s", "path": "db.t"}
    from_file = ScanOptions.from_mapping({**base, "token_file": str(token_file)}).token
    assert from_file is not None and from_file.header() == f"Bearer {TOKEN}"
    assert from_file.source == f"option token_file {token_file}"
    given = ScanOptions.from_mapping({**base, "TOKEN": "other", "token_file": str(token_file)}).token
    assert given is not None and (given.header(), given.source) == ("Bearer other", "option token")
    blank = ScanOptions.from_mapping({**base, "token": " ", "token_file": str(token_file)}).token
    assert blank == from_file  # a blank token is not given
    assert ScanOptions.from_mapping(base).token is None  # the sender's THEFLASH_TOKEN then
    # the value is in the Authorization header only: never in a repr (a logged plan or partition)
    options = ScanOptions.from_mapping({**base, "token_file": str(token_file)})
    assert TOKEN not in repr(options) and f"BearerToken(from option token_file {token_file})" in repr(options)


def test_a_token_file_that_is_missing_or_empty_or_a_token_a_header_cannot_carry_is_refused_by_name(tmp_path) -> None:
    base = {"store": "/s", "path": "db.t"}
    missing, empty = tmp_path / "no-such-token", tmp_path / "empty"
    empty.write_text("\n\n")
    with pytest.raises(ScanOptionError, match=f"^cannot read the token file {missing} \\(option token_file\\): "):
        ScanOptions.from_mapping({**base, "token_file": str(missing)})
    with pytest.raises(ScanOptionError) as err:
        ScanOptions.from_mapping({**base, "token_file": str(empty)})
    assert str(err.value) == (f"the token file {empty} (option token_file) is empty: put the bearer token on its "
                              "first line")
    with pytest.raises(ScanOptionError) as err:
        ScanOptions.from_mapping({**base, "token": f"{TOKEN} x"})
    assert str(err.value) == ("the bearer token from option token has a character at position 16 that an HTTP header "
                              "cannot carry (a token is printable ASCII without spaces)")


def test_token_and_token_file_are_known_options_and_a_typo_of_them_is_refused() -> None:
    with pytest.raises(ScanOptionError) as err:
        ScanOptions.from_mapping({"store": "/s", "path": "db.t", "tokn": TOKEN})
    text = str(err.value)
    assert text.startswith("unknown option 'tokn' (did you mean 'token'?); theflash reads take: ")
    assert ", token, token_file," in text and TOKEN not in text


def test_version_as_of_and_timestamp_as_of_are_delta_and_icebergs_names_of_snapshot_ts_and_as_of() -> None:
    by_alias = ScanOptions.from_mapping({"store": "/s", "path": "db.t", "versionAsOf": "4520"})
    assert by_alias.snapshot_ts == 4520 and requested_ts(by_alias) == 4520
    at = ScanOptions.from_mapping({"store": "/s", "path": "db.t", "timestampAsOf": "2026-11-21 06:00:00"})
    assert at.as_of == "2026-11-21 06:00:00"
    same = ScanOptions.from_mapping({"store": "/s", "path": "db.t", "versionasof": "7", "snapshot_ts": "7"})
    assert same.snapshot_ts == 7
    with pytest.raises(ScanOptionError, match="option snapshot_ts='7' and its alias versionAsOf='8' disagree"):
        ScanOptions.from_mapping({"store": "/s", "path": "db.t", "versionAsOf": "8", "snapshot_ts": "7"})


@pytest.mark.parametrize("options,message", [
    ({"snapshot": "stale"}, "option snapshot='stale': use fresh (default) or resolved"),
    ({"max_staleness": "soon"}, "option max_staleness='soon' is not a duration"),
    ({"max_staleness": "0s"}, "must be a positive duration"),
    ({"snapshot": "resolved", "snapshot_ts": "5"}, "give one or the other"),
    ({"max_staleness": "5s", "as_of": "2026-11-21"}, "give one or the other"),
    ({"snapshot": "resolved", "max_staleness": "5s"}, "snapshot=resolved reads the resolved ts whatever its age"),
])
def test_snapshot_modes_and_max_staleness_are_checked(options: dict, message: str) -> None:
    with pytest.raises(ScanOptionError, match=re.escape(message)):
        ScanOptions.from_mapping({"store": "/s", "path": "db.t", **options})
    parsed = ScanOptions.from_mapping({"store": "/s", "path": "db.t", "max_staleness": "1.5s"})
    assert (parsed.snapshot, parsed.max_staleness_s) == ("fresh", 1.5)
    assert ScanOptions.from_mapping({"store": "/s", "path": "db.t", "snapshot": "Resolved"}).snapshot == "resolved"


def test_a_schema_remedy_names_the_flag_of_the_command_that_met_it() -> None:
    """A read at a past ts that needs ``schema=current`` says so in the caller's own words: the
    read option to a Spark or service reader, ``--schema current`` to ``theflash scan``, nothing
    to a command without such a flag (``theflash sql``)."""
    from pyspark_theflash.engine.cli import FLAGS as SQL_FLAGS
    from pyspark_theflash.scan.cli import FLAGS as SCAN_FLAGS
    from pyspark_theflash.scan.errors import SchemaNotCaughtUpError, TableNotAtTsError, as_flags

    late = SchemaNotCaughtUpError("shop.items", 200, 0, 30.0)
    assert str(late).endswith("Raise region_wait_timeout, or read with schema=current (today's table at ts)")
    assert late.phrased(as_flags(SCAN_FLAGS)).endswith(
        "Raise --region-wait-timeout, or read with --schema current (today's table at ts)")
    assert late.phrased(as_flags(SQL_FLAGS)).endswith("(theflash writer status)?")
    missing = TableNotAtTsError("table shop.items did not exist at ts 5: no table had that name then")
    assert missing.phrased(as_flags(SCAN_FLAGS)).endswith(", or read with --schema current to read today's table at ts")
    assert str(missing).endswith(", or read with schema=current to read today's table at ts")
    gone = TableNotAtTsError("table shop.items did not exist at ts 5: check the name and the ts", today_table=False)
    assert gone.phrased(as_flags(SCAN_FLAGS)).endswith("check the name and the ts")


def test_the_connector_jars_form_is_the_one_parsers_reading_with_aliases_feeds_and_the_session_pin() -> None:
    """``connector_read_form`` (POST /v1/read-options) is what ReadOptions.java keeps of a read:
    every value as ScanOptions reads it, the change feed without an end as the jar follows it."""
    from pyspark_theflash.scan.options import connector_read_form

    form = connector_read_form({"server": "http://h:1", "table": " a.b ", "versionasof": "77", "batch_rows": "1_000",
                                "min_partitions": "3", "hidden": "_tidb_rowid", "isolation": "rc", "token_file": "/t"})
    assert (form["table"], form["store"], form["snapshot_ts"], form["as_of"], form["isolation"]) == (
        "a.b", None, 77, None, "RC")
    assert form["request"] == {"batch_rows": "1_000", "min_streams": "3"} and form["hidden"] == ["_tidb_rowid"]
    assert form["raw"]["snapshot_ts"] == "77" and "versionasof" not in form["raw"]  # the alias under our name
    # the session pin travels as an option: a read's own ts beats it, as_of too
    assert connector_read_form({"table": "a.b", "theflash.snapshot_ts": "9"})["snapshot_ts"] == 9
    assert connector_read_form({"table": "a.b", "theflash.snapshot_ts": "9", "snapshot_ts": "8"})["snapshot_ts"] == 8
    pinned = connector_read_form({"table": "a.b", "theflash.snapshot_ts": "9", "timestampasof": "2026-11-21"})
    assert (pinned["snapshot_ts"], pinned["as_of"]) == (None, "2026-11-21")
    # snapshot and max_staleness as given (None: the session's confs decide)
    assert connector_read_form({"table": "a.b"})["snapshot"] is None
    assert connector_read_form({"table": "a.b", "snapshot": " Resolved "})["snapshot"] == "resolved"
    # Delta's change feed: with an end a batch change read; without one, where it starts
    ended = connector_read_form({"table": "a.b", "readchangefeed": "true", "startingversion": "5",
                                 "endingversion": "9"})
    assert (ended["snapshot_ts"], ended["feed_from"], ended["request"]) == (9, None, {"changes_from": "4"})
    open_ended = connector_read_form({"table": "a.b", "readchangefeed": "true", "startingversion": "5"})
    assert (open_ended["snapshot_ts"], open_ended["feed_from"], open_ended["raw"]["starting_ts"]) == (None, 4, "4")
    assert "readchangefeed" not in open_ended["raw"] and "changes_from" not in open_ended["request"]


@pytest.mark.parametrize("options", [
    {"snapshot_ts": "abc"}, {"max_staleness": "soon"}, {"batch_rows": "0"}, {"schema": "sometimes"},
    {"readChangeFeed": "true", "startingVersion": "9", "endingVersion": "5"}, {"timestampAsOf": "yesterday"},
    {"changes_from": "5"}, {"isolaton": "RC"},
])
def test_the_connector_jars_options_are_refused_in_the_python_sources_words(options: dict[str, str]) -> None:
    from pyspark_theflash.scan.options import connector_option_names, connector_read_form, option_names

    lowered = {k.lower(): v for k, v in options.items()}
    with pytest.raises(ScanOptionError) as source:
        ScanOptions.from_mapping({"store": "/s", "table": "a.b", **options})
    with pytest.raises(ScanOptionError) as jar:
        connector_read_form({"server": "http://h:1", "table": "a.b", **lowered})
    # the same words; an unknown option's error lists the options each path takes
    assert str(jar.value).replace(", ".join(connector_option_names()), "*") == \
        str(source.value).replace(", ".join(option_names()), "*")


def test_a_catalogs_unknown_option_names_the_nearest_of_its_own_too() -> None:
    from pyspark_theflash.scan.options import connector_read_form

    with pytest.raises(ScanOptionError) as caught:
        connector_read_form({"server": "http://h:1", "table": "a.b", "pdd": "x"}, ["pd", "python", "start_timeout"])
    message = str(caught.value)
    assert message.startswith("unknown option 'pdd' (did you mean 'pd'?); theflash reads take: as_of, "), message
    assert message.endswith("; the catalog also takes: pd, python, start_timeout"), message
