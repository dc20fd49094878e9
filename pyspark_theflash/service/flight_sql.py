"""Arrow Flight SQL on the service's Flight port, beside its own JSON commands: what BI tools,
``adbc_driver_flightsql`` (and DuckDB or Polars through it) speak.

A Flight SQL request is a protobuf message of ``protos/flight_sql.proto`` packed in a
``google.protobuf.Any`` (type URL ``type.googleapis.com/arrow.flight.protocol.sql.<Message>``)
in a descriptor's command, a ticket or an action body; :func:`flight_sql_command` tells it from
the service's JSON. Served:

* metadata: ``CommandGetCatalogs`` (one catalog, ``theflash``), ``CommandGetDbSchemas`` (the
  store's databases), ``CommandGetTables`` (``TABLE``s, with their Arrow schema when asked),
  ``CommandGetTableTypes``, ``CommandGetSqlInfo`` (name, version, read-only, SQL); answered by
  ``get_flight_info`` with one endpoint whose ticket is the command itself;
* queries: ``CommandStatementQuery`` and prepared statements (actions
  ``CreatePreparedStatement`` / ``ClosePreparedStatement``, ``CommandPreparedStatementQuery``;
  no parameters). Any read-only query runs at one snapshot ts. On a native store a statement of
  the subset of ``service/sql_select.py`` (one table, columns, a filter, a limit) becomes a read
  session: one endpoint per stream (one in all with a LIMIT), released once every endpoint was
  read (or after its lease TTL unused); any other query (aggregates, joins, subqueries, ORDER BY)
  is computed whole by DuckDB over the read streams of the tables it names, every table at one ts
  (``engine/native_sql.py``, ``ReadService.sql``), and held for its DoGet. On a ClickHouse-engine
  store any ClickHouse query is computed that way by ClickHouse.

The snapshot: ``AS OF TSO <ts>`` / ``AS OF TIMESTAMP '<time>'`` in the statement, or the call
headers ``x-theflash-snapshot-ts`` / ``x-theflash-as-of`` (ADBC: the statement or connection
option ``adbc.flight.sql.rpc.call_header.x-theflash-snapshot-ts``); the statement's wins. The
header ``x-theflash-store`` names the store for a service of any store.
"""
from __future__ import annotations

import json
import re
import threading
import uuid
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

import pyarrow as pa
import pyarrow.flight as flight
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from pyspark_theflash.proto import flight_sql_pb2 as fsql
from pyspark_theflash.service.errors import BadRequestError, ServiceError
from pyspark_theflash.service.request import ReadRequest
from pyspark_theflash.service.sql_select import CATALOG, SelectStatement, UnsupportedSqlError, parse_select

if TYPE_CHECKING:
    from pyspark_theflash.engine.interface import Engine
    from pyspark_theflash.service.core import ReadService

TYPE_URL_PREFIX = "type.googleapis.com/arrow.flight.protocol.sql."
FRONTEND = "flight_sql"
SNAPSHOT_TS_HEADER = "x-theflash-snapshot-ts"
AS_OF_HEADER = "x-theflash-as-of"
STORE_HEADER = "x-theflash-store"
SERVER_NAME = "TheFlash for Spark"
TABLE_TYPE = "TABLE"
ACTIONS = {
    "CreatePreparedStatement": "Flight SQL: prepare a query (ActionCreatePreparedStatementRequest)",
    "ClosePreparedStatement": "Flight SQL: forget a prepared query (ActionClosePreparedStatementRequest)",
}
METADATA_COMMANDS = ("CommandGetCatalogs", "CommandGetDbSchemas", "CommandGetTables", "CommandGetTableTypes",
                     "CommandGetSqlInfo")
MAX_HELD_RESULTS = 64  # ClickHouse results computed by get_flight_info, waiting for their do_get

