"""The writer's status endpoint on loopback (``--metrics-port``): ``GET /metrics`` (text),
``GET /status`` (JSON) and ``GET /healthz``, from the writer's latest progress snapshot
(pyspark_theflash/status_http.py)."""
from __future__ import annotations

from typing import Callable

from pyspark_theflash.status_http import TypedStatusServer
from pyspark_theflash.writer.progress import WriterStatus, prometheus_text


class MetricsServer(TypedStatusServer[WriterStatus]):
    def __init__(self, status: Callable[[], WriterStatus], port: int = 0, host: str = "127.0.0.1") -> None:
        super().__init__(status, prometheus_text, port, host, thread_name="writer-metrics")
