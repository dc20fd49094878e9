"""The writer's Prometheus-style endpoint on loopback: ``GET /metrics`` (text) and
``GET /status`` (JSON), both from the writer's latest progress snapshot."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable

from pyspark_theflash.ports import http_server
from pyspark_theflash.writer.progress import prometheus_text

# serve_forever checks for shutdown() once per poll interval: the default 0.5 s made every
# close wait about that long; a few wakeups a second cost nothing
SHUTDOWN_POLL_S = 0.05


class MetricsServer:
    def __init__(self, status: Callable[[], dict[str, Any]], port: int = 0, host: str = "127.0.0.1") -> None:
        get_status = status

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.startswith("/metrics"):
                    body, kind = prometheus_text(get_status()).encode(), "text/plain; version=0.0.4"
                elif self.path.startswith("/status"):
                    body, kind = json.dumps(get_status()).encode(), "application/json"
                else:
                    self.send_error(404, "try /metrics or /status")
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # scrapes are not news
                return

        self._server = http_server("the metrics endpoint", host, port, Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="writer-metrics", daemon=True,
                                        kwargs={"poll_interval": SHUTDOWN_POLL_S})
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
