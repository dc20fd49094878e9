"""Capture's memory with N idle registered regions, and what holds it.

    .venv/bin/python bench/capture_idle_memory.py 100000            # peak RSS, and at caught-up
    .venv/bin/python bench/capture_idle_memory.py 30000 --tracemalloc  # + Python bytes a region, by line

bench/capture_ceiling.py's rig (PD, one TiKV store, TiDB's status port) with N regions serves
every region's INITIALIZED and one message of 64 transactions' rows; ``theflash capture
--until-ts`` runs in its own process as an operator runs it. Printed: the wall time from its
start to its exit (registering N regions is most of it), its peak RSS (VmHWM, polled) and, when
it is first caught up, its RSS and peak so far; with ``--tracemalloc`` (slow) the Python bytes
and objects a region by allocating line, and with ``--objects`` the live objects by type. The
process's own memory is the figure at 8 regions; docs/capture.md, "Memory per region".
"""
from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _vm(pid: int | str = "self") -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            out[line.split(":")[0]] = int(line.split()[1])
    return out


def child(argv: list[str]) -> int:
    """Capture with ``argv``, reporting its memory when it is first caught up (a bench hook on
    ``Capture.caught_up``; the product knows nothing of it)."""
    traced = os.environ.get("BENCH_TRACEMALLOC") == "1"
    if traced:
        import tracemalloc

        tracemalloc.start()
    from pyspark_theflash.capture import capture as capture_module
    from pyspark_theflash.cli import main

    caught_up = capture_module.Capture.caught_up
    reported = False

    def hooked(self: Any, ts: int) -> bool:
        nonlocal reported
        done = caught_up(self, ts)
        if done and not reported:
            reported = True
            n = max(1, len(self.feeds))
            vm = _vm()
            print(f"MEMORY at caught-up: RSS {vm['VmRSS'] / 1024:.0f} MiB, peak {vm['VmHWM'] / 1024:.0f} MiB, "
                  f"{len(self.feeds)} regions", flush=True)
            if os.environ.get("BENCH_OBJECTS") == "1":
                counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
                print("MEMORY objects by type:", counts.most_common(20), flush=True)
            if traced:
                import tracemalloc

                stats = tracemalloc.take_snapshot().filter_traces(
                    [tracemalloc.Filter(False, tracemalloc.__file__)]).statistics("lineno")
                total = sum(s.size for s in stats)
                print(f"MEMORY tracemalloc: {total / 2**20:.1f} MiB in Python objects ({total / n:.0f} B a region, "
                      "the imports' included: subtract the figure at 8 regions)", flush=True)
                for s in stats[:30]:
                    print(f"MEMORY {s.size / n:8.1f} B {s.count / n:5.2f} objects a region  {s.traceback}", flush=True)
        return done

    capture_module.Capture.caught_up = hooked  # type: ignore[method-assign]
    return main(argv)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("regions", type=int)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--objects", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "bench"))
    import capture_ceiling as cc

    env = dict(os.environ, BENCH_TRACEMALLOC="1" if args.tracemalloc else "0",
               BENCH_OBJECTS="1" if args.objects else "0")
    rig = cc.Rig(args.regions)
    work = Path(tempfile.mkdtemp(prefix="theflash-bench-idle-"))
    try:
        base = rig.get_ts() - (1 << 30)
        feed = cc.live_feed(min(64, args.regions), 10, args.regions, 64, base)
        rig.feed, rig.live = feed, None
        cmd = [sys.executable, __file__, "--child", "capture", "--pd", rig.address, "--tidb", rig.status,
               "--binlog", str(work / "binlog"), "--until-ts", str(feed.last_ts), "--resolve-locks-after", "0"]
        began = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
        reader.start()
        peak = 0
        while proc.poll() is None:
            try:
                peak = max(peak, _vm(proc.pid).get("VmHWM", 0))
            except (OSError, ValueError):
                continue  # it exited between poll() and the read of /proc: poll() says so next
            time.sleep(0.05)
        reader.join()
        took = time.monotonic() - began
        if proc.returncode:
            print("".join(lines[-30:]), file=sys.stderr)
            return proc.returncode
        print("".join(line[len("MEMORY "):] for line in lines if line.startswith("MEMORY")), end="")
        print(f"{args.regions:,} regions: capture ran {took:.1f} s (start to exit), peak RSS {peak / 1024:.0f} MiB")
        print(json.dumps({"bench": "capture_idle_memory", "regions": args.regions, "seconds": round(took, 1),
                          "peak_rss_mib": round(peak / 1024)}))
        return 0
    finally:
        rig.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
