"""What parsing a read's options costs the connector jar now that it asks the service
(``ReadOptions.parse`` → ``POST /v1/read-options``, docs/reading.md "One parser of the options").

    .venv/bin/python bench/read_options.py             # 500 parses each way
    .venv/bin/python bench/read_options.py --parses 2000

A local ``theflash serve`` on an empty store and a local Spark session with the jar. Each way runs
the same options (server, table, timestampAsOf, batch_rows) ``--parses`` times through py4j,
interleaved in rounds:

* ``jar``: ``ReadOptions.parse`` (the jar's parse: one HTTP round trip to the service);
* ``python``: ``ScanOptions.from_mapping`` in this process (what the Python source pays);
* ``py4j``: a py4j call that does nothing (``HashMap.size``) — the baseline every jar call pays.

Prints each way's median time a parse over the rounds, the jar's ratio to the baseline and to
the Python source's parse, and ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = {"table": "a.b", "timestampasof": "2026-11-21 06:00:00", "batch_rows": "1000"}


def per_call_ms(call: Callable[[], object], n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - t) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parses", type=int, default=500, help="parses a way per round (default 500)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, the ways interleaved (default 5)")
    args = parser.parse_args()

    from pyspark.sql import SparkSession

    from pyspark_theflash.scan.options import ScanOptions
    from pyspark_theflash.spark.jar import JAR
    from pyspark_theflash.store.store import Store

    with tempfile.TemporaryDirectory(prefix="theflash-bench-options-") as tmp:
        store = Path(tmp) / "store"
        Store.open(store).close()
        serve = subprocess.Popen([sys.executable, "-m", "pyspark_theflash", "serve", "--store", str(store), "--port", "0",
                                  "--http-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            url = None
            assert serve.stdout is not None
            for line in serve.stdout:
                found = re.search(r"(http://127\.0\.0\.1:\d+)", line)
                if found:
                    url = found.group(1)
                    break
            if url is None:
                sys.exit("theflash serve did not print its HTTP address")
            spark = (SparkSession.builder.master("local[1]").config("spark.jars", str(JAR))
                     .config("spark.ui.enabled", "false").getOrCreate())
            jvm = spark._jvm
            opts = jvm.java.util.HashMap()
            for key, value in {"server": url, **OPTIONS}.items():
                opts.put(key, value)
            read_options = jvm.io.theflash.spark.ReadOptions
            ways: dict[str, Callable[[], object]] = {
                "jar": lambda: read_options.parse(opts, None, None, None),
                "python": lambda: ScanOptions.from_mapping({"store": str(store), **OPTIONS}),
                "py4j": lambda: opts.size(),
            }
            for call in ways.values():  # warm: the JIT, the connection, the imports
                per_call_ms(call, 50)
            times: dict[str, list[float]] = {name: [] for name in ways}
            for _ in range(args.rounds):
                for name, call in ways.items():
                    times[name].append(per_call_ms(call, args.parses))
            spark.stop()
        finally:
            serve.terminate()
            serve.wait(timeout=30)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    for name, ms in median.items():
        print(f"{name:>7}: {ms:.3f} ms a parse (median of {args.rounds} rounds of {args.parses})")
    print(f"jar / py4j baseline: {median['jar'] / median['py4j']:.1f}x; jar / python source: "
          f"{median['jar'] / median['python']:.1f}x")
    print(json.dumps({"jar_parse_ms": round(median["jar"], 3), "python_parse_ms": round(median["python"], 3),
                      "py4j_call_ms": round(median["py4j"], 3),
                      "jar_vs_py4j": round(median["jar"] / median["py4j"], 1)}))


if __name__ == "__main__":
    main()
