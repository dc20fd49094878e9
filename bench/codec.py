"""Row decoding throughput: the per-row path (codec.row.decode_row for each row, then Arrow
arrays from the Python values) against the vectorised codec.batch.decode_rows_to_arrow, on
the same rows of a 12-column mixed table (int handle, TINYINT, SMALLINT, INT, BIGINT
UNSIGNED, DOUBLE, DECIMAL(12,2), VARCHAR, DATETIME(6), DATE, ENUM and a VARCHAR with ~10% NULLs),
in one run.

    .venv/bin/python bench/codec.py [--rows 200000] [--repeat 3] [--seed 7]

Prints both rates and their ratio, then one JSON line with the figures.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import time
from decimal import Decimal

from pyspark_theflash.codec.batch import decode_rows_to_arrow, record_batch_from_rows
from pyspark_theflash.codec.row import decode_row
from pyspark_theflash.codec.row_v2 import encode_row_for_table
from pyspark_theflash.schema import TableInfo, column, row_columns, table


def bench_table() -> TableInfo:
    return table(100, "bench_mixed", [
        column("id", "BIGINT", primary_key=True),
        column("tiny", "TINYINT"),
        column("small", "SMALLINT"),
        column("num", "INT"),
        column("big_u", "BIGINT UNSIGNED"),
        column("ratio", "DOUBLE"),
        column("amount", "DECIMAL(12,2)"),
        column("name", "VARCHAR(64)"),
        column("created", "DATETIME(6)"),
        column("day", "DATE"),
        column("state", "ENUM('new','paid','shipped','done')"),
        column("note", "VARCHAR(32)"),  # nullable, ~10% NULL
    ])


def make_rows(t: TableInfo, n: int, seed: int) -> tuple[list[bytes], list[int]]:
    rng = random.Random(seed)
    base = dt.datetime(2020, 1, 1)
    states = ["new", "paid", "shipped", "done"]
    values, handles = [], []
    columns = row_columns(t)
    for i in range(n):
        row = {
            "tiny": rng.randint(-128, 127),
            "small": rng.randint(-32768, 32767),
            "num": rng.randint(-2**31, 2**31 - 1) if rng.random() < 0.5 else rng.randint(0, 300),
            "big_u": rng.randint(0, 2**64 - 1),
            "ratio": rng.uniform(-1e6, 1e6),
            "amount": Decimal(rng.randint(-10**11, 10**11)).scaleb(-2),
            "name": f"customer-{rng.randint(0, 10**6)}",
            "created": base + dt.timedelta(microseconds=rng.randint(0, 10**14)),
            "day": dt.date(2000, 1, 1) + dt.timedelta(days=rng.randint(0, 9000)),
            "state": rng.choice(states),
            "note": None if rng.random() < 0.1 else "n" * rng.randint(0, 20),
        }
        values.append(encode_row_for_table(columns, row))
        handles.append(i)
    return values, handles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3, help="vectorised runs (best is reported)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    t = bench_table()
    t0 = time.perf_counter()
    values, handles = make_rows(t, args.rows, args.seed)
    print(f"encoded {args.rows} rows ({sum(map(len, values)) / args.rows:.1f} B/row) "
          f"in {time.perf_counter() - t0:.1f}s")

    columns = row_columns(t)
    t0 = time.perf_counter()
    per_row = record_batch_from_rows([decode_row(v, columns, h) for v, h in zip(values, handles)], columns)
    per_row_s = time.perf_counter() - t0

    vec_s = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        vec = decode_rows_to_arrow(values, handles, columns)
        vec_s = min(vec_s, time.perf_counter() - t0)
    if not vec.equals(per_row):
        raise SystemExit("the vectorised batch differs from the per-row batch")

    per_row_rate = args.rows / per_row_s
    vec_rate = args.rows / vec_s
    ratio = vec_rate / per_row_rate
    print(f"per-row    decode_row + Arrow : {per_row_rate:12,.0f} rows/s  ({per_row_s:.2f}s)")
    print(f"vectorised decode_rows_to_arrow: {vec_rate:12,.0f} rows/s  ({vec_s:.3f}s, best of {args.repeat})")
    print(f"ratio: {ratio:.1f}x")
    print(json.dumps({"bench": "codec.decode_rows", "rows": args.rows, "columns": len(t.columns),
                      "per_row_rows_per_s": round(per_row_rate), "vectorised_rows_per_s": round(vec_rate),
                      "ratio": round(ratio, 1)}))


if __name__ == "__main__":
    main()
