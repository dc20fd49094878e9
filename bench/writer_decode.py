"""Decoding one table's rows on the driver (codec.batch.decode_rows_to_arrow) against decoding
them on Spark executors (writer/spark_decode.ExecutorRowDecoder), as the writer's spark-submit
entry would; both results are compared.

    .venv/bin/python bench/writer_decode.py                 # 400k rows, local[2]
    .venv/bin/python bench/writer_decode.py --rows 100000 --master local[4]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    from pyspark.sql import SparkSession

    from pyspark_theflash.codec.batch import decode_rows_to_arrow
    from pyspark_theflash.schema import TableInfo, row_columns
    from pyspark_theflash.upstream.tidb import Catalog, encode_value, make_column
    from pyspark_theflash.upstream.tso import TimestampOracle
    from pyspark_theflash.writer.spark_decode import ExecutorRowDecoder

    catalog = Catalog(TimestampOracle(Path(tempfile.mkdtemp()) / "tso.json"))
    catalog.create_database("b")
    table = catalog.create_table("b", "t", [make_column("id", "BIGINT", not_null=True), make_column("v", "BIGINT"),
                                            make_column("s", "VARCHAR(32)"), make_column("d", "DECIMAL(12,2)")], ["id"])
    info = TableInfo.from_json(table, db="b")
    values = [encode_value(table, {"id": i, "v": i * 3, "s": f"name-{i}", "d": Decimal("12.34")}) for i in range(args.rows)]
    handles = np.arange(args.rows, dtype=np.int64)
    started = time.perf_counter()
    on_driver = decode_rows_to_arrow(values, handles, row_columns(info))
    driver_s = time.perf_counter() - started
    spark = SparkSession.builder.master(args.master).config("spark.ui.enabled", "false").getOrCreate()
    decoder = ExecutorRowDecoder(spark.sparkContext, 1)
    decoder(values[:1000], handles[:1000], info)  # start the Python workers before the clock
    started = time.perf_counter()
    on_executors = decoder(values, handles, info)
    executor_s = time.perf_counter() - started
    spark.stop()
    assert on_executors.equals(on_driver)
    result = {"rows": args.rows, "master": args.master, "driver_rows_per_s": round(args.rows / driver_s),
              "executor_rows_per_s": round(args.rows / executor_s)}
    print(f"{args.rows} rows: driver {driver_s:.2f}s ({result['driver_rows_per_s']:,} rows/s), executors "
          f"({args.master}) {executor_s:.2f}s ({result['executor_rows_per_s']:,} rows/s)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
