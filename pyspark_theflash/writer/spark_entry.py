"""The writer as a Spark job: ``spark-submit <this file> --binlog ... --store ...``.

The driver keeps the writer loop (one writer per store, the same latch, flushes, progress
and signals as ``theflash writer run``); rows of batches large enough to gain from it are
decoded on the executors (``--executor-decode-rows``) and handed to the store pre-decoded
(``Store.decode_rows``). Measured on one 2-core machine (local[2], bench/writer_decode.py): the
driver's vectorised decode does ~1M rows/s, executor decode ~290k rows/s (shipping the values
to Python workers dominates), so with a local master it is off unless asked for.
``theflash writer --spark-entry`` prints this file's path.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from pyspark_theflash.store import Store


def main(argv: Sequence[str] | None = None) -> int:
    from pyspark_theflash.cli import CommandError
    from pyspark_theflash.writer.cli import add_run_options, options_from_args, run_writer
    from pyspark_theflash.writer.spark_decode import DEFAULT_MIN_ROWS, ExecutorRowDecoder

    parser = argparse.ArgumentParser(prog="spark-submit spark_entry.py", description=__doc__.splitlines()[0])
    add_run_options(parser)
    parser.add_argument("--executor-decode-rows", type=int, default=None,
                        help="decode a table's rows of a batch on executors from this many rows (default: "
                        f"{DEFAULT_MIN_ROWS} on a cluster, off with a local[*] master, where shipping rows to "
                        "Python workers costs more than the driver's vectorised decode; 0 = off)")
    parser.add_argument("--decode-partitions", type=int, default=0,
                        help="executor tasks per decoded table batch (default: Spark's default parallelism)")
    args = parser.parse_args(argv)
    opts = options_from_args(args)

    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName(f"theflash-writer {opts.store}").getOrCreate()
    min_rows = args.executor_decode_rows
    if min_rows is None:
        min_rows = 0 if (spark.sparkContext.master or "").startswith("local") else DEFAULT_MIN_ROWS
    decoder = ExecutorRowDecoder(spark.sparkContext, min_rows or 1, args.decode_partitions)

    def use_executors(store: Store) -> None:
        if not min_rows:
            logging.getLogger("theflash.writer").info("executor decode off: rows are decoded on the driver")
        else:
            store.decode_rows = decoder

    try:
        code = run_writer(opts, args.log, configure_store=use_executors)
    except CommandError as exc:
        print(f"theflash writer (spark): {exc}", file=sys.stderr)
        code = 2
    finally:
        logging.getLogger("theflash.writer").info(
            "executor decode: %d table batches, %d rows", decoder.executor_batches, decoder.executor_rows
        )
        spark.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
