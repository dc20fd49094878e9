"""What both front ends serve: the engine of one store (or of any store a read names, see
``service/stores.py``), its read sessions, the token check and the counters. The Flight and
HTTP front ends only translate their protocol to these calls."""
from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING, Any, Mapping

from pyspark_theflash.service.auth import BearerAuth
from pyspark_theflash.service.errors import ServiceError, classify
from pyspark_theflash.service.metrics import ServiceMetrics
from pyspark_theflash.service.sessions import SessionRegistry
from pyspark_theflash.service.stores import AnyStore, OneStore, StoreResolver

if TYPE_CHECKING:
    from pyspark_theflash.engine.interface import Engine, QuerySnapshot, SqlResult
    from pyspark_theflash.scan.change_stream import ChangeStream
    from pyspark_theflash.scan.session import ReadSession

DEFAULT_FLUSH_TIMEOUT_S = 30.0

log = logging.getLogger("theflash.service")


class ReadService:
    """Serves ``engine`` (one store), or ``stores`` (a ``service.stores`` resolver: any store)."""

    def __init__(self, engine: Engine | None = None, *, stores: StoreResolver | None = None, token: str | None = None,
                 keeper_interval_s: float = 1.0) -> None:
        if engine is not None and stores is None:
            self.stores: StoreResolver = OneStore(engine)
        elif engine is None and stores is not None:
            self.stores = stores
        else:
            raise ValueError("ReadService serves an engine or a store resolver, one of them")
        self.engine = engine  # None when the service reads any store
        self.auth = BearerAuth(token)
        self.metrics = ServiceMetrics()
        self.sessions = SessionRegistry(self.stores, self.metrics, keeper_interval_s=keeper_interval_s)
        if isinstance(self.stores, AnyStore):
            self.stores.in_use = self.sessions.reads

    def failed(self, exc: BaseException, frontend: str) -> ServiceError:
        """``exc`` as the service error to answer with, counted. A client is sent the message
        only; the whole stack goes to the log at debug level (at warning for an unexpected one)."""
        err = classify(exc)
        log.log(logging.WARNING if err.status >= 500 and err.code == "internal" else logging.DEBUG,
                "%s request failed (%s): %s", frontend, err.code, err.message, exc_info=exc)
        self.metrics.add("theflash_service_errors_total", frontend=frontend, code=err.code)
        return err

    def tables(self, store: str | None = None) -> list[dict[str, object]]:
        """Each replicated table of the store (``store``: the one a request names): its fields
        (Arrow type as text, and the TiDB column type), and ``arrow_schema``, the schema as an
        Arrow IPC message (base64) with the readable hidden columns (``hidden``) after the
        visible ones: what a JVM client maps to Spark types without parsing type names."""
        from pyspark_theflash.schema import arrow_schema
        from pyspark_theflash.schema.arrow import select_columns
        from pyspark_theflash.scan.options import HIDDEN_READABLE

        out = []
        for info in self.stores.get(store).tables():
            schema = arrow_schema(info, toward_spark=True)
            tidb_types = {c.name: c.type_text for c in select_columns(info, None)}
            full = arrow_schema(info, hidden=HIDDEN_READABLE, toward_spark=True)
            out.append({"table": f"{info.db}.{info.name}", "id": int(info.id), "schema_version": int(info.schema_version),
                        "fields": [{"name": f.name, "type": str(f.type), "nullable": f.nullable,
                                    "tidb_type": tidb_types.get(f.name)} for f in schema],
                        "hidden": list(HIDDEN_READABLE),
                        "arrow_schema": base64.b64encode(full.serialize().to_pybytes()).decode("ascii")})
        return out

    def table_metadata(self, table: str, kind: str, store: str | None = None) -> dict[str, object]:
        """One metadata table of ``table`` (``GET /v1/tables/{db.t}/{kind}``, ``service.history``):
        ``{"table", "kind", "columns": [{"name", "type"}], "rows": [{column: value}]}``."""
        from pyspark_theflash.service.history import COLUMNS, store_table_metadata

        if kind not in COLUMNS:
            from pyspark_theflash.service.errors import BadRequestError

            raise BadRequestError(f"no metadata table {kind!r}; there are {', '.join(COLUMNS)}", code="invalid_option")
        with self.stores.hold(store) as engine:
            meta = store_table_metadata(engine.root, table, ask_upstream=kind == "history")
        tables: Mapping[str, object] = meta  # kind is one of them (checked above)
        return {"table": meta["history"][0]["table"], "kind": kind,
                "columns": [{"name": n, "type": t} for n, t in COLUMNS[kind]], "rows": tables[kind]}

    def status(self, store: str | None = None) -> dict[str, object]:
        held = self.sessions.sessions()
        if store is None and isinstance(self.stores, AnyStore):
            engines: dict[str, object] = {"stores": [{"store": str(e.root), **e.status()} for e in self.stores.engines()]}
        else:
            engines = {"engine": self.stores.get(store).status()}
        return {**engines,
                "sessions": [{"id": h.session.id, "table": h.session.table, "ts": h.session.ts,
                              "frontend": h.frontend, "streams": len(h.session.streams),
                              "active_streams": h.active_streams, "lease_id": h.session.lease_id,
                              "lease_expires_at": h.session.lease_expires_at} for h in held]}

    def delta_versions(self, ts: int | None = None, store: str | None = None, to: str | None = None) -> dict[str, object]:
        """Which Delta version of each published table of the store holds ts (``theflash delta
        versions``; docs/delta.md): each table's newest when ts is None. ``to``: where the tables
        were published (``--delta-to``: a directory or an ``s3://`` URI, reached with this
        process's credentials), else where the store publishes by default (its directory, or where
        its parts live: ``writer run --parts-to``)."""
        from pyspark_theflash.lake.errors import LakeError
        from pyspark_theflash.lake.location import default_location
        from pyspark_theflash.lake.versions import versions_at

        root = str(self.stores.get(store).root)
        try:
            tables = versions_at(default_location(root) if to is None else to, ts)
        except LakeError as exc:
            raise ServiceError(str(exc), code="invalid_option", status=400) from None
        except OSError as exc:  # the location refused or unreachable: the keys, the endpoint, the bucket
            raise ServiceError(f"{to or root}: {exc}; check the location and this service's credentials for it",
                               code="location_unavailable", status=502) from None
        return {"store": root, "to": to, "ts": ts, "tables": [v.__dict__ for v in tables]}

    def sql(self, query: str, snapshot_ts: int | None = None, store: str | None = None,
            options: dict[str, str] | None = None) -> SqlResult:
        """A whole read-only query computed by the store's engine at one snapshot ts
        (``theflash sql``; ClickHouse on a ClickHouse-engine store, DuckDB over the read streams
        on a native one): an ``engine.SqlResult``. ``store`` names the store where the service
        reads any (``theflash_session()``'s)."""
        from pyspark_theflash.service.errors import BadRequestError

        with self.stores.hold(store) as engine:
            if not engine.runs_sql:
                raise BadRequestError(f"the store at {engine.root} uses the {engine.kind} engine, which computes no "
                                      "SQL: read its tables through a read session or Spark", code="invalid_option")
            return engine.run_sql(query, snapshot_ts, options)

    def query_snapshot(self, tables: list[str], store: str | None, options: dict[str, str],
                       read: list[tuple[str, int]] | None = None) -> QuerySnapshot:
        """The one snapshot ts of a query over ``tables`` (``POST /v1/snapshots``); ``read``:
        (table, ts) of those earlier queries already read."""
        with self.stores.hold(store) as engine:  # planned with its open store: not let go meanwhile
            return engine.query_snapshot(tables, options, read or ())

    def change_stream(self, body: dict[str, Any], commit: bool) -> dict[str, object]:
        """``POST /v1/change-streams/offset`` and ``.../commit`` (``scan.change_stream``): the
        next offset of a change stream, or the lease held at a committed one. Body: ``table``,
        ``store``, ``options`` (the stream's: ``starting_ts``, ``lease_ttl``, ``stream_id``...),
        and ``start`` (null: the initial offset) and ``max_rows``, or ``end``."""
        from pyspark_theflash.scan.change_stream import ChangeStream
        from pyspark_theflash.service.errors import BadRequestError

        table = body.get("table")
        if not isinstance(table, str) or "." not in table:
            raise BadRequestError(f"field table must be \"db.table\", got {table!r}", code="invalid_option")
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise BadRequestError("field options must be an object of stream options", code="invalid_option")
        # the engine's open store, held for the request (not let go under it); the stream of
        # one request reads it and is closed after (a store it opened itself is closed then)
        with self.stores.hold(body.get("store")) as engine:
            stream = ChangeStream(engine.store, table, options)
            try:
                return self._change_stream(stream, body, commit)
            finally:
                stream.close()

    @staticmethod
    def _change_stream(stream: ChangeStream, body: dict[str, Any], commit: bool) -> dict[str, object]:
        from pyspark_theflash.scan.change_stream import StreamOffset
        from pyspark_theflash.service.errors import BadRequestError

        if commit:
            end = StreamOffset.from_dict(body.get("end") or {})
            stream.commit(end)
            return {"lease_ts": end.ts, "lag_ms": stream.lag_ms(end)}
        start = body.get("start")
        max_rows = body.get("max_rows")
        if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows <= 0):
            raise BadRequestError(f"field max_rows must be a positive number, got {max_rows!r}", code="invalid_option")
        offset = (stream.initial_offset() if start is None
                  else stream.latest_offset(StreamOffset.from_dict(start), max_rows))
        out: dict[str, object] = {"offset": offset.to_dict(), "lag_ms": stream.lag_ms(offset)}
        if start is not None:
            batch = stream.batch_options(StreamOffset.from_dict(start), offset)
            out["batch"] = None if batch is None else {"snapshot_ts": int(batch["snapshot_ts"]),
                                                       "changes_from": int(batch["changes_from"])}
        return out

    def flush(self, timeout_s: float | None = None, store: str | None = None) -> dict[str, object]:
        return self.stores.get(store).flush(DEFAULT_FLUSH_TIMEOUT_S if timeout_s is None else float(timeout_s))

    @staticmethod
    def describe(session: ReadSession, stream_url: str | None = None) -> dict[str, object]:
        """A session as JSON: ``to_dict()`` plus the schema in Arrow IPC form (base64), and each
        stream's URL when ``stream_url`` (a format with ``{id}`` and ``{n}``) is given."""
        out = session.to_dict()
        out["arrow_schema"] = base64.b64encode(session.schema.serialize().to_pybytes()).decode("ascii")
        if stream_url is not None:
            out["streams"] = [{**s.to_dict(), "url": stream_url.format(id=session.id, n=s.index)}
                              for s in session.streams]
        return out

    def close(self) -> None:
        self.sessions.close()
        self.stores.close()
