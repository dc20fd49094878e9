"""What keeping a store's stable parts on S3 costs (``writer run --parts-to``, docs/store.md
"Parts on shared storage"), against the same store on local disk alone.

    .venv/bin/python bench/parts_remote.py                  # 2,000,000 rows, 3 rounds
    .venv/bin/python bench/parts_remote.py --rows 500000

Two stores get the same rows (one table, compacted into stable parts of the default 2M-row
partitions, LZ4_RAW); one keeps its parts on the S3 server of the tests (SeaweedFS on loopback,
tests/support/s3_server.py, built by the set-up command). Measured side by side, per round:

* ``compact``: a forced compaction after the same commits to both (the S3 store uploads its new
  parts before the edit lists them);
* ``read warm``: a full scan at the newest ts, every part in the local cache;
* ``read cold``: the same scan after the cache was emptied (``local_parts_bytes=0``): every part
  fetched from the bucket and checked (its CRC-32C) before it is read.

Loopback S3 has no network latency: the figures are the upload/download path's own cost (the
SDK, SeaweedFS on the same 2 cores, the checksum), not a remote bucket's. Prints each figure's
median over the rounds, its ratio to the local store's, and ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

from one_region_writes import COLUMNS, T1, Upstream  # noqa: E402
from pyspark_theflash.store import Store, StoreOptions  # noqa: E402
from s3_server import S3Server  # noqa: E402
from store_events import DB  # noqa: E402


def timed(call: Callable[[], object]) -> float:
    t = time.perf_counter()
    call()
    return time.perf_counter() - t


def fetch_all(store: Store) -> None:
    """Every live stable part of ``store`` fetched into its cache, as a read fetches it."""
    from pyspark_theflash.store import integrity

    with store.snapshot() as view:
        parts = [p for tid in view.table_ids_with_parts() for p in view.parts(tid) if p.path.endswith(".parquet")]
    for part in parts:
        integrity.ensure_local(store.root / part.path, part)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import os

    work = Path(tempfile.mkdtemp(prefix="theflash-parts-remote-"))
    server = S3Server(work / "s3").start()
    os.environ.update(server.env())
    bucket = f"bench-{secrets.token_hex(4)}"
    server.create_bucket(bucket)
    try:
        options = StoreOptions(removed_file_retention_s=0)
        local = Store.open(work / "local", options=options)
        on_s3 = Store.open(work / "s3store", options=replace(options, parts_remote=f"s3://{bucket}/flash",
                                                             local_parts_bytes=0))
        stores = {"local": local, "s3": on_s3}
        ups = {name: Upstream(s) for name, s in stores.items()}
        ups["s3"].now_ms = ups["local"].now_ms
        for s in stores.values():
            s.put_schema(DB, T1.to_json())
        figures: dict[str, dict[str, list[float]]] = {n: {"compact": [], "read_warm": [], "read_cold": []}
                                                     for n in stores}
        batch = 100_000
        fetch_s: list[float] = []
        for r in range(args.rounds):
            # a round rewrites every row (the compaction merges them all): the same commits to both
            for lo in range(0, args.rows, batch):
                changes = [(h, f"r{r}-{h}") for h in range(lo, min(lo + batch, args.rows))]
                ts = 0
                for name, up in ups.items():
                    ts = up.commit(changes)
                    stores[name].flush()
            order = list(stores.items()) if r % 2 == 0 else list(stores.items())[::-1]  # neither always first
            for name, s in order:
                figures[name]["compact"].append(timed(lambda: s.compact(force=True)))
                s.delete_obsolete_files()
            for name, s in order:
                cold = timed(lambda: s.scan_table(T1.id, ts, columns=COLUMNS))
                warm = timed(lambda: s.scan_table(T1.id, ts, columns=COLUMNS))
                figures[name]["read_cold"].append(cold)
                figures[name]["read_warm"].append(warm)
            # where a cold read's extra time goes: the fetches alone (download, checksum, rename)
            on_s3.delete_obsolete_files()
            fetch_s.append(timed(lambda: fetch_all(on_s3)))
            parts = len(list((work / "s3store").rglob("stable-*.parquet")))
            print(f"round {r + 1}: {args.rows:,} rows, {parts} stable part(s) fetched into the S3 store's cache",
                  flush=True)
        result: dict[str, float | int] = {"rows": args.rows, "rounds": args.rounds}
        print(f"\n{'figure':<12}{'local s':>10}{'s3 s':>10}{'s3/local':>10}")
        for figure in ("compact", "read_warm", "read_cold"):
            a = statistics.median(figures["local"][figure])
            b = statistics.median(figures["s3"][figure])
            print(f"{figure:<12}{a:>10.3f}{b:>10.3f}{b / a:>10.2f}")
            result[f"local_{figure}_s"] = round(a, 4)
            result[f"s3_{figure}_s"] = round(b, 4)
            result[f"{figure}_ratio"] = round(b / a, 3)
        fetch = statistics.median(fetch_s)
        print("(local read_cold reads the same local files as read_warm: the page cache keeps them)")
        print(f"of the S3 store's cold read, fetching its parts alone (download, CRC-32C, rename): {fetch:.3f} s")
        result["s3_fetch_s"] = round(fetch, 4)
        for s in stores.values():
            s.close()
        print(json.dumps(result))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
