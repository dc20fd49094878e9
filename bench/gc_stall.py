"""The longest stall of TSO and reads while the mini cluster's GC runs.

    .venv/bin/python bench/gc_stall.py                                   # 2 min, GC every 20 s
    .venv/bin/python bench/gc_stall.py --seconds 1800 --gc-every 60s     # the 30-minute bank run

``theflash upstream --serve`` runs in its own process with the bank workload at ``--rate`` (with
``--faults``) and GC every ``--gc-every`` at life time ``--gc-life``, as an operator runs it.
From this process, over gRPC, three probes call it back to back, each in its own thread:

* ``GetTS`` (what every read and commit asks first);
* ``ReadIndex`` of the table's first region (what a replica's learner read asks);
* ``ScanTable`` of the bank table at a fresh ts (a stale read's stream), whose balances must sum
  to the bank's total every time.

A probe's latency is its stall; the figure that matters is the maximum over the run (the issue's
bound: no stall over 1 s with GC every minute), also given for the probes that overlapped a GC
run (a safe point that moved between the probe's start and the next poll). Ends with one JSON
line.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TABLE = "bank.accounts"
INITIAL_BALANCE = 1000  # BankWorkload's default per account


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--rate", type=float, default=50.0, help="bank transfers per second")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--faults", default="", help="theflash upstream --faults (e.g. dying,rollback,split_merge)")
    parser.add_argument("--gc-every", default="20s", help="GC run interval (theflash upstream --gc-run-interval)")
    parser.add_argument("--gc-life", default="10s", help="GC life time (theflash upstream --gc-life-time)")
    parser.add_argument("--scan-pause", type=float, default=0.2, help="seconds between ScanTable probes")
    args = parser.parse_args()

    import grpc

    from pyspark_theflash.proto import upstream_pb2, upstream_pb2_grpc

    work = Path(tempfile.mkdtemp(prefix="theflash-bench-gc-"))
    log_path = work / "upstream.log"
    log = log_path.open("w")
    upstream = subprocess.Popen(
        [sys.executable, "-m", "pyspark_theflash", "upstream", "--data", str(work / "data"), "--binlog",
         str(work / "binlog"), "--serve", "0", "--workload", "bank", "--accounts", str(args.accounts),
         "--rate", str(args.rate), "--threads", "2", "--faults", args.faults,
         "--gc-run-interval", args.gc_every, "--gc-life-time", args.gc_life],
        stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        address = None
        assert upstream.stdout is not None
        for line in upstream.stdout:
            log.write(line)
            found = re.search(r"serving upstream grpc://(\S+)", line)
            if found:
                address = found.group(1)
                break
        if address is None:
            raise SystemExit(f"theflash upstream did not start: {log_path.read_text()[-2000:]}")
        threading.Thread(target=lambda: [log.write(x) for x in upstream.stdout], daemon=True).start()  # type: ignore[union-attr]
        channel = grpc.insecure_channel(address)
        stub = upstream_pb2_grpc.UpstreamStub(channel)
        total = args.accounts * INITIAL_BALANCE
        region_id = 0
        deadline = time.monotonic() + 60
        while not region_id:  # the workload's setup creates the table
            try:
                scan = list(stub.ScanTable(upstream_pb2.ScanTableRequest(db="bank", table="accounts"), timeout=30))
                if sum(len(r.keys) for r in scan) == args.accounts:
                    region_id = stub.GetRegions(upstream_pb2.GetRegionsRequest(), timeout=10).regions[-1].id
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the bank table never appeared")
            time.sleep(0.2)

        from pyspark_theflash.upstream_client.records import decode_records

        done = threading.Event()
        gc_runs: list[tuple[float, int]] = []   # (when seen, safe point)
        samples: dict[str, list[tuple[float, float]]] = {"GetTS": [], "ReadIndex": [], "ScanTable": []}
        failures: list[str] = []

        def probe(name: str, call, pause: float) -> None:  # type: ignore[no-untyped-def]
            while not done.is_set():
                began = time.monotonic()
                try:
                    call()
                except Exception as exc:  # a failed probe is a stall too: recorded with its time
                    failures.append(f"{name}: {exc}"[:300])
                samples[name].append((began, time.monotonic() - began))
                time.sleep(pause)

        def read_index() -> None:
            stub.ReadIndex(upstream_pb2.ReadIndexRequest(region_id=region_id), timeout=300)

        def scan_table() -> None:
            table: dict = {}
            pairs: list[tuple[bytes, bytes]] = []
            for resp in stub.ScanTable(upstream_pb2.ScanTableRequest(db="bank", table="accounts"), timeout=300):
                if resp.table_info:
                    table = json.loads(resp.table_info)
                pairs.extend(zip(resp.keys, resp.values))
            balances = sum(int(row["balance"]) for row in decode_records(table, pairs))
            if balances != total:
                failures.append(f"ScanTable: balances sum to {balances}, not {total}")

        def watch_gc() -> None:
            last = 0
            while not done.wait(0.05):
                try:
                    sp = int(stub.GetGCSafePoint(upstream_pb2.GCSafePointRequest(), timeout=300).safe_point)
                except grpc.RpcError:
                    continue
                if sp != last:
                    gc_runs.append((time.monotonic(), sp))
                    last = sp

        threads = [
            threading.Thread(target=probe, args=("GetTS", lambda: stub.GetTS(upstream_pb2.GetTSRequest(count=1),
                                                                                timeout=300), 0.01), daemon=True),
            threading.Thread(target=probe, args=("ReadIndex", read_index, 0.01), daemon=True),
            threading.Thread(target=probe, args=("ScanTable", scan_table, args.scan_pause), daemon=True),
            threading.Thread(target=watch_gc, daemon=True),
        ]
        started = time.monotonic()
        for t in threads:
            t.start()
        while time.monotonic() - started < args.seconds:
            time.sleep(1.0)
            if upstream.poll() is not None:
                raise SystemExit(f"theflash upstream exited: {log_path.read_text()[-2000:]}")
        done.set()
        for t in threads:
            t.join(320)
        elapsed = time.monotonic() - started
        channel.close()

        runs = [when for when, _ in gc_runs[1:]]  # the first poll only saw the starting safe point

        def near_gc(began: float, took: float) -> bool:
            return any(began - 0.1 <= when <= began + took + 0.1 for when in runs)

        result: dict[str, object] = {"bench": "gc_stall", "seconds": round(elapsed, 1), "rate": args.rate,
                                     "accounts": args.accounts, "faults": args.faults, "gc_every": args.gc_every,
                                     "gc_life": args.gc_life, "gc_runs_seen": len(runs), "failures": len(failures)}
        print(f"{elapsed:.0f}s, bank at {args.rate}/s over {args.accounts} accounts, faults '{args.faults}', "
              f"GC every {args.gc_every} (life {args.gc_life}): {len(runs)} GC run(s) seen")
        worst = 0.0
        for name, got in samples.items():
            took = [t for _, t in got]
            overlapping = [t for b, t in got if near_gc(b, t)]
            figures = {"n": len(took), "p50_ms": round(percentile(took, 0.5) * 1000, 1),
                       "p99_ms": round(percentile(took, 0.99) * 1000, 1),
                       "max_ms": round(max(took, default=float("nan")) * 1000, 1),
                       "max_near_gc_ms": round(max(overlapping, default=0.0) * 1000, 1)}
            worst = max(worst, max(took, default=0.0))
            print(f"{name:<10} n={figures['n']:<7} p50 {figures['p50_ms']:8.1f} ms  p99 {figures['p99_ms']:8.1f} ms  "
                  f"max {figures['max_ms']:8.1f} ms  max near a GC run {figures['max_near_gc_ms']:8.1f} ms")
            result[name] = figures
        result["max_stall_ms"] = round(worst * 1000, 1)
        print(f"longest stall {worst * 1000:.1f} ms; {len(failures)} failed probe(s)"
              + (f", first: {failures[0]}" if failures else ""))
        print(json.dumps(result))
    finally:
        upstream.terminate()
        try:
            upstream.wait(60)
        except subprocess.TimeoutExpired:
            upstream.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
