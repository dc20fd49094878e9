"""Arrow Flight ``do_get`` of a whole table from ``theflash serve``, beside a plain
``pyarrow.flight`` server streaming the same rows from memory, side by side in one run.

    .venv/bin/python bench/flight.py                     # 2M rows x 16 columns, 16 regions
    .venv/bin/python bench/flight.py --rows 200000       # smaller
    .venv/bin/python bench/flight.py --deltas            # leave the store uncompacted (delta parts)

The rows go the product's whole way: ``MiniCluster.bulk_insert`` → binlog files → the writer
→ the store, compacted (as the writer's background compaction does) unless ``--deltas``. Then
two servers run as processes of their own on 127.0.0.1, with the writer stopped (a quiet
machine):

* ``theflash serve --store DIR --port 0``: a client asks ``get_flight_info`` for the table at
  one snapshot ts (planning, lease, learner read included) and reads every endpoint with
  ``do_get`` (``--threads`` at a time);
* baseline: a plain ``pyarrow.flight`` server holding the same rows (read once through the
  service and saved as Arrow IPC) in memory, one ``do_get`` of the whole table.

Throughput is Arrow bytes received (record batch buffers) per second of wall time, best of
``--repeat``. Both answers are checked equal (row count, and a sum of every numeric column).
Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(ROOT / "bench"))

from live_rig import TABLE, columns  # noqa: E402  (the 16-column table bench/scan.py reads too)

TARGET_MB_S = 500.0




def rows_table(lo: int, hi: int) -> pa.Table:
    import numpy as np

    i = np.arange(lo, hi, dtype=np.int64)
    rng = np.random.default_rng(lo)
    return pa.table({
        "id": i, "k": (i % 1000).astype(np.int32), "n0": i * 3, "n1": rng.integers(0, 1 << 40, len(i)), "n2": -i,
        "n3": i % 7, "x0": i / 7.0, "x1": rng.random(len(i)), "x2": (i % 100).astype(np.float64),
        "s0": pa.array([f"name-{v:08d}" for v in i]), "s1": pa.array(np.array(["red", "green", "blue"])[i % 3]),
        "s2": pa.array([f"{v % 97:04d}-tag" for v in i]),
        "amount": cents(i % 100000),
        "day": pa.array(i % 1000, pa.int32()).cast(pa.date32()),
        "at": pa.array(1_704_067_200_000_000 + i * 1_000_000, pa.int64()).cast(pa.timestamp("us")),
        "flag": (i % 2).astype(np.int8),
    })


def cents(unscaled: Any) -> pa.Array:
    """DECIMAL(12,2) values ``unscaled / 100`` built from their 128-bit two's complement words."""
    import numpy as np

    words = np.zeros((len(unscaled), 2), dtype=np.int64)
    words[:, 0] = unscaled
    words[:, 1] = np.where(unscaled < 0, -1, 0)
    return pa.Array.from_buffers(pa.decimal128(12, 2), len(unscaled), [None, pa.py_buffer(words.tobytes())])


