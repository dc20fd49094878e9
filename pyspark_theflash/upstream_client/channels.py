"""gRPC channels to the upstream: PD, TiKV stores and the mini cluster's Upstream service.

gRPC reconnects a channel whose server went away with exponential backoff, from 1 s up to
120 s by default, and channels of one process to the same address share that connection and
its backoff (gRPC's global subchannel pool). A long-lived process — the service inside a Spark
driver — therefore kept failing for 2.5–10 s after the upstream came back, while a fresh
process connected at once. Every channel to the upstream is opened here, with the backoff
capped at ``MAX_RECONNECT_BACKOFF_MS``: a process notices a returning upstream as soon as a
new one does (at most that plus its jitter later), at the cost of a connection attempt per
half second to an upstream that is down.
"""
from __future__ import annotations


import grpc

INITIAL_RECONNECT_BACKOFF_MS = 100
MAX_RECONNECT_BACKOFF_MS = 500
RECONNECT_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", INITIAL_RECONNECT_BACKOFF_MS),
    ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
)


def upstream_channel(address: str, *options: tuple[str, object]) -> grpc.Channel:
    """An insecure channel to ``host:port`` with the upstream's reconnect backoff (and ``options``)."""
    return grpc.insecure_channel(address, options=[*RECONNECT_OPTIONS, *options])
