"""gRPC's fork support, turned off before ``grpc`` is imported.

A process of this product often serves gRPC (the mini cluster's PD, TiKV and upstream
services; capture; the writer's latch) and starts child processes: PySpark launches its JVM
with ``Popen(..., preexec_fn=...)``, which makes CPython fork() (not vfork) and run Python in
the child before exec. gRPC core, as grpcio ships it, has fork support on: it registers
pthread_atfork handlers whose child half re-creates the event engine's poller and threads in
the child. With a server running, the prepare half finds "Other threads are currently calling
into gRPC, skipping fork() handlers" and the child's event engine then polls an epoll
descriptor that is gone: "Epoll1Poller ... epoll_wait error: Bad file descriptor" and
SIGABRT, in the child, before it execs. PySpark reports that as JAVA_GATEWAY_EXITED (measured:
9 of 300 fork()ed children of a serving process died, 0 of 300 with fork support off; children
started by vfork/posix_spawn, i.e. Popen without preexec_fn, never run the handlers).

gRPC's fork support exists for a fork()ed child that keeps using gRPC *clients* without
exec, and gRPC supports no fork at all in a process that serves: this product execs every
child it forks, so it has no use for it. gRPC core reads the setting once, when ``grpc`` is
first imported, so it is set here, from the package's ``__init__``, which runs before any of
the package's modules imports ``grpc``. A value the user set (``GRPC_ENABLE_FORK_SUPPORT=1``)
is left as it is.
"""
from __future__ import annotations

import logging
import os
import sys

FORK_SUPPORT_ENVIRONMENT = "GRPC_ENABLE_FORK_SUPPORT"
_OFF = "false"
_TRUE = ("1", "true", "yes", "on")

log = logging.getLogger("theflash")


def disable_grpc_fork_support() -> None:
    """Turn gRPC's fork support off for this process and its children, unless the
    environment already says otherwise; warn when ``grpc`` was imported first (too late)."""
    if "grpc" in sys.modules and grpc_fork_support_on():
        log.warning("grpc was imported before pyspark_theflash, with its fork support on: a child process forked "
                    "while this process serves gRPC (the JVM of a Spark session started here) may abort before "
                    "it starts (JAVA_GATEWAY_EXITED). Import pyspark_theflash before grpc, or set %s=false",
                    FORK_SUPPORT_ENVIRONMENT)
    os.environ.setdefault(FORK_SUPPORT_ENVIRONMENT, _OFF)


def grpc_fork_support_on() -> bool:
    """Whether gRPC's fork support is on as this process's environment says (gRPC core's
    default, on, when the variable is unset)."""
    return os.environ.get(FORK_SUPPORT_ENVIRONMENT, "true").strip().lower() in _TRUE
