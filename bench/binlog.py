"""Binlog throughput: appending events to segment files, reading them back through the file
form and through the gRPC service (server and client in this one process, so they share the
GIL: a lower bound for two processes), and reopening a directory (torn-tail recovery scan).

    .venv/bin/python bench/binlog.py [--events 200000] [--value-bytes 100] [--batch 500]

Events are one COMMITTED row each (a 19-byte record key and a value of --value-bytes).
Prints one line per measurement, then one JSON line with the figures.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

from pyspark_theflash.binlog import SegmentReader, SegmentWriter, open_source, serve_binlog
from pyspark_theflash.proto import binlog_pb2


def make_events(count: int, value_bytes: int) -> list[binlog_pb2.Event]:
    events = []
    for i in range(count):
        event = binlog_pb2.Event(region_id=i % 8 + 1, index=i // 8 + 1)
        event.entries.rows.add(
            type=binlog_pb2.Row.COMMITTED, start_ts=i << 18, commit_ts=(i << 18) + 1,
            key=b"t\x80\x00\x00\x00\x00\x00\x00\x2d_r" + (i | 1 << 63).to_bytes(8, "big"), value=b"v" * value_bytes,
        )
        events.append(event)
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--batch", type=int, default=500, help="events per append")
    parser.add_argument("--segment-bytes", type=int, default=64 << 20)
    args = parser.parse_args()

    events = make_events(args.events, args.value_bytes)
    n = len(events)
    megabytes = sum(e.ByteSize() for e in events) / 1e6
    figures: dict[str, float] = {"events": n, "megabytes": round(megabytes, 1)}
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        with SegmentWriter(directory, segment_bytes=args.segment_bytes) as writer:
            for i in range(0, n, args.batch):
                writer.append(events[i : i + args.batch])
        elapsed = time.perf_counter() - start
        figures["append_events_per_s"] = round(n / elapsed)
        print(f"append     {n / elapsed:>10,.0f} events/s  {megabytes / elapsed:6.1f} MB/s")

        start = time.perf_counter()
        with SegmentReader(directory) as reader:
            count = sum(1 for _ in reader)
        elapsed = time.perf_counter() - start
        assert count == n
        figures["file_read_events_per_s"] = round(n / elapsed)
        print(f"file read  {n / elapsed:>10,.0f} events/s")

        with serve_binlog(directory) as server, open_source(server.url) as stream:
            start = time.perf_counter()
            count = 0
            while count < n:
                count += len(stream.read(4096, timeout_s=1.0))
            elapsed = time.perf_counter() - start
        figures["grpc_read_events_per_s"] = round(n / elapsed)
        print(f"grpc read  {n / elapsed:>10,.0f} events/s")

        start = time.perf_counter()
        SegmentWriter(directory, segment_bytes=args.segment_bytes).close()
        elapsed = time.perf_counter() - start
        figures["reopen_s"] = round(elapsed, 3)
        print(f"reopen     {elapsed:.3f} s (scan of the newest segment)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
