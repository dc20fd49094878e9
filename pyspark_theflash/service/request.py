"""The read request a client sends (Flight command, ``POST /v1/read-sessions`` body), parsed
and checked before anything is planned.

    {"table": "bank.accounts",          required: db.table
     "store": "/data/flash",            the store directory; a service of one store checks it
     "snapshot_ts": 4520..., | "as_of": "2026-11-21 06:00:00",   default: the latest
     "columns": ["id", "balance", "_tidb_rowid"],                default: every visible column
     "filter": [["balance", ">", 0]],   see scan/filter_json.py
     "isolation": "SI" | "RC",          default SI
     "schema": "as_of" | "current",     default as_of (a read at a past ts: the table then)
     "lease_ttl": "120s", "batch_rows": 65536, "min_streams": 4, "stream_target_bytes": "128MiB",
     "region_wait_timeout": "30s", "lock_wait_timeout": "60s",
     "handle_ranges": "[[0, 100], [200, null]]",   only these handle ranges (one planned stream's)
     "changes_from": 4519..., "changes": "all" | "net"}   a change read of (changes_from, snapshot_ts]
                                        (store/changes.py, docs/changes.md)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field


from pyspark_theflash.scan.filter_json import MAX_FILTER_DEPTH, FilterFormatError, check_filter_limits
from pyspark_theflash.scan.options import REQUEST_FIELD_OPTIONS
from pyspark_theflash.service.errors import BadRequestError

# request field -> the read option of scan.options it sets
OPTION_FIELDS = REQUEST_FIELD_OPTIONS
# the fields of POST /v1/snapshots (the one ts of a query over several tables)
SNAPSHOT_FIELDS = ("tables", "store", "snapshot", "max_staleness", "region_wait_timeout", "read")
FIELDS = ("table", "store", "snapshot_ts", "as_of", "columns", "filter", "isolation", *OPTION_FIELDS)
MAX_REQUEST_BYTES = 1 << 20


@dataclass(frozen=True)
class ReadRequest:
    table: str
    store: str | None = None
    snapshot_ts: int | None = None
    as_of: str | None = None
    columns: tuple[str, ...] | None = None
    filter: list[object] | None = None
    isolation: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def from_json(body: bytes | str) -> "ReadRequest":
        if len(body) > MAX_REQUEST_BYTES:
            raise BadRequestError(f"read request of {len(body)} bytes is larger than {MAX_REQUEST_BYTES}")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequestError(f"the read request is not JSON ({exc}); send an object like "
                                  '{"table": "db.table"}', code="malformed_json") from None
        except RecursionError:
            # JSON nested past the interpreter's recursion limit (its decoder refuses it cleanly)
            raw = body.encode() if isinstance(body, str) else bytes(body)
            code = "invalid_filter" if b'"filter"' in raw else "malformed_json"
            raise BadRequestError("the read request nests lists or objects too deeply to read"
                                  + (f" (a filter may nest {MAX_FILTER_DEPTH} levels)" if code == "invalid_filter" else ""),
                                  code=code) from None
        return ReadRequest.from_dict(data)

    @staticmethod
    def from_dict(data: object) -> "ReadRequest":
        if not isinstance(data, dict):
            raise BadRequestError(f"the read request must be a JSON object like {{\"table\": \"db.table\"}}, not "
                                  f"{type(data).__name__}", code="malformed_json")
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise BadRequestError(f"unknown field(s) {unknown} in the read request; known: {list(FIELDS)}",
                                  code="invalid_option")
        table = data.get("table")
        if not isinstance(table, str) or "." not in table:
            raise BadRequestError(f"field table must be \"db.table\", got {table!r}", code="invalid_option")
        snapshot_ts = data.get("snapshot_ts")
        if snapshot_ts is not None and (isinstance(snapshot_ts, bool) or not isinstance(snapshot_ts, int)):
            raise BadRequestError(f"field snapshot_ts must be a TSO number, got {snapshot_ts!r}", code="invalid_option")
        as_of = data.get("as_of")
        if as_of is not None and (isinstance(as_of, bool) or not isinstance(as_of, (str, int, float))):
            raise BadRequestError(f"field as_of must be ISO-8601 text or unix seconds, got {as_of!r}",
                                  code="invalid_option")
        columns = data.get("columns")
        if columns is not None and (not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)):
            raise BadRequestError(f"field columns must be a list of column names, got {columns!r}", code="invalid_option")
        if data.get("filter") is not None:
            try:
                check_filter_limits(data["filter"])
            except FilterFormatError as exc:
                raise BadRequestError(str(exc), code="invalid_filter") from None
        isolation = data.get("isolation")
        if isolation is not None and not isinstance(isolation, str):
            raise BadRequestError(f"field isolation must be \"SI\" or \"RC\", got {isolation!r}", code="invalid_option")
        options = {}
        for name, option in OPTION_FIELDS.items():
            value = data.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise BadRequestError(f"field {name} must be a string or a number, got {value!r}", code="invalid_option")
            options[option] = str(value)
        return ReadRequest(table=table, store=store_argument(data), snapshot_ts=snapshot_ts, as_of=None if as_of is None else str(as_of),
                           columns=None if columns is None else tuple(columns), filter=data.get("filter"),
                           isolation=isolation, options=options)


def store_argument(args: dict[str, object]) -> str | None:
    """A request's ``store`` (a store directory), or None when it names none."""
    store = args.get("store")
    if store is not None and (not isinstance(store, str) or not store.strip()):
        raise BadRequestError(f"field store must be a store directory, got {store!r}", code="invalid_option")
    return store


