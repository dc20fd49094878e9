"""The Arrow Flight front end.

* ``list_flights``: one ``FlightInfo`` per replicated table (its schema; the descriptor is the
  command that reads it whole).
* ``get_flight_info(FlightDescriptor.for_command(json))``: opens a read session (the JSON is a
  read request, ``service/request.py``; a path descriptor ``["db.table"]`` reads a whole table)
  and answers one endpoint per stream (ticket ``{"session": id, "stream": n}``, this server's
  location), the schema, estimated records and bytes, and the session as JSON in
  ``app_metadata``.
* ``do_get(ticket)``: the stream's record batches; a read failing mid-stream ends the call with
  a Flight error naming the stream and the rows sent (never a clean end). A ticket ``{"sql": "SELECT ...", "snapshot_ts": ts}``
  (ts optional) runs a whole query at one snapshot ts in the store's engine (the ClickHouse
  engine: ``theflash sql``) and streams its result.
* actions ``renew`` / ``release`` (body ``{"session": id}``), ``flush`` (body ``{}`` or
  ``{"timeout_s": 30}``), ``status``; each answers one JSON result.
* Arrow Flight SQL (``service/flight_sql.py``): a command, ticket or action body that is a Flight
  SQL message in a protobuf ``Any`` goes there; everything else is the service's JSON.

Errors are Flight errors whose message starts with the service's error code
(``unknown_table: ...``) and whose ``extra_info`` is the same JSON the HTTP front end answers.
"""
from __future__ import annotations

import json
import logging
from typing import Iterator

import pyarrow as pa
import pyarrow.flight as flight

from pyspark_theflash.ports import PortInUseError, check_free
from pyspark_theflash.service.core import ReadService
from pyspark_theflash.service.errors import BadRequestError, ServiceError, UnauthenticatedError
from pyspark_theflash.service.flight_sql import ACTIONS as FLIGHT_SQL_ACTIONS
from pyspark_theflash.service.flight_sql import CallOptionsFactory, FlightSqlEndpoint, flight_sql_command
from pyspark_theflash.service.request import ReadRequest, store_argument, timeout_argument

log = logging.getLogger("theflash.service.flight")
FRONTEND = "flight"
ACTIONS = {
    "renew": "renew a read session's lease: body {\"session\": id}; answers {\"session\", \"lease_expires_at\"}",
    "release": "end a read session and release its lease: body {\"session\": id}",
    "flush": "make everything the writer applied readable: body {} or {\"timeout_s\": 30}",
    "status": "the engine's status and the sessions held, as JSON",
}


def flight_error(err: ServiceError) -> flight.FlightError:
    text = f"{err.code}: {err.message}"
    extra = json.dumps(err.to_dict()).encode()
    if err.status == 401:
        return flight.FlightUnauthenticatedError(text, extra)
    if err.status == 503:
        return flight.FlightUnavailableError(text, extra)
    if err.status == 504:
        return flight.FlightTimedOutError(text, extra)
    if err.status >= 500:
        return flight.FlightInternalError(text, extra)
    return flight.FlightServerError(text, extra)


def flight_sql_error(err: ServiceError) -> Exception:
    """A Flight SQL client's error, as :func:`flight_error`: the message and the JSON, never a
    stack. (pyarrow's Flight server sends any exception but a ``FlightError`` with its Python
    traceback as the status detail, and none of the ``FlightError`` types is gRPC's
    INVALID_ARGUMENT: a request at fault is UNKNOWN, ``FlightServerError``, ADBC's
    ``OperationalError``, whose message starts with the code: ``unknown_table: ...``.)"""
    error: Exception = flight_error(err)
    return error


class _BearerMiddlewareFactory(flight.ServerMiddlewareFactory):  # type: ignore[misc]  # pyarrow.flight is untyped
    def __init__(self, service: ReadService) -> None:
        super().__init__()
        self.service = service

    def start_call(self, info: flight.CallInfo, headers: dict[str, list[str]]) -> None:
        values = headers.get("authorization") or []
        try:
            self.service.auth.check(values[0] if values else None)
        except UnauthenticatedError as exc:
            raise flight_error(self.service.failed(exc, FRONTEND)) from None
        return None


