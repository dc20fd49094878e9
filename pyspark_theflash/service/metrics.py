"""The service's counters, served as Prometheus text at ``/metrics`` on the HTTP port."""
from __future__ import annotations

import threading
from collections import defaultdict
from typing import Callable

_HELP = {
    "theflash_service_sessions_opened_total": ("counter", "read sessions opened"),
    "theflash_service_sessions_released_total": ("counter", "read sessions released by their client"),
    "theflash_service_sessions_expired_total": ("counter", "read sessions released after their lease TTL without use"),
    "theflash_service_sessions_active": ("gauge", "read sessions held now"),
    "theflash_service_streams_started_total": ("counter", "stream reads started"),
    "theflash_service_streams_completed_total": ("counter", "stream reads that sent every batch"),
    "theflash_service_streams_aborted_total": ("counter", "stream reads ended early: client gone or an error"),
    "theflash_service_streams_active": ("gauge", "stream reads in progress"),
    "theflash_service_rows_total": ("counter", "rows sent"),
    "theflash_service_bytes_total": ("counter", "Arrow bytes sent (record batch buffers)"),
    "theflash_service_lease_renewals_total": ("counter", "read lease renewals (client requests and while streams are read)"),
    "theflash_service_errors_total": ("counter", "requests answered with an error, by front end and code"),
}


class ServiceMetrics:
    """Thread-safe counters; labels are (name, value) pairs."""

    def __init__(self) -> None:
        self._mu = threading.Lock()
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self._gauges: dict[str, Callable[[], float]] = {}

    def add(self, name: str, value: float = 1, **labels: str) -> None:
        with self._mu:
            self._values[(name, tuple(sorted(labels.items())))] += value

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        self._gauges[name] = read

    def value(self, name: str, **labels: str) -> float:
        """The sum over every label set that includes ``labels``."""
        if name in self._gauges:
            return float(self._gauges[name]())
        wanted = set(labels.items())
        with self._mu:
            return sum(v for (n, ls), v in self._values.items() if n == name and wanted <= set(ls))

    def prometheus_text(self) -> str:
        with self._mu:
            values = dict(self._values)
        lines: list[str] = []
        for name, (kind, text) in _HELP.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            if name in self._gauges:
                lines.append(f"{name} {_number(self._gauges[name]())}")
                continue
            series = [(ls, v) for (n, ls), v in sorted(values.items()) if n == name]
            if not series and kind == "counter":
                lines.append(f"{name} 0")
            for ls, v in series:
                label_text = ",".join(f'{k}="{_escape(val)}"' for k, val in ls)
                lines.append(f"{name}{{{label_text}}} {_number(v)}" if label_text else f"{name} {_number(v)}")
        return "\n".join(lines) + "\n"


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")
