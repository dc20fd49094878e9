"""The whole read path on one machine for the scan and Spark tests: a mini cluster in this
process (serving its upstream gRPC API and schema port on loopback, writing its binlog to
files), the real writer job in a thread applying that binlog to a store, and the read
options a ``format("theflash")`` read of that store needs."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from polling import wait_for  # also used by the tests that use the rig
from pyspark_theflash.upstream.cluster import MiniCluster
from pyspark_theflash.writer.loop import Writer
from pyspark_theflash.writer.options import WriterOptions




class FlashRig:
    def __init__(self, root: Path, *, resolved_ts_interval: float = 0.05, **cluster_kw: Any) -> None:
        self.root = root
        self.cluster = MiniCluster(root / "cluster", binlog_dir=root / "binlog",
                                   resolved_ts_interval=resolved_ts_interval, **cluster_kw)
        addresses = self.cluster.serve(binlog_port=None)
        self.upstream = addresses["upstream"]
        self.status = "http://" + addresses["status"].removeprefix("http://")
        self.binlog = (root / "binlog").resolve().as_uri()
        self.store = str(root / "store")
        self._writer: Writer | None = None
        self._writer_thread: threading.Thread | None = None
        self._writer_error: list[BaseException] = []

    # -- the writer job ------------------------------------------------------------------------
    def start_writer(self, interval_s: float = 0.05, **options: Any) -> None:
        """The writer job in a thread; ``options``: more ``WriterOptions`` (``serve_port=0``...)."""
        stop = threading.Event()
        # with --upstream the writer records the address in the store: reads need no option
        self._writer = Writer(WriterOptions(binlog=self.binlog, store=self.store, upstream=self.upstream,
                                            interval_s=interval_s, flush_interval_s=interval_s, **options), stop=stop)

        def run() -> None:
            try:
                self._writer.run()  # type: ignore[union-attr]
            except BaseException as exc:  # surfaced by stop_writer / check
                self._writer_error.append(exc)

        self._writer_thread = threading.Thread(target=run, name="theflash-writer", daemon=True)
        self._writer_thread.start()

    def stop_writer(self) -> None:
        if self._writer is None:
            return
        self._writer.stop.set()
        assert self._writer_thread is not None
        self._writer_thread.join(30)
        self._writer = None
        if self._writer_error:
            raise self._writer_error[0]

    @property
    def writer(self) -> Writer | None:
        return self._writer

    @property
    def writer_running(self) -> bool:
        return self._writer_thread is not None and self._writer_thread.is_alive()

    def options(self, **extra: Any) -> dict[str, str]:
        """Read options for ``spark.read.format("theflash")`` of this rig's store."""
        opts = {"store": self.store, "upstream": self.upstream}
        opts.update({k: str(v) for k, v in extra.items()})
        return opts

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
            self.stop_writer()
        finally:
            self.cluster.close()
