"""A long-running process's status endpoint on loopback: ``GET /metrics`` (Prometheus text),
``GET /status`` (JSON) and ``GET /healthz`` (200 ``ok``, or 503 and the reason), all from the
process's latest status snapshot. The writer (``--metrics-port``) and capture
(``--metrics-port``) serve one each; a process's own loop makes the snapshot, the server's
thread only reads it."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Callable, Generic, Mapping, Sequence, TypeVar

from pyspark_theflash.ports import http_server

class Exposition:
    """Prometheus exposition text, metric by metric: ``metric(name, kind, help, samples)`` adds
    ``# HELP``/``# TYPE`` and a line per sample (labels, value; a None value is left out), each
    named ``{prefix}_{name}``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str, samples: Sequence[tuple[str, float | int | None]]) -> None:
        full = f"{self.prefix}_{name}"
        self.lines.append(f"# HELP {full} {help_text}")
        self.lines.append(f"# TYPE {full} {kind}")
        for labels, value in samples:
            if value is not None:
                self.lines.append(f"{full}{labels} {value}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


# serve_forever checks for shutdown() once per poll interval: the default 0.5 s made every
# close wait about that long; a few wakeups a second cost nothing
SHUTDOWN_POLL_S = 0.05


Snapshot = TypeVar("Snapshot", bound=Mapping[str, object])  # what a server's status() gives


class TypedStatusServer(Generic[Snapshot]):
    """``status()`` gives the snapshot, ``prometheus(snapshot)`` its exposition text; a snapshot
    whose ``"healthy"`` is false answers /healthz with 503 and its ``"unhealthy_reason"``."""

    def __init__(self, status: Callable[[], Snapshot], prometheus: Callable[[Snapshot], str],
                 port: int = 0, host: str = "127.0.0.1", name: str = "the metrics endpoint",
                 thread_name: str = "metrics") -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                code = 200
                if self.path.startswith("/metrics"):
                    body, kind = prometheus(status()).encode(), "text/plain; version=0.0.4"
                elif self.path.startswith("/status"):
                    body, kind = json.dumps(status()).encode(), "application/json"
                elif self.path.startswith("/healthz"):
                    now = status()
                    healthy = bool(now.get("healthy", True))
                    code = 200 if healthy else 503
                    body = b"ok\n" if healthy else f"{now.get('unhealthy_reason', 'unhealthy')}\n".encode()
                    kind = "text/plain"
                else:
                    self.send_error(404, "try /metrics, /status or /healthz")
                    return
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # scrapes are not news
                return

        self._server = http_server(name, host, port, Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name=thread_name, daemon=True,
                                        kwargs={"poll_interval": SHUTDOWN_POLL_S})
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class StatusServer(TypedStatusServer[dict[str, object]]):
    """A status server whose snapshot is a plain JSON object."""
