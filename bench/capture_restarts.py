"""A large table copied by `theflash capture`, then capture SIGKILLed and restarted during a live
workload: what each restart writes beside the first copy, and the replica equal to the upstream.

    .venv/bin/python bench/capture_restarts.py                         # 10M rows, 10 restarts
    .venv/bin/python bench/capture_restarts.py --rows 1000000 --restarts 3

The upstream is the embedded mini cluster (PD, TiKV's change-data feed, TiDB's status port on
loopback) in a child process of its own, as bench/live_rig.py runs it: ``--rows`` rows of
live_rig.s 16-column ``bench.wide`` table over ``--regions`` regions, loaded with the columnar
``bulk_insert``, then update transactions (``--per-commit`` random rows each, ``--rate``
commits/s) for the rest of the run. ``theflash capture`` runs as an operator runs it, as its
own process on its own binlog directory:

* **the first copy**: capture starts on an empty binlog while the updates run; its figure is the
  binlog bytes written until every region PD has over the tables' keys holds a resolved ts at or
  above a ts taken just before capture started (the copy's rows/s over that time, and capture's
  peak RSS, VmHWM, over it);
* **restarts**: ``--restarts`` times, capture runs ``--up`` seconds more (a random time in the
  range), is SIGKILLed, stays down ``--down`` seconds and starts again on the same binlog; each
  restart's figure is measured as the first copy's (bytes until every region resolved past a ts
  taken before the restart), with the whole and incremental snapshot bytes among them. The
  ratio of each to the first copy's bytes is the figure (a restart that copied the table again
  would be near 1);
* **the replica**: the updates stop at ts T; once every region resolved past T capture is stopped
  and ``theflash writer run --until-caught-up`` applies the binlog (its peak RSS); the store's
  table read at T must equal the mini cluster's at T, every column of every row by handle
  (compared with Arrow); a difference exits 1.

The mini cluster serves its feed's scans in Python under its store's lock: the initial scan a
Row message per version (about 12 µs a row), so the copy's rows/s here is the mini cluster's,
not capture's (capture's own copy ceiling is bench/capture_ceiling.py's); an incremental scan
visits every key of the region to find the versions above its checkpoint (TiKV's delta scanner
skips files by their ts), so a restart's seconds grow with the table here while its bytes do
not; and the updates stall while it scans (the updates/s reached is printed). GC is off in the
mini cluster (capture's service safe point would hold it anyway). Prints the figures and ends
with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from live_rig import TABLE, JsonLinesChild, LiveUpdates, load, print_log_tails  # noqa: E402

THEFLASH = [sys.executable, "-m", "pyspark_theflash"]


# -- the upstream's process ---------------------------------------------------------------------
class Upstream(JsonLinesChild):
    """The mini cluster in a child process (this file with ``--serve ROOT``); JSON lines on its
    stdin and stdout, as bench/live_rig.py's ``UpstreamProcess``."""

    def __init__(self, root: Path, stores: int) -> None:
        super().__init__([sys.executable, str(Path(__file__).resolve()), "--serve", str(root), "--stores", str(stores)])
        hello = self._answer()
        self.pd: str = hello["pd"]
        self.status: str = hello["status"]


    def get_ts(self) -> int:
        return int(self.ask("ts")["ts"])

    def peak_rss_mb(self) -> float:
        return vm_hwm_mb(self.process.pid)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.ask("close")
                self.process.wait(60)
            except (SystemExit, BrokenPipeError, OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


def serve(root: Path, stores: int) -> None:
    """The child: a mini cluster without a binlog of its own (capture writes the binlog)."""
    from pyspark_theflash.upstream.cluster import MiniCluster

    out = sys.stdout
    sys.stdout = sys.stderr  # anything the cluster prints stays off the answer channel
    cluster = MiniCluster(root / "cluster", None, resolved_ts_interval=0.05, checkpoint_interval_s=None,
                          gc_run_interval_s=None)
    updates: LiveUpdates | None = None
    try:
        addresses = cluster.serve(binlog_port=None, stores=stores)
        out.write(json.dumps({"pd": addresses["pd"], "status": addresses["status"]}) + "\n")
        out.flush()
        for line in sys.stdin:
            request = json.loads(line)
            op = request.pop("op")
            try:
                if op == "load":
                    answer: dict[str, Any] = {"seconds": load(cluster, **request)}
                elif op == "ts":
                    answer = {"ts": int(cluster.get_ts())}
                elif op == "start_updates":
                    updates = LiveUpdates(cluster, **request)
                    answer = {}
                elif op == "finish_updates":
                    assert updates is not None, "no updates are running"
                    commits = updates.commits
                    answer = {"commits_per_s": updates.finish(), "commits": commits}
                    updates = None
                elif op == "dump":
                    answer = dump_table(cluster, int(request["ts"]), Path(request["path"]))
                elif op == "close":
                    out.write("{}\n")
                    out.flush()
                    return
                else:
                    answer = {"error": f"unknown request {op!r}"}
            except Exception as exc:
                answer = {"error": f"{op}: {type(exc).__name__}: {exc}"}
            out.write(json.dumps(answer) + "\n")
            out.flush()
    finally:
        if updates is not None:
            updates.stop.set()
        cluster.close()


def dump_table(cluster: Any, ts: int, path: Path, chunk: int = 1_000_000) -> dict[str, Any]:
    """The table at ``ts`` as TiDB's stale read gives it (locks resolved), ``chunk`` handles at a
    time, decoded into Arrow with the codec's batch decoder and written to ``path`` (Arrow IPC)."""
    import pyarrow as pa

    from pyspark_theflash.codec.batch import decode_rows_to_arrow
    from pyspark_theflash.codec.keys import decode_record_keys
    from pyspark_theflash.schema import row_columns
    from pyspark_theflash.upstream.tidb import LockResolver, record_key, record_range

    started = time.monotonic()
    table = cluster.table_info_at(TABLE, ts)
    start, end = record_range(int(table["id"]))
    last = cluster.store.last_key(start, end)
    top = int(decode_record_keys([last])[1][0]) + 1 if last is not None else 0
    bounds = [start] + [record_key(table, h) for h in range(chunk, top, chunk)] + [end]
    resolver = LockResolver(cluster.store, cluster.tso)
    rows = 0
    writer = None
    with pa.OSFile(str(path), "wb") as sink:
        for lo, hi in zip(bounds, bounds[1:]):
            pairs = resolver.retry(lambda: cluster.store.scan(lo, hi, ts), ts)
            if not pairs:
                continue
            _, handles = decode_record_keys([k for k, _ in pairs])
            batch = decode_rows_to_arrow(pa.array([v for _, v in pairs], pa.binary()), handles, row_columns(table))
            if writer is None:
                writer = pa.ipc.new_file(sink, batch.schema)
            writer.write_batch(batch)
            rows += batch.num_rows
        if writer is None:
            raise RuntimeError(f"{TABLE} has no rows at {ts}")
        writer.close()
    return {"rows": rows, "seconds": time.monotonic() - started}


# -- processes measured ---------------------------------------------------------------------------
def vm_hwm_mb(pid: int) -> float:
    """The process's peak RSS so far (VmHWM), in MiB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass  # it exited, or its status changed shape: no reading to give
    return 0.0


class Measured:
    """A child process whose VmHWM is polled until it exits (the last reading is its peak:
    bench/capture_ceiling.py's ``run_measured``, for a process this benchmark also kills)."""

    def __init__(self, cmd: list[str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        self.peak_mb = 0.0
        self._poller = threading.Thread(target=self._poll, daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while self.process.poll() is None:
            self.peak_mb = max(self.peak_mb, vm_hwm_mb(self.process.pid))
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        self.peak_mb = max(self.peak_mb, vm_hwm_mb(self.process.pid))
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self._poller.join()

    def stop(self) -> int:
        """SIGTERM, then its exit code (capture syncs what it wrote and exits 0)."""
        self.peak_mb = max(self.peak_mb, vm_hwm_mb(self.process.pid))
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise SystemExit(f"{self.process.args[3]} did not stop within 60 s of SIGTERM: see {self.log}")
        self._poller.join()
        return code

    def wait(self, timeout_s: float) -> int:
        code = self.process.wait(timeout_s)
        self._poller.join()
        return code

    def last_lines(self, n: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


# -- what capture wrote ---------------------------------------------------------------------------
def binlog_bytes(binlog: Path) -> int:
    return sum(p.stat().st_size for p in binlog.glob("*.binlog"))


class ResolvedTail:
    """The binlog's resolved ts per region, read from outside as capture writes them. Only the
    events without a region (resolved ts, DDL) are parsed unless ``snapshots`` asks for the
    snapshot bytes too (the restarts' binlog is small; the first copy's is gigabytes)."""

    def __init__(self, binlog: Path) -> None:
        from pyspark_theflash.binlog import Position

        self.binlog = binlog
        self.position: Position | None = None
        self.resolved: dict[int, int] = {}
        self.whole_snapshot_bytes = 0
        self.incremental_snapshot_bytes = 0

    def reset(self) -> None:
        self.resolved.clear()
        self.whole_snapshot_bytes = self.incremental_snapshot_bytes = 0

    def read(self, snapshots: bool) -> None:
        from pyspark_theflash.binlog import SegmentReader
        from pyspark_theflash.proto import binlog_pb2

        if not any(self.binlog.glob("*.binlog")):
            return
        regions = None if snapshots else frozenset({0})
        with SegmentReader(self.binlog, self.position) as reader:
            while batch := reader.read_raw(2000, 0, regions):
                for record in batch:
                    ev = binlog_pb2.Event.FromString(record.payload)
                    kind = ev.WhichOneof("payload")
                    if kind == "resolved":
                        for rid in ev.resolved.regions:
                            self.resolved[int(rid)] = max(self.resolved.get(int(rid), 0), int(ev.resolved.ts))
                    elif kind == "snapshot":
                        if ev.snapshot.since_ts:
                            self.incremental_snapshot_bytes += len(record.payload)
                        else:
                            self.whole_snapshot_bytes += len(record.payload)
            self.position = reader.position


def wait_resolved(tail: ResolvedTail, pd: Any, capture: Measured, ts: int, snapshots: bool,
                  timeout_s: float) -> None:
    """Until the binlog holds, for every region PD has over the tables' keys, a resolved ts at
    or above ``ts`` written after the tail's position when ``tail.reset()`` was called."""
    from pyspark_theflash.capture.capture import _RECORD_SPAN

    deadline = time.monotonic() + timeout_s
    while True:
        tail.read(snapshots)
        if all(tail.resolved.get(r.id, 0) >= ts for r in pd.scan_regions(*_RECORD_SPAN)):
            return
        if not capture.alive():
            raise SystemExit(f"capture exited with {capture.process.returncode}:\n{capture.last_lines()}")
        if time.monotonic() > deadline:
            raise SystemExit(f"capture did not resolve every region past {ts} within {timeout_s:.0f} s "
                             f"(a restart that hangs):\n{capture.last_lines()}")
        time.sleep(0.1)


# -- the replica against the upstream -------------------------------------------------------------
def compare(store: Path, upstream_file: Path, ts: int) -> str:
    """The store's table at ``ts`` against the upstream's dump at ``ts``: every row by handle,
    every column. Raises SystemExit naming the first difference."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from pyspark_theflash.store import Store

    with pa.memory_map(str(upstream_file)) as source:
        want = pa.ipc.open_file(source).read_all()
    with Store.open(str(store), readonly=True) as s:
        got = s.scan_table(TABLE, ts, columns=want.column_names)
    if got.num_rows != want.num_rows:
        raise SystemExit(f"the replica differs at {ts}: {got.num_rows:,} rows, the upstream {want.num_rows:,}")
    got, want = (t.take(pc.sort_indices(t, [("id", "ascending")])).combine_chunks() for t in (got, want))
    for name in want.column_names:
        a, b = got.column(name), want.column(name)
        if a.type != b.type:
            raise SystemExit(f"the replica's column {name} is {a.type}, the upstream's {b.type}")
        if not a.equals(b):
            differs = pc.invert(pc.fill_null(pc.equal(a, b), False))
            at = int(pc.index(differs, True).as_py())
            raise SystemExit(f"the replica differs at {ts}: row id {want.column('id')[at]} column {name}: "
                             f"{a[at]} in the replica, {b[at]} upstream")
    return f"{want.num_rows:,} rows equal by handle in all {want.num_columns} columns"


# -- the run ----------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--regions", type=int, default=16)
    parser.add_argument("--stores", type=int, default=1, help="TiKV stores of the mini cluster")
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--rate", type=float, default=100.0, help="update transactions/s of the live workload")
    parser.add_argument("--per-commit", type=int, default=10, help="rows updated per transaction")
    parser.add_argument("--up", default="2,6", help="seconds capture runs after catching up before a kill: MIN,MAX")
    parser.add_argument("--down", type=float, default=2.0, help="seconds capture stays down after a kill")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--work", type=Path, default=None, help="directory for the run (default: a temporary one, "
                                                                "removed at the end)")
    parser.add_argument("--serve", type=Path, default=None, help=argparse.SUPPRESS)  # the upstream's child process
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.stores)
        return 0
    up_min, up_max = (float(x) for x in args.up.split(","))
    rng = random.Random(args.seed)

    work = args.work or Path(tempfile.mkdtemp(prefix="theflash-bench-restarts-"))
    work.mkdir(parents=True, exist_ok=True)
    binlog, store = work / "binlog", work / "store"
    fig: dict[str, Any] = {"bench": "capture_restarts", "rows": args.rows, "regions": args.regions,
                           "restarts": args.restarts, "update_rate": args.rate, "per_commit": args.per_commit}
    upstream = Upstream(work / "upstream", args.stores)
    from pyspark_theflash.upstream_client.pd_client import PDClient

    pd = PDClient(upstream.pd)
    capture: Measured | None = None
    try:
        took = float(upstream.ask("load", rows=args.rows, regions=args.regions, chunk=10_000, key="int")["seconds"])
        fig["load_s"] = round(took, 1)
        print(f"loaded {args.rows:,} rows into {args.regions} regions in {took:.1f}s "
              f"(the mini cluster's bulk_insert; not timed)", flush=True)
        upstream.ask("start_updates", rows=args.rows, rate=args.rate, per_commit=args.per_commit, key="int")
        cmd = THEFLASH + ["capture", "--pd", upstream.pd.removeprefix("pd://"), "--tidb", f"http://{upstream.status}",
                          "--binlog", str(binlog)]
        tail = ResolvedTail(binlog)

        # the first copy
        ts = upstream.get_ts()
        started = time.monotonic()
        capture = Measured(cmd, work / "capture-0.log")
        wait_resolved(tail, pd, capture, ts, snapshots=False, timeout_s=3 * 3600)
        copy_s = time.monotonic() - started
        first = binlog_bytes(binlog)
        copy_peak = max(capture.peak_mb, vm_hwm_mb(capture.process.pid))
        fig.update(copy_s=round(copy_s, 1), copy_rows_per_s=round(args.rows / copy_s), copy_bytes=first,
                   copy_capture_peak_rss_mb=round(copy_peak))
        print(f"first copy: {first / 1e6:,.1f} MB in {copy_s:.1f}s ({args.rows / copy_s:,.0f} rows/s, bounded by "
              f"the mini cluster's scan); capture's peak RSS {copy_peak:,.0f} MiB", flush=True)

        # the restarts
        restarts: list[dict[str, float]] = []
        for n in range(1, args.restarts + 1):
            time.sleep(rng.uniform(up_min, up_max))
            capture.kill()
            time.sleep(args.down)
            tail.read(snapshots=True)  # what the killed capture wrote is not the restart's
            tail.reset()
            before, ts = binlog_bytes(binlog), upstream.get_ts()
            started = time.monotonic()
            capture = Measured(cmd, work / f"capture-{n}.log")
            wait_resolved(tail, pd, capture, ts, snapshots=True, timeout_s=600)
            r = {"bytes": binlog_bytes(binlog) - before, "s": time.monotonic() - started,
                 "whole_snapshot_bytes": tail.whole_snapshot_bytes,
                 "incremental_snapshot_bytes": tail.incremental_snapshot_bytes, "peak_rss_mb": capture.peak_mb}
            restarts.append(r)
            print(f"restart {n:2}: {r['bytes'] / 1e3:>9,.1f} kB until every region resolved past its start "
                  f"({r['bytes'] / first:.5f}x the first copy; {r['s']:.1f}s; snapshots "
                  f"{r['whole_snapshot_bytes'] / 1e3:,.1f} kB whole, {r['incremental_snapshot_bytes'] / 1e3:,.1f} kB "
                  "incremental)", flush=True)

        # the replica
        done = upstream.ask("finish_updates")
        final = upstream.get_ts()
        tail.reset()
        wait_resolved(tail, pd, capture, final, snapshots=False, timeout_s=600)
        code = capture.stop()
        if code != 0:
            raise SystemExit(f"capture exited with {code} on SIGTERM:\n{capture.last_lines()}")
        capture = None
        fig["update_commits_per_s"] = round(done["commits_per_s"], 1)
        print(f"updates: {done['commits_per_s']:.1f} commits/s of {args.per_commit} rows on average ({args.rate:g} "
              "asked; they wait while the mini cluster scans)", flush=True)
        fig["binlog_bytes"] = binlog_bytes(binlog)
        writer = Measured(THEFLASH + ["writer", "run", "--binlog", binlog.as_uri(), "--store", str(store),
                                      "--until-caught-up"], work / "writer.log")
        started = time.monotonic()
        if writer.wait(3 * 3600) != 0:
            raise SystemExit(f"the writer failed:\n{writer.last_lines()}")
        fig["writer_s"] = round(time.monotonic() - started, 1)
        fig["writer_peak_rss_mb"] = round(writer.peak_mb)
        print(f"writer: the binlog ({fig['binlog_bytes'] / 1e6:,.1f} MB) applied in {fig['writer_s']:.1f}s; peak RSS "
              f"{writer.peak_mb:,.0f} MiB", flush=True)
        dumped = upstream.ask("dump", ts=final, path=str(work / "upstream.arrow"))
        fig["upstream_peak_rss_mb"] = round(upstream.peak_rss_mb())
        checked = compare(store, work / "upstream.arrow", final)
        fig["replica_equal"] = True
        print(f"replica at {final}: {checked} (the upstream read in {dumped['seconds']:.1f}s; its peak RSS "
              f"{fig['upstream_peak_rss_mb']:,} MiB)", flush=True)
    except BaseException:
        print_log_tails(work)
        raise
    finally:
        if capture is not None and capture.alive():
            capture.kill()
        pd.close()
        upstream.close()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    sizes = sorted(r["bytes"] for r in restarts)
    fig["restart_bytes"] = [int(r["bytes"]) for r in restarts]
    fig["restart_bytes_min"], fig["restart_bytes_median"], fig["restart_bytes_max"] = \
        int(sizes[0]), int(statistics.median(sizes)), int(sizes[-1])
    fig["restart_ratio_median"] = round(statistics.median(sizes) / first, 6)
    fig["restart_ratio_max"] = round(sizes[-1] / first, 6)
    fig["restart_whole_snapshot_bytes"] = int(sum(r["whole_snapshot_bytes"] for r in restarts))
    fig["restart_s_median"] = round(statistics.median(r["s"] for r in restarts), 1)
    fig["restart_capture_peak_rss_mb_max"] = round(max(r["peak_rss_mb"] for r in restarts))
    print(f"per restart: min {sizes[0] / 1e3:,.1f} kB, median {statistics.median(sizes) / 1e3:,.1f} kB, max "
          f"{sizes[-1] / 1e3:,.1f} kB; baseline (the first copy) {first / 1e6:,.1f} MB: median "
          f"{fig['restart_ratio_median']}x, max {fig['restart_ratio_max']}x; whole snapshots after the first copy "
          f"{fig['restart_whole_snapshot_bytes']:,} bytes", flush=True)
    print(json.dumps(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
