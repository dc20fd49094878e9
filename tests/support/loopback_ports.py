"""Free ports for servers a test starts later, drawn below the kernel's ephemeral range.

A port the kernel picked (``bind(0)``) comes from the range every outbound connection of the run
draws from: the JVMs', the gRPC clients', the S3 clients'. Between the pick and the server's bind
(seconds, for a process that starts Python or a JVM first) one of those connections can take it,
and the server fails with "address already in use": SeaweedFS's filer did (every test of the S3
group errored), and so did a README block's background writer (its `--serve` HTTP port), on a
loaded 2-core run. Below the range only listeners take ports, and each test process draws at
random over some thousands of them, so two processes rarely try the same one, and a port found
taken is skipped."""
from __future__ import annotations

import random
import socket
from pathlib import Path
from typing import Sequence

_DRAW_WIDTH = 8192  # how many ports under the ephemeral floor a draw ranges over


def ephemeral_floor() -> int:
    """The lowest port the kernel hands out for outbound connections (Linux: 32768 unless set)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port_runs(lengths: Sequence[int], host: str = "127.0.0.1") -> list[int]:
    """For each length, the first of that many neighbouring ports on ``host``, all free now,
    none shared between runs, all below the ephemeral range (a server that takes PORT and PORT+1)."""
    floor = ephemeral_floor()
    low = max(1024, floor - _DRAW_WIDTH)
    rng = random.Random()
    taken: set[int] = set()
    firsts: list[int] = []
    for length in lengths:
        for _ in range(1000):
            first = rng.randrange(low, floor - length + 1)
            ports = range(first, first + length)
            if taken.isdisjoint(ports) and all(_bindable(host, p) for p in ports):
                taken.update(ports)
                firsts.append(first)
                break
        else:
            raise AssertionError(f"no {length} neighbouring free ports on {host} in {low}..{floor - 1}")
    return firsts


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports on ``host``, free now, below the ephemeral range."""
    return free_port_runs([1] * n, host)


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]