class FlightService(flight.FlightServerBase):  # type: ignore[misc]  # pyarrow.flight is untyped
    """Serves ``service`` on ``grpc://host:port`` (port 0: any free one; ``.port`` says which)."""

    def __init__(self, service: ReadService, host: str = "127.0.0.1", port: int = 0) -> None:
        # Flight's gRPC server turns SO_REUSEPORT on, which would share a port another process
        # holds: the port is tried first (pyspark_theflash/ports.py)
        check_free("Arrow Flight", host, port)
        try:
            super().__init__(f"grpc://{host}:{port}", middleware={"bearer": _BearerMiddlewareFactory(service),
                                                                  CallOptionsFactory.KEY: CallOptionsFactory()})
        except pa.ArrowException as exc:  # "Server did not start properly": taken between the check and here
            raise PortInUseError("Arrow Flight", host, port, str(exc)) from exc
        self.service = service
        self.host = host
        # Endpoints name this server unless it listens on every interface (then a client uses
        # the location it connected to: an endpoint without locations means "here").
        self.locations = [] if host in ("0.0.0.0", "::", "") else [flight.Location.for_grpc_tcp(host, self.port)]
        self.sql = FlightSqlEndpoint(self)

    # -- reading -------------------------------------------------------------------------------
    def list_flights(self, context: flight.ServerCallContext, criteria: bytes) -> Iterator[flight.FlightInfo]:
        from pyspark_theflash.schema import arrow_schema

        try:
            store = store_argument(_json_object(criteria) if criteria and criteria.strip() else {})
            tables = self.service.stores.get(store).tables()
        except Exception as exc:
            raise flight_error(self.service.failed(exc, FRONTEND)) from None
        for info in tables:
            command = {"table": f"{info.db}.{info.name}", **({"store": store} if store is not None else {})}
            descriptor = flight.FlightDescriptor.for_command(json.dumps(command))
            yield flight.FlightInfo(arrow_schema(info, toward_spark=True), descriptor, [], -1, -1)

    def get_flight_info(self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor) -> flight.FlightInfo:
        try:
            command = (flight_sql_command(descriptor.command)
                       if descriptor.descriptor_type == flight.DescriptorType.CMD else None)
            if command is not None:
                return self.sql.flight_info(context, descriptor, command)
        except Exception as exc:
            raise flight_sql_error(self.service.failed(exc, FRONTEND)) from None
        try:
            request = _request(descriptor)
            session = self.service.sessions.open(request, FRONTEND)
        except Exception as exc:
            raise flight_error(self.service.failed(exc, FRONTEND)) from None
        endpoints = [flight.FlightEndpoint(json.dumps({"session": session.id, "stream": s.index}).encode(),
                                           self.locations) for s in session.streams]
        metadata = json.dumps(ReadService.describe(session)).encode()
        return flight.FlightInfo(session.schema, descriptor, endpoints, session.rows, session.bytes,
                                 app_metadata=metadata)

    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket) -> flight.FlightDataStream:
        try:
            command = flight_sql_command(ticket.ticket)
            if command is not None:
                return self.sql.do_get(context, command)
        except Exception as exc:
            raise flight_sql_error(self.service.failed(exc, FRONTEND)) from None
        sql = _sql_ticket(ticket.ticket)
        if sql is not None:
            try:
                result = self.service.sql(*sql).result
            except Exception as exc:
                raise flight_error(self.service.failed(exc, FRONTEND)) from None
            return flight.RecordBatchStream(result)
        try:
            session_id, n = _ticket(ticket.ticket)
            held = self.service.sessions.get(session_id)
            batches = self.service.sessions.stream(session_id, n, FRONTEND)
        except Exception as exc:
            raise flight_error(self.service.failed(exc, FRONTEND)) from None
        return flight.GeneratorStream(held.session.schema, self.guarded(batches, session_id, n))

    def guarded(self, batches: Iterator[pa.RecordBatch], session_id: str, n: int) -> Iterator[pa.RecordBatch]:
        """The batches; an error while reading becomes a Flight error with the service's code,
        naming the stream and the rows sent before it: the client's read fails with it (gRPC
        delivers the batches sent, then the error), never ends cleanly short. Closing early
        frees the stream."""
        rows = 0
        try:
            for batch in batches:
                yield batch
                rows += batch.num_rows
        except Exception as exc:
            err = self.service.failed(exc, FRONTEND)
            log.warning("stream %d of session %s failed mid-way: %s", n, session_id, err.message)
            raise flight_error(ServiceError(
                f"stream {n} of read session {session_id} failed after {rows} rows were sent, which are not the "
                f"whole stream: {err.message}", code=err.code, status=err.status)) from None
        finally:
            batches.close()  # type: ignore[attr-defined]

    # -- actions -------------------------------------------------------------------------------
    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        return list(ACTIONS.items()) + list(FLIGHT_SQL_ACTIONS.items())

    def do_action(self, context: flight.ServerCallContext, action: flight.Action) -> Iterator[flight.Result]:
        if action.type in FLIGHT_SQL_ACTIONS:
            try:
                body = action.body.to_pybytes() if action.body is not None else b""
                return iter([flight.Result(r) for r in self.sql.action(context, action.type, body)])
            except Exception as exc:
                raise flight_sql_error(self.service.failed(exc, FRONTEND)) from None
        try:
            result = self._action(action.type, action.body.to_pybytes() if action.body is not None else b"")
        except Exception as exc:
            raise flight_error(self.service.failed(exc, FRONTEND)) from None
        return iter([flight.Result(json.dumps(result).encode())])

    def _action(self, kind: str, body: bytes) -> dict[str, object]:
        if kind not in ACTIONS:
            raise BadRequestError(f"unknown action {kind!r}; actions: {sorted(ACTIONS)}", code="invalid_option")
        args = _json_object(body) if body.strip() else {}
        if kind == "status":
            return self.service.status(store_argument(args))
        if kind == "flush":
            return self.service.flush(timeout_argument(args), store_argument(args))
        session_id = args.get("session")
        if not isinstance(session_id, str):
            raise BadRequestError(f"action {kind} needs a body {{\"session\": id}}, got {args!r}", code="invalid_option")
        if kind == "renew":
            return {"session": session_id, "lease_expires_at": self.service.sessions.renew(session_id)}
        self.service.sessions.release(session_id)
        return {"session": session_id, "released": True}


