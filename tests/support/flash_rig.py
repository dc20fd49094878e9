"""The whole read path on one machine for the scan and Spark tests: a mini cluster in this
process serving PD, TiKV (tikvpb, cdcpb) and TiDB's status port on loopback, ``theflash
capture`` in a thread replicating it over those protocols into a binlog directory, the real
writer job in a thread applying that binlog to a store, and the read options a
``format("theflash")`` read of that store needs (``upstream`` = ``pd://``): the path a TiDB user
runs, and the default. ``via="binlog"`` feeds the writer the mini cluster's own binlog and
reads through its private ``grpc://`` service instead, for the tests of that log itself (raft
read indexes in flush requests, region introduction)."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from polling import wait_for  # also used by the tests that use the rig
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.service import serve_beside_writer
from pyspark_theflash.writer.loop import Writer
from pyspark_theflash.writer.options import WriterOptions




# How often the mini cluster advances resolved ts: each advance is a capture event, a binlog
# append and a writer flush (each synced to disk), so this is the idle rig's cadence. At 0.05 s an
# idle rig took 0.13 cores and a run of five rig modules waited 22 s on fsync; at 0.2 s (TiKV's
# cdc.min-ts-interval is 1 s, docs/reading.md) the same modules took 120 CPU s where they took
# 130, waited 2 s on fsync and finished sooner (130 s, was 147; issue 54). Reads wait for a
# resolved ts at or past their snapshot: up to one interval more.
RESOLVED_TS_INTERVAL_S = 0.2


class FlashRig:
    def __init__(self, root: Path, *, resolved_ts_interval: float = RESOLVED_TS_INTERVAL_S, via: str = "capture",
                 pd_members: int = 1, **cluster_kw: Any) -> None:
        if via not in ("capture", "binlog"):
            raise ValueError(f"via must be 'capture' or 'binlog', not {via!r}")
        self.root = root
        self.via = via
        self.cluster = MiniCluster(root / "cluster", binlog_dir=root / "binlog",
                                   resolved_ts_interval=resolved_ts_interval, **cluster_kw)
        addresses = self.cluster.serve(binlog_port=None, stores=2, pd_members=pd_members)
        self.status = "http://" + addresses["status"].removeprefix("http://")
        # the mini cluster's private service: the differential tests' reference (its ScanTable
        # is TiDB's stale read at a ts), whatever path the replica takes
        self.reference = addresses["upstream"]
        self.store = str(root / "store")
        self.capture: Any = None
        if via == "capture":
            from pyspark_theflash.capture import Capture, CaptureOptions

            self.upstream = addresses["pd"]
            self.binlog = (root / "capture-binlog").resolve().as_uri()
            self.capture = Capture(CaptureOptions(pd=self.upstream, tidb=self.status,
                                                  binlog=str(root / "capture-binlog"), retry_backoff_s=0.1,
                                                  gc_update_s=0.5, resolve_locks_after_s=1.0,
                                                  resolve_locks_interval_s=2.0))
            self._capture_error: list[BaseException] = []
            self._capture_thread = threading.Thread(target=self._run_capture, name="theflash-capture", daemon=True)
            self._capture_thread.start()
        else:
            self.upstream = addresses["upstream"]
            self.binlog = (root / "binlog").resolve().as_uri()
        self._jobs: dict[str, tuple[Writer, threading.Thread]] = {}  # store path -> its writer job
        self._writer_error: list[BaseException] = []

    def _run_capture(self) -> None:
        try:
            self.capture.run()
        except BaseException as exc:  # surfaced by close
            self._capture_error.append(exc)

    # -- the writer job ------------------------------------------------------------------------
    def start_writer(self, interval_s: float = 0.05, **options: Any) -> None:
        """The writer job in a thread; ``options``: more ``WriterOptions`` (``serve_port=0``...)."""
        self._start_job(self.store, interval_s, **options)

    def start_twin_writer(self, name: str = "native-twin", interval_s: float = 0.05, **options: Any) -> str:
        """A second writer job applying the same binlog to a store of its own (``root/name``;
        the native engine unless ``options`` say otherwise), e.g. beside a ClickHouse-engine
        store: reads of both at one ts must be equal. Returns the twin store's path."""
        path = str(self.root / name)
        self._start_job(path, interval_s, **options)
        return path

    def _start_job(self, store: str, interval_s: float, **options: Any) -> None:
        stop = threading.Event()
        # with --upstream the writer records the address in the store: reads need no option
        # through capture, as a user runs it: a table whose CREATE TiDB's DDL history no longer
        # lists comes from the status port (writer run --schema-url)
        if self.via == "capture":
            options.setdefault("schema_url", self.status)
        options.setdefault("flush_interval_s", interval_s)
        writer = Writer(WriterOptions(binlog=self.binlog, store=store, upstream=self.upstream,
                                      interval_s=interval_s, **options), stop=stop, serve=serve_beside_writer)

        def run() -> None:
            try:
                writer.run()
            except BaseException as exc:  # surfaced by stop_writer / check
                self._writer_error.append(exc)

        thread = threading.Thread(target=run, name=f"theflash-writer {Path(store).name}", daemon=True)
        self._jobs[store] = (writer, thread)
        thread.start()

    def stop_writer(self, store: str | None = None) -> None:
        """Stop the writer job of ``store`` (default: the rig's own store)."""
        job = self._jobs.pop(store or self.store, None)
        if job is None:
            return
        job[0].stop.set()
        job[1].join(30)
        if self._writer_error:
            raise self._writer_error[0]

    @property
    def writer(self) -> Writer | None:
        job = self._jobs.get(self.store)
        return job[0] if job is not None else None

    @property
    def writer_running(self) -> bool:
        job = self._jobs.get(self.store)
        return job is not None and job[1].is_alive()

    def options(self, **extra: Any) -> dict[str, str]:
        """Read options for ``spark.read.format("theflash")`` of this rig's store."""
        opts = {"store": self.store, "upstream": self.upstream}
        opts.update({k: str(v) for k, v in extra.items()})
        return opts

    def read_at(self, store: str, table: str, ts: int, columns: Any = None, filter: Any = None) -> Any:
        """``table`` of ``store`` at ``ts`` as one Arrow table, by a read session (its learner
        read waits until that store's writer has caught up to ts)."""
        import pyarrow as pa

        from pyspark_theflash.scan.session import open_read_session, read_stream

        with open_read_session(store, table, snapshot_ts=ts, columns=columns, filter=filter,
                               options={"upstream": self.upstream}) as session:
            return pa.Table.from_batches([b for n in range(len(session.streams)) for b in read_stream(session, n)],
                                         schema=session.schema)

    def wait_replicated(self, table: str, timeout_s: float = 30.0) -> None:
        """Until the store knows ``table`` (the writer fetched its schema)."""
        from pyspark_theflash.store import Store

        def known() -> bool:
            try:
                with Store.open(self.store, readonly=True) as store, store.snapshot() as view:
                    view.table(table)
                return True
            except Exception:
                return False

        wait_for(known, timeout_s, f"the writer to replicate {table}")

    def close(self) -> None:
        try:
            for store in list(self._jobs):
                self.stop_writer(store)
        finally:
            if self.capture is not None:
                self.capture.stop()
                self._capture_thread.join(30)
            self.cluster.close()
        if self.capture is not None and self._capture_error:
            raise self._capture_error[0]
