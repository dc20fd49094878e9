"""The TheFlash API service: read sessions of one store over Arrow Flight and over HTTP
(Arrow IPC streams), with bearer tokens, lease upkeep and Prometheus metrics. See
docs/service.md.

    with serve("/data/flash", port=8815) as running:      # Flight :8815, HTTP :8816
        ...
"""
from __future__ import annotations

from pyspark_theflash.service.core import ReadService
from pyspark_theflash.service.errors import ServiceError
from pyspark_theflash.service.request import ReadRequest
from pyspark_theflash.service.server import RunningService, serve, serve_beside_writer

__all__ = ["ReadRequest", "ReadService", "RunningService", "ServiceError", "serve", "serve_beside_writer"]