# SqlInfo ids (FlightSql.proto's SqlInfo enum) and the value this server answers for each
SQL_INFO: dict[int, object] = {
    0: SERVER_NAME,                     # FLIGHT_SQL_SERVER_NAME
    1: None,                            # FLIGHT_SQL_SERVER_VERSION (the package's, filled in below)
    2: pa.__version__,                  # FLIGHT_SQL_SERVER_ARROW_VERSION
    3: True,                            # FLIGHT_SQL_SERVER_READ_ONLY
    4: True,                            # FLIGHT_SQL_SERVER_SQL
    5: False,                           # FLIGHT_SQL_SERVER_SUBSTRAIT
    8: 0,                               # FLIGHT_SQL_SERVER_TRANSACTION: none
    9: False,                           # FLIGHT_SQL_SERVER_CANCEL
    500: False, 501: False, 502: False,  # SQL_DDL_CATALOG / _SCHEMA / _TABLE
    504: "`",                           # SQL_IDENTIFIER_QUOTE_CHAR
    506: True,                          # SQL_ALL_TABLES_ARE_SELECTABLE
}
_SQL_INFO_VALUE = pa.union([
    pa.field("string_value", pa.utf8()), pa.field("bool_value", pa.bool_()), pa.field("bigint_value", pa.int64()),
    pa.field("int32_bitmask", pa.int32()), pa.field("string_list", pa.list_(pa.utf8())),
    pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.int32()))),
], mode="dense", type_codes=[0, 1, 2, 3, 4, 5])
SCHEMAS = {
    "CommandGetCatalogs": pa.schema([pa.field("catalog_name", pa.utf8(), nullable=False)]),
    "CommandGetDbSchemas": pa.schema([pa.field("catalog_name", pa.utf8()),
                                      pa.field("db_schema_name", pa.utf8(), nullable=False)]),
    "CommandGetTables": pa.schema([pa.field("catalog_name", pa.utf8()), pa.field("db_schema_name", pa.utf8()),
                                   pa.field("table_name", pa.utf8(), nullable=False),
                                   pa.field("table_type", pa.utf8(), nullable=False)]),
    "CommandGetTableTypes": pa.schema([pa.field("table_type", pa.utf8(), nullable=False)]),
    "CommandGetSqlInfo": pa.schema([pa.field("info_name", pa.uint32(), nullable=False),
                                    pa.field("value", _SQL_INFO_VALUE, nullable=False)]),
}
TABLE_SCHEMA_FIELD = pa.field("table_schema", pa.binary(), nullable=False)


def flight_sql_command(raw: bytes) -> Message | None:
    """The Flight SQL message packed in ``raw`` (an ``Any`` naming a message of
    ``arrow.flight.protocol.sql``), or None when ``raw`` is something else (the service's JSON)."""
    if not raw or raw[:1] != b"\n":  # an Any starts with its type URL: field 1, length-delimited
        return None
    try:
        packed = any_pb2.Any.FromString(raw)
    except DecodeError:
        return None
    if not packed.type_url.startswith(TYPE_URL_PREFIX):
        return None
    name = packed.type_url[len(TYPE_URL_PREFIX):]
    kind = fsql.DESCRIPTOR.message_types_by_name.get(name)
    if kind is None:
        raise UnsupportedCommandError(f"Flight SQL command {name} is not served; served: "
                                      f"{', '.join(METADATA_COMMANDS)}, CommandStatementQuery, prepared statements "
                                      f"({', '.join(ACTIONS)}, CommandPreparedStatementQuery)")
    message = getattr(fsql, name)()
    message.ParseFromString(packed.value)
    return message


class UnsupportedCommandError(ServiceError):
    """A Flight SQL message this read-only server does not serve (updates, transactions...)."""

    code, status = "unsupported_command", 400


def pack(message: Message) -> bytes:
    packed = any_pb2.Any()
    packed.Pack(message)
    data: bytes = packed.SerializeToString()
    return data