def timeout_argument(args: dict[str, object]) -> float | None:
    """A request's ``timeout_s`` (seconds), or None."""
    timeout = args.get("timeout_s")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
        raise BadRequestError(f"timeout_s must be a number of seconds, got {timeout!r}", code="invalid_option")
    return None if timeout is None else float(timeout)


def snapshot_request(data: object) -> tuple[list[str], str | None, dict[str, str], list[tuple[str, int]]]:
    """``POST /v1/snapshots``'s body: ``{"tables": ["db.t", ...], "store", "snapshot": "fresh" |
    "resolved", "max_staleness": "5s", "region_wait_timeout": "30s", "read": [{"table": "db.t",
    "ts": 451...}, ...]}`` → (tables, store, options, read). ``read``: the query's tables earlier
    queries already read, each with the ts it was read at."""
    if not isinstance(data, dict):
        raise BadRequestError('the snapshot request must be a JSON object like {"tables": ["db.table"]}',
                              code="malformed_json")
    unknown = sorted(set(data) - set(SNAPSHOT_FIELDS))
    if unknown:
        raise BadRequestError(f"unknown field(s) {unknown} in the snapshot request; known: {list(SNAPSHOT_FIELDS)}",
                              code="invalid_option")
    tables = data.get("tables")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, str) and "." in t for t in tables):
        raise BadRequestError(f"field tables must be a non-empty list of \"db.table\", got {tables!r}",
                              code="invalid_option")
    options = {}
    for name in ("snapshot", "max_staleness", "region_wait_timeout"):
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise BadRequestError(f"field {name} must be a string or a number, got {value!r}", code="invalid_option")
        options[name] = str(value)
    read = data.get("read") or []
    if not isinstance(read, list) or not all(
            isinstance(r, dict) and isinstance(r.get("table"), str) and "." in r["table"]
            and isinstance(r.get("ts"), int) and not isinstance(r.get("ts"), bool) and r["ts"] > 0 for r in read):
        raise BadRequestError(f"field read must be a list of {{\"table\": \"db.table\", \"ts\": ts}}, got {read!r}",
                              code="invalid_option")
    return list(tables), store_argument(data), options, [(r["table"], int(r["ts"])) for r in read]


def read_options_request(data: object) -> tuple[dict[str, str], list[str]]:
    """``POST /v1/read-options``'s body: ``{"options": {"name": "value", ...}, "catalog_options":
    ["pd", ...]}`` → (options, catalog_options): a connector jar read's options, which the service
    checks and answers in the jar's form (scan/options.py ``connector_read_form``)."""
    if not isinstance(data, dict) or not isinstance(data.get("options"), dict):
        raise BadRequestError('the read options request must be a JSON object like {"options": {"table": "db.t"}}',
                              code="malformed_json")
    unknown = sorted(set(data) - {"options", "catalog_options"})
    if unknown:
        raise BadRequestError(f"unknown field(s) {unknown} in the read options request; known: "
                              "['options', 'catalog_options']", code="invalid_option")
    options = data["options"]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in options.items()):
        raise BadRequestError("field options must map option names to strings", code="invalid_option")
    catalog = data.get("catalog_options") or []
    if not isinstance(catalog, list) or not all(isinstance(c, str) for c in catalog):
        raise BadRequestError("field catalog_options must be a list of option names", code="invalid_option")
    return dict(options), list(catalog)