def load(rig: Any, rows: int, regions: int, chunk: int) -> float:
    from pyspark_theflash.upstream.tidb import make_column, record_key

    table = rig.cluster.create_table(TABLE, [make_column(n, t, not_null=(n == "id")) for n, t in columns()],
                                     primary_key=["id"])
    for i in range(1, regions):
        rig.cluster.split_at(record_key(table, rows * i // regions))
    started = time.monotonic()
    for lo in range(0, rows, chunk):
        rig.cluster.bulk_insert(TABLE, rows_table(lo, min(rows, lo + chunk)), txn_rows=chunk // 4)
    return time.monotonic() - started


def start_child(argv: list[str], ready: str) -> tuple[subprocess.Popen[str], str]:
    """A server process; returns it and the ``grpc://`` location it printed on its first line."""
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert child.stdout is not None
    line = child.stdout.readline()
    if ready not in line:
        child.kill()
        raise SystemExit(f"{argv[0]} did not start: {line!r}")
    return child, next(w for w in line.split() if w.startswith("grpc://"))


def stop_child(child: subprocess.Popen[str]) -> None:
    child.terminate()
    try:
        child.wait(30)
    except subprocess.TimeoutExpired:
        child.kill()


def read_flight(client: flight.FlightClient, command: dict[str, Any], threads: int) -> tuple[float, int, int]:
    """(seconds in do_get, rows, Arrow bytes) of one whole read: get_flight_info (a session
    opened: planning, lease, learner read), then every endpoint's do_get."""
    info = client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(command)))

    def one(endpoint: flight.FlightEndpoint) -> tuple[int, int]:
        rows = nbytes = 0
        for chunk in client.do_get(endpoint.ticket):
            rows += chunk.data.num_rows
            nbytes += chunk.data.nbytes
        return rows, nbytes

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        parts = list(pool.map(one, info.endpoints))
    return time.monotonic() - started, sum(p[0] for p in parts), sum(p[1] for p in parts)


def checksum(table: pa.Table) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": table.num_rows}
    for name in ("id", "n0", "n1", "k", "amount"):
        out[name] = str(pc.sum(table.column(name)).as_py())
    return out


def best_of(repeat: int, fn: Callable[[], tuple[float, int, int]]) -> tuple[float, float, int, int]:
    """Best (whole read s, do_get s, rows, bytes) of ``repeat`` runs after a warm-up."""
    fn()  # warm: connections, page cache
    best = (float("inf"), 0.0, 0, 0)
    for _ in range(repeat):
        started = time.monotonic()
        get_s, rows, nbytes = fn()
        best = min(best, (time.monotonic() - started, get_s, rows, nbytes))
    return best


def plain_server(path: str) -> None:
    """The baseline: a plain pyarrow.flight server streaming one in-memory table."""
    with pa.memory_map(path) as source:
        table = pa.ipc.open_file(source).read_all().combine_chunks()
    table = pa.Table.from_batches(table.to_batches(max_chunksize=65536))

    class Plain(flight.FlightServerBase):
        def get_flight_info(self, context: Any, descriptor: flight.FlightDescriptor) -> flight.FlightInfo:
            endpoint = flight.FlightEndpoint(b"all", [flight.Location.for_grpc_tcp("127.0.0.1", self.port)])
            return flight.FlightInfo(table.schema, descriptor, [endpoint], table.num_rows, table.nbytes)

        def do_get(self, context: Any, ticket: flight.Ticket) -> flight.RecordBatchStream:
            return flight.RecordBatchStream(table)

    server = Plain("grpc://127.0.0.1:0")
    print(f"plain flight serving grpc://127.0.0.1:{server.port}", flush=True)
    server.serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--regions", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=200_000, help="rows per bulk_insert call")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="endpoints read at a time by the client")
    parser.add_argument("--deltas", action="store_true", help="do not compact: read delta parts as flushed")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--plain-server", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_server:
        plain_server(args.plain_server)
        return

    from flash_rig import FlashRig, wait_for

    from pyspark_theflash.store import Store

    work = Path(tempfile.mkdtemp(prefix="theflash-bench-flight-"))
    rig = FlashRig(work)
    children: list[subprocess.Popen[str]] = []
    try:
        print(f"loading {args.rows} rows ({len(columns())} columns, {args.regions} regions) through "
              "mini cluster → binlog → writer → store ...", flush=True)
        rig.start_writer(interval_s=0.1)
        load_s = load(rig, args.rows, args.regions, args.chunk)
        rig.wait_replicated(TABLE)
        ts = rig.cluster.get_ts()
        from pyspark_theflash.scan.session import open_read_session

        def caught_up() -> bool:
            with open_read_session(rig.store, TABLE, snapshot_ts=ts, columns=["id"], options={"upstream": rig.upstream}) as s:
                return s.rows >= args.rows
        wait_for(caught_up, 900, "the writer to catch up")
        rig.stop_writer()
        if not args.deltas:
            with Store.open(rig.store) as store:  # what the writer's background compaction does
                store.compact(force=True)
        with Store.open(rig.store, readonly=True) as store:
            parts = {k: v for t in store.status()["tables"] if t["name"] == TABLE for k, v in t.items()}
        print(f"loaded in {load_s:.1f}s; ts {ts}; stable {parts.get('stable')}, delta {parts.get('delta')}", flush=True)
        rig.start_writer(interval_s=0.1)  # each session's learner read asks the writer to flush

        flash, flash_location = start_child([sys.executable, "-m", "pyspark_theflash", "serve", "--store", rig.store,
                                             "--port", "0"], "serving store")
        children.append(flash)
        flash_client = flight.connect(flash_location)
        command = {"table": TABLE, "snapshot_ts": ts}
        info = flash_client.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(command)))
        table = pa.concat_tables(flash_client.do_get(e.ticket).read_all() for e in info.endpoints)
        streams = len(info.endpoints)
        ipc_path = str(work / "same_rows.arrow")
        with pa.OSFile(ipc_path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        expected = checksum(table)
        if expected["rows"] != args.rows:
            raise SystemExit(f"the service read {expected['rows']} rows at ts {ts}, want {args.rows}")
        del table
        plain, plain_location = start_child([sys.executable, str(Path(__file__).resolve()), "--plain-server", ipc_path],
                                            "plain flight serving")
        children.append(plain)
        plain_client = flight.connect(plain_location)
        plain_info = plain_client.get_flight_info(flight.FlightDescriptor.for_command(b"all"))
        if checksum(plain_client.do_get(plain_info.endpoints[0].ticket).read_all()) != expected:
            raise SystemExit("the plain server's rows differ from the service's")

        flash_s, flash_get_s, flash_rows, flash_bytes = best_of(
            args.repeat, lambda: read_flight(flash_client, command, args.threads))
        plain_s, plain_get_s, plain_rows, plain_bytes = best_of(
            args.repeat, lambda: read_flight(plain_client, {"all": True}, 1))
        if flash_rows != args.rows or plain_rows != args.rows:
            raise SystemExit(f"rows read: theflash {flash_rows}, plain {plain_rows}; want {args.rows}")
        flash_mb_s, plain_mb_s = flash_bytes / flash_get_s / 1e6, plain_bytes / plain_get_s / 1e6
        ratio = flash_mb_s / plain_mb_s
        print(f"\n{'server':<34}{'whole s':>9}{'do_get s':>10}{'MB':>9}{'do_get MB/s':>13}{'rows/s':>13}")
        for name, whole, get_s, nbytes, rows in (
                (f"theflash serve ({streams} streams)", flash_s, flash_get_s, flash_bytes, flash_rows),
                ("plain pyarrow.flight (memory)", plain_s, plain_get_s, plain_bytes, plain_rows)):
            print(f"{name:<34}{whole:>9.3f}{get_s:>10.3f}{nbytes / 1e6:>9.1f}{nbytes / get_s / 1e6:>13.1f}"
                  f"{rows / get_s:>13,.0f}")
        print(f"\ntheflash / plain do_get throughput: {ratio:.2f}   (target: >= {TARGET_MB_S:g} MB/s of Arrow; "
              f"{'met' if flash_mb_s >= TARGET_MB_S else 'not met'}); opening the session took "
              f"{flash_s - flash_get_s:.3f}s of the whole read")
        print(json.dumps({"bench": "flight", "rows": args.rows, "columns": len(columns()), "regions": args.regions,
                          "streams": streams, "threads": args.threads, "compacted": not args.deltas,
                          "load_s": round(load_s, 1), "arrow_bytes": flash_bytes,
                          "theflash_s": round(flash_s, 3), "theflash_do_get_s": round(flash_get_s, 3),
                          "theflash_mb_s": round(flash_mb_s, 1), "plain_s": round(plain_s, 3),
                          "plain_do_get_s": round(plain_get_s, 3), "plain_mb_s": round(plain_mb_s, 1),
                          "ratio": round(ratio, 3), "target_mb_s": TARGET_MB_S,
                          "date": dt.date.today().isoformat()}))
    finally:
        for child in children:
            stop_child(child)
        rig.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
