"""The DDL frontier's thread: a PD ts, then TiDB's DDL jobs finished by it, handed to capture's
main loop as a :class:`~pyspark_theflash.capture.tasks.DdlPoll`.

Capture holds every row until the DDL frontier passes its commit (a row must follow the schema
change it was written under), so the frontier is read as soon as the main loop holds events for
it (``want``): a commit then waits one PD call and one status-port read, not half the poll
period. Otherwise it is read every ``poll_s``, and never within ``min_s`` of the read before, to
spare TiDB (its ``/ddl/history`` answers with up to 1,024 jobs of JSON).
"""
from __future__ import annotations

import logging
import queue
import threading
import time

from pyspark_theflash.capture.errors import CaptureError
from pyspark_theflash.capture.tasks import DdlPoll, PollFailed, Task
from pyspark_theflash.capture.tidb_status import DDLHistoryUnavailableError, TiDBStatus
from pyspark_theflash.upstream_client.errors import UpstreamError
from pyspark_theflash.upstream_client.pd_client import PDClient

log = logging.getLogger("theflash.capture")


class DdlPoller:
    """Reads the frontier on its own thread (``start``) into ``inbound`` until ``stop``."""

    def __init__(self, pd: PDClient, status: TiDBStatus, inbound: queue.Queue[Task], poll_s: float,
                 min_s: float) -> None:
        self.pd, self.status, self.inbound = pd, status, inbound
        self.poll_s, self.min_s = poll_s, min_s
        self.unavailable = False  # the status port has no /ddl/history: schema changes are not followed
        self._stop = threading.Event()
        self._wanted = threading.Event()

    def history(self) -> list[dict[str, object]] | None:
        """TiDB's finished DDL jobs; None where the status port has no /ddl/history (then
        schema changes are not followed: the writer's --schema-url fills them in)."""
        if self.unavailable:
            return None
        try:
            return self.status.ddl_history()
        except DDLHistoryUnavailableError as exc:
            self.unavailable = True
            log.warning("%s: schema changes will not travel in the binlog; give the writer --schema-url", exc)
            return None

    def start(self) -> None:
        threading.Thread(target=self._run, name="capture-ddl", daemon=True).start()

    def want(self) -> None:
        """Events wait for the frontier: read it now (or as soon as ``min_s`` allows)."""
        self._wanted.set()

    def stop(self) -> None:
        self._stop.set()
        self._wanted.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self._wanted.clear()
            try:
                frontier = self.pd.get_ts()
                jobs = self.history()
                self.inbound.put(DdlPoll(frontier, jobs))
            except (CaptureError, UpstreamError) as exc:
                self.inbound.put(PollFailed(f"DDL poll failed, retrying: {exc}"))
            self._stop.wait(max(0.0, self.min_s - (time.monotonic() - began)))
            self._wanted.wait(max(0.0, self.poll_s - (time.monotonic() - began)))
