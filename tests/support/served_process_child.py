"""A fresh process that serves the mini cluster's gRPC services (PD, TiKV, upstream) and then
starts child processes, as a user who embeds the mini cluster does (issue 55):

    python tests/support/served_process_child.py ROOT [--forks N] [--writer] [--spark [--catalog]]

``--forks N``: N children fork()ed the way PySpark starts its JVM (``Popen`` with a
``preexec_fn``: CPython forks and runs Python in the child before exec); ``--writer``: the
product's background writer (``writer.daemon.start_detached``), then stopped; ``--spark``:
``theflash_session(master="local[2]")`` and a count through it; ``--catalog`` (with
``--writer``): the session's catalog configured with PD and the writer's store, so that the JVM
starts the catalog's service (``theflash serve``) itself, and its namespaces listed. Prints one
JSON line: {"forked": N, "died": [exit statuses of forked children that did not exit 0],
"writer": pid, "count": n, "namespaces": [...]}. gRPC's fork handlers used to abort (SIGABRT,
-6) about one such child in 30, and PySpark reported JAVA_GATEWAY_EXITED.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

from pyspark_theflash.upstream.cluster import MiniCluster


def _ignore_sigint() -> None:  # what PySpark's launch_gateway runs in its JVM's child
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--forks", type=int, default=0)
    parser.add_argument("--writer", action="store_true")
    parser.add_argument("--spark", action="store_true")
    parser.add_argument("--catalog", action="store_true", help="with --writer and --spark: the session's catalog "
                        "starts its own service (theflash serve, a child of the JVM) from PD and the writer's store")
    args = parser.parse_args()
    root = Path(args.root)
    out: dict[str, Any] = {}
    cluster = MiniCluster(root / "cluster", binlog_dir=root / "binlog", resolved_ts_interval=0.05)
    try:
        addresses = cluster.serve(binlog_port=None)
        if args.forks:
            statuses = [subprocess.Popen(["true"], preexec_fn=_ignore_sigint).wait() for _ in range(args.forks)]
            out.update(forked=len(statuses), died=[s for s in statuses if s != 0])
        if args.writer:
            from pyspark_theflash.writer import daemon

            store = str(root / "store")
            out["writer"] = daemon.start_detached(
                ["--binlog", f"file://{root / 'binlog'}", "--store", store, "--upstream", addresses["upstream"],
                 "--interval", "50ms"], store, str(root / "writer.log"))
            daemon.stop(store)
        if args.spark:
            from pyspark_theflash.spark import theflash_session

            conf = {}
            if args.catalog:
                conf = {"spark.sql.catalog.theflash.pd": addresses["pd"].removeprefix("pd://"),
                        "spark.sql.catalog.theflash.store": str(root / "store")}
            spark = theflash_session(master="local[2]", ui=False, **conf)
            try:
                out["count"] = spark.range(3).count()
                if args.catalog:
                    out["namespaces"] = [tuple(row) for row in spark.sql("SHOW NAMESPACES IN theflash").collect()]
            finally:
                spark.stop()
    finally:
        cluster.close()
    print(json.dumps(out), flush=True)


@contextlib.contextmanager
def busy_core() -> Iterator[None]:
    """One core kept busy by another process while the block runs (the load issue 55 saw). A
    machine whose load average already covers all its cores but one (the other test worker of
    ``pytest -n 2``: 2-4 on 2 cores) gets no spinner: that load is there, and a spinner would only
    take CPU from the other tests (about 15 CPU s of a full run)."""
    if os.getloadavg()[0] >= (os.cpu_count() or 1) - 1:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def run_fresh(root: Path, runs: int, *flags: str, timeout_s: float = 300) -> list[dict[str, Any]]:
    """This program ``runs`` times, each in a fresh process with its own ROOT under ``root``,
    one core kept busy meanwhile; what each printed. A run that fails raises, with its output."""
    results = []
    with busy_core():
        for run in range(runs):
            where = root / f"run-{run}"
            where.mkdir(parents=True)
            done = subprocess.run([sys.executable, __file__, str(where), *flags], capture_output=True, text=True,
                                  timeout=timeout_s)
            if done.returncode != 0:
                raise AssertionError(f"run {run + 1} of {runs} ({' '.join(flags)}) exited with status "
                                     f"{done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


if __name__ == "__main__":
    main()