def _json_object(body: bytes) -> dict[str, object]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"not JSON ({exc})", code="malformed_json") from None
    if not isinstance(data, dict):
        raise BadRequestError(f"want a JSON object, got {type(data).__name__}", code="malformed_json")
    return data


def _request(descriptor: flight.FlightDescriptor) -> ReadRequest:
    if descriptor.descriptor_type == flight.DescriptorType.CMD:
        return ReadRequest.from_json(descriptor.command)
    path = [p.decode() if isinstance(p, bytes) else str(p) for p in (descriptor.path or [])]
    if len(path) in (1, 2):
        return ReadRequest.from_dict({"table": ".".join(path)})
    raise BadRequestError(f"a path descriptor names a table as [\"db.table\"] or [\"db\", \"table\"], got {path}",
                          code="invalid_option")


def _sql_ticket(raw: bytes) -> tuple[str, int | None, str | None] | None:
    """(query, snapshot ts or None, store or None) of a ticket ``{"sql": ..., "snapshot_ts": ...,
    "store": ...}``; None for any other ticket."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("sql"), str):
        return None
    ts = data.get("snapshot_ts")
    store = data.get("store")
    return (data["sql"], (int(ts) if isinstance(ts, int) and not isinstance(ts, bool) else None),
            store if isinstance(store, str) and store else None)


def _ticket(raw: bytes) -> tuple[str, int]:
    try:
        data = json.loads(raw)
        session_id, n = data["session"], data["stream"]
    except (ValueError, UnicodeDecodeError, TypeError, KeyError):
        raise BadRequestError(f"ticket {raw[:80]!r} is not one this service issued ({{\"session\": id, \"stream\": n}})",
                              code="malformed_ticket") from None
    if not isinstance(session_id, str) or isinstance(n, bool) or not isinstance(n, int):
        raise BadRequestError(f"ticket {raw[:80]!r} is not one this service issued", code="malformed_ticket")
    return session_id, n