class CallOptions(flight.ServerMiddleware):  # type: ignore[misc]  # pyarrow.flight is untyped
    """The Flight SQL call's own headers: snapshot and store."""

    def __init__(self, headers: dict[str, list[str]]) -> None:
        self.headers = headers

    def value(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[0] if values else None


class CallOptionsFactory(flight.ServerMiddlewareFactory):  # type: ignore[misc]  # pyarrow.flight is untyped
    KEY = "theflash_sql_options"

    def start_call(self, info: flight.CallInfo, headers: dict[str, list[str]]) -> CallOptions:
        return CallOptions({k: v for k, v in headers.items() if k.startswith("x-theflash-")})


def _call_options(context: flight.ServerCallContext) -> CallOptions:
    found = context.get_middleware(CallOptionsFactory.KEY) if context is not None else None
    return found if isinstance(found, CallOptions) else CallOptions({})


class FlightServer(Protocol):
    """What the Flight SQL half asks of ``service.flight.FlightService`` (which imports this module)."""

    service: ReadService
    locations: list[flight.Location]  # where the service listens ([]: "here")

    def guarded(self, batches: Iterator[pa.RecordBatch], session_id: str, n: int) -> Iterator[pa.RecordBatch]: ...


class FlightSqlEndpoint:
    """The Flight SQL half of ``FlightService`` (``service/flight.py`` hands it each call whose
    command, ticket or action is Flight SQL's)."""

    def __init__(self, server: FlightServer) -> None:
        self.server = server            # the FlightService: its ReadService, locations, stream guard
        self.service = server.service
        self._mu = threading.Lock()
        self._unread: dict[str, set[int]] = {}          # session id -> endpoints not yet read whole
        self._results: dict[str, pa.Table] = {}          # ClickHouse results awaiting do_get

    # -- GetFlightInfo ---------------------------------------------------------------------------
    def flight_info(self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor, command: Message) -> flight.FlightInfo:
        name = type(command).__name__
        if name in SCHEMAS:
            schema = self._metadata_schema(command)
            return flight.FlightInfo(schema, descriptor, [flight.FlightEndpoint(pack(command), self.server.locations)],
                                     -1, -1)
        if isinstance(command, fsql.CommandStatementQuery):
            return self._statement(context, descriptor, command.query)
        if isinstance(command, fsql.CommandPreparedStatementQuery):
            return self._statement(context, descriptor, _prepared_query(command.prepared_statement_handle))
        raise UnsupportedCommandError(f"Flight SQL {name} is not a command GetFlightInfo takes here; this server is "
                                      "read-only (no updates, no transactions)")

    def _statement(self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor, query: str) -> flight.FlightInfo:
        options = _call_options(context)
        store = options.value(STORE_HEADER)
        engine = self.service.stores.get(store)
        statement = _read_session_statement(engine, query)
        if statement is None:  # computed whole by the engine: held until its do_get
            ts = _ts_header(options.value(SNAPSHOT_TS_HEADER))
            as_of = options.value(AS_OF_HEADER)
            result = self.service.sql(query, ts, store, {"as_of": as_of} if ts is None and as_of else None).result
            handle = uuid.uuid4().hex
            with self._mu:
                while len(self._results) >= MAX_HELD_RESULTS:
                    self._results.pop(next(iter(self._results)))
                self._results[handle] = result
            ticket = pack(fsql.TicketStatementQuery(statement_handle=json.dumps({"result": handle}).encode()))
            return flight.FlightInfo(result.schema, descriptor, [flight.FlightEndpoint(ticket, self.server.locations)],
                                     result.num_rows, result.nbytes)
        session = self.service.sessions.open(self._read_request(statement, options, store), FRONTEND)
        streams = [s.index for s in session.streams]
        parts = [streams] if statement.limit is not None else [[n] for n in streams]
        with self._mu:
            self._unread[session.id] = set(range(len(parts)))
        endpoints = [flight.FlightEndpoint(pack(fsql.TicketStatementQuery(statement_handle=json.dumps(
            {"session": session.id, "part": i, "streams": part, "limit": statement.limit}).encode())),
            self.server.locations) for i, part in enumerate(parts)]
        rows = session.rows if statement.limit is None else min(session.rows, statement.limit)
        return flight.FlightInfo(session.schema, descriptor, endpoints, rows, session.bytes,
                                 app_metadata=json.dumps({"session": session.id, "ts": session.ts}).encode())

    @staticmethod
    def _read_request(statement: SelectStatement, options: CallOptions, store: str | None) -> ReadRequest:
        fields = statement.read_request()
        if statement.snapshot_ts is None and statement.as_of is None:
            ts, as_of = options.value(SNAPSHOT_TS_HEADER), options.value(AS_OF_HEADER)
            if ts is not None:
                fields["snapshot_ts"] = _ts_header(ts)
            elif as_of is not None:
                fields["as_of"] = as_of
        if store is not None:
            fields["store"] = store
        return ReadRequest.from_dict(fields)

    # -- DoGet -------------------------------------------------------------------------------------
    def do_get(self, context: flight.ServerCallContext, command: Message) -> flight.FlightDataStream:
        name = type(command).__name__
        if name in SCHEMAS:
            return flight.RecordBatchStream(self._metadata(context, command))
        if not isinstance(command, fsql.TicketStatementQuery):
            raise UnsupportedCommandError(f"Flight SQL {name} is not a ticket this server issued")
        try:
            handle = json.loads(command.statement_handle)
        except (ValueError, UnicodeDecodeError):
            handle = None
        if isinstance(handle, dict) and isinstance(handle.get("result"), str):
            with self._mu:
                result = self._results.pop(handle["result"], None)
            if result is None:
                raise BadRequestError("this statement's result was read already or dropped; run the statement again",
                                      code="unknown_statement")
            return flight.RecordBatchStream(result)
        if not (isinstance(handle, dict) and isinstance(handle.get("session"), str)
                and isinstance(handle.get("streams"), list)):
            raise BadRequestError("ticket is not one this server issued", code="malformed_ticket")
        session_id, part, streams, limit = handle["session"], handle.get("part"), handle["streams"], handle.get("limit")
        held = self.service.sessions.get(session_id)
        return flight.GeneratorStream(held.session.schema, self._read(session_id, part, streams, limit))

    def _read(self, session_id: str, part: object, streams: list[int], limit: int | None) -> Iterator[pa.RecordBatch]:
        """The rows of ``streams`` of the session in turn, at most ``limit`` of them; once every
        part of the session's result was read whole the session is released."""
        left = limit
        for n in streams:
            if left is not None and left <= 0:
                break
            batches = self.service.sessions.stream(session_id, n, FRONTEND)
            for batch in self.server.guarded(batches, session_id, n):
                if left is not None:
                    if left <= 0:
                        break
                    batch = batch.slice(0, left)
                    left -= batch.num_rows
                yield batch
        with self._mu:
            unread = self._unread.get(session_id)
            if unread is not None:
                unread.discard(part)
                done = not unread
                if done:
                    del self._unread[session_id]
            else:
                done = False
        if done:
            try:
                self.service.sessions.release(session_id)
            except ServiceError:
                pass  # released or expired meanwhile

    # -- DoAction ---------------------------------------------------------------------------------
    def action(self, context: flight.ServerCallContext, kind: str, body: bytes) -> list[bytes]:
        if kind == "CreatePreparedStatement":
            request = flight_sql_command(body)
            if not isinstance(request, fsql.ActionCreatePreparedStatementRequest):
                raise BadRequestError("CreatePreparedStatement takes an ActionCreatePreparedStatementRequest",
                                      code="invalid_option")
            if request.HasField("transaction_id"):
                raise UnsupportedCommandError("this server is read-only and has no transactions")
            schema = self._statement_schema(context, request.query)
            result = fsql.ActionCreatePreparedStatementResult(
                prepared_statement_handle=json.dumps({"query": request.query}).encode(),
                dataset_schema=b"" if schema is None else schema.serialize().to_pybytes())
            return [pack(result)]
        if kind == "ClosePreparedStatement":
            return []  # a handle is the query itself: nothing is held
        raise BadRequestError(f"unknown action {kind!r}", code="invalid_option")

    def _statement_schema(self, context: flight.ServerCallContext, query: str) -> pa.Schema | None:
        """The result's schema of a statement served as a read session (checked now: an
        unknown table or column fails at prepare); None for a statement the engine computes
        whole (its schema comes with GetFlightInfo)."""
        from pyspark_theflash.scan.options import HIDDEN_READABLE
        from pyspark_theflash.schema import arrow_schema

        engine = self.service.stores.get(_call_options(context).value(STORE_HEADER))
        statement = _read_session_statement(engine, query)
        if statement is None:
            return None
        db, name = statement.table.split(".", 1)
        info = next((t for t in engine.tables() if t.db.lower() == db.lower() and t.name.lower() == name.lower()),
                    None)
        if info is None:
            raise ServiceError(f"store {engine.root} has no table {statement.table}; its tables: "
                               f"{sorted(f'{t.db}.{t.name}' for t in engine.tables())}", code="unknown_table",
                               status=404)
        if statement.columns is None:
            return arrow_schema(info, toward_spark=True)
        by_lower = {c.name.lower(): c.name for c in info.columns}
        unknown = [c for c in statement.columns if c not in HIDDEN_READABLE and c.lower() not in by_lower]
        if unknown:
            raise BadRequestError(f"table {statement.table} has no column(s) {unknown}; its columns are "
                                  f"{[c.name for c in info.columns] + list(HIDDEN_READABLE)}", code="invalid_option")
        names = [c if c in HIDDEN_READABLE else by_lower[c.lower()] for c in statement.columns]
        full = arrow_schema(info, [n for n in names if n not in HIDDEN_READABLE],
                            tuple(n for n in names if n in HIDDEN_READABLE), toward_spark=True)
        return pa.schema([full.field(n) for n in names])

    # -- metadata ---------------------------------------------------------------------------------
    @staticmethod
    def _metadata_schema(command: Message) -> pa.Schema:
        schema = SCHEMAS[type(command).__name__]
        if isinstance(command, fsql.CommandGetTables) and command.include_schema:
            schema = schema.append(TABLE_SCHEMA_FIELD)
        return schema

    def _metadata(self, context: flight.ServerCallContext, command: Message) -> pa.Table:
        schema = self._metadata_schema(command)
        if isinstance(command, fsql.CommandGetSqlInfo):
            return sql_info_table(list(command.info))
        if isinstance(command, fsql.CommandGetTableTypes):
            return pa.table({"table_type": [TABLE_TYPE]}, schema=schema)
        if isinstance(command, fsql.CommandGetCatalogs):
            return pa.table({"catalog_name": [CATALOG]}, schema=schema)
        from pyspark_theflash.schema import arrow_schema

        tables = sorted(self.service.stores.get(_call_options(context).value(STORE_HEADER)).tables(),
                        key=lambda t: (t.db, t.name))
        catalog_ok = not command.HasField("catalog") or command.catalog == CATALOG
        schema_like = _like(command.db_schema_filter_pattern if command.HasField("db_schema_filter_pattern") else None)
        tables = [t for t in tables if catalog_ok and schema_like(t.db)]
        if isinstance(command, fsql.CommandGetDbSchemas):
            dbs = sorted({t.db for t in tables})
            return pa.table({"catalog_name": [CATALOG] * len(dbs), "db_schema_name": dbs}, schema=schema)
        assert isinstance(command, fsql.CommandGetTables)
        table_like = _like(command.table_name_filter_pattern if command.HasField("table_name_filter_pattern") else None)
        types = {t.upper() for t in command.table_types}
        tables = [t for t in tables if table_like(t.name) and (not types or TABLE_TYPE in types)]
        columns: dict[str, list[object]] = {"catalog_name": [CATALOG] * len(tables), "db_schema_name": [t.db for t in tables],
                                         "table_name": [t.name for t in tables], "table_type": [TABLE_TYPE] * len(tables)}
        if command.include_schema:
            columns["table_schema"] = [arrow_schema(t, toward_spark=True).serialize().to_pybytes() for t in tables]
        return pa.table(columns, schema=schema)


def sql_info_table(ids: list[int]) -> pa.Table:
    """The ``CommandGetSqlInfo`` answer: one row per asked id this server knows (all, none asked)."""
    values = dict(SQL_INFO)
    values[1] = _version()
    wanted = [i for i in (ids or sorted(values)) if i in values]
    codes, offsets = [], []
    children: list[list[object]] = [[], [], [], [], [], []]
    for i in wanted:
        v = values[i]
        code = 1 if isinstance(v, bool) else 0 if isinstance(v, str) else 3
        codes.append(code)
        offsets.append(len(children[code]))
        children[code].append(v)
    arrays = [pa.array(children[k], type=_SQL_INFO_VALUE.field(k).type) for k in range(6)]
    union = pa.UnionArray.from_dense(pa.array(codes, pa.int8()), pa.array(offsets, pa.int32()), arrays,
                                     [f.name for f in _SQL_INFO_VALUE], [0, 1, 2, 3, 4, 5])
    return pa.table([pa.array(wanted, pa.uint32()), union], schema=SCHEMAS["CommandGetSqlInfo"])


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyspark-theflash")
    except PackageNotFoundError:
        return "unknown"


def _like(pattern: str | None) -> Callable[[str], bool]:
    """A matcher for a Flight SQL filter pattern (SQL LIKE: % any run, _ one character)."""
    if pattern is None:
        return lambda name: True
    regex = re.compile("".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern),
                       re.S)
    return lambda name: regex.fullmatch(name) is not None


def _read_session_statement(engine: Engine, query: str) -> SelectStatement | None:
    """``query`` as a read session's statement (``service/sql_select.py``), when it is one and
    the store serves it so: streamed, one endpoint per stream, its filter pushed to the streams.
    None when the engine computes it whole instead (any query on a ClickHouse-engine store; on a
    native store whatever the subset does not express: aggregates, joins, ORDER BY ...)."""
    if engine.runs_sql and not engine.sql_reads_streams:
        return None
    try:
        return parse_select(query)
    except UnsupportedSqlError:
        if engine.runs_sql:
            return None
        raise


def _prepared_query(handle: bytes) -> str:
    try:
        data = json.loads(handle)
    except (ValueError, UnicodeDecodeError):
        data = None
    query = data.get("query") if isinstance(data, dict) else None
    if not isinstance(query, str):
        raise BadRequestError("not a prepared statement handle this server issued", code="unknown_statement")
    return query


def _ts_header(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit():
        raise BadRequestError(f"header {SNAPSHOT_TS_HEADER} must be a TSO number, got {value!r}", code="invalid_option")
    return int(value)
