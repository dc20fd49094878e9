"""The writer that tests/integration/test_store_crash.py kills: applies a deterministic event stream to a store.

    python tests/support/store_crash_child.py STORE_DIR --seed N [--batch B] [--flush-every F] [--compact-every C]
                                      [--engine native|clickhouse]

It opens the store, resumes from the persisted binlog position (``store.snapshot().position()``,
whose offset is the index of the next event of the stream), and applies the rest in batches of
``--batch`` events, each written with the position after it. It flushes every ``--flush-every``
batches — every other flush pipelined (``flush(wait=False)``: its fsyncs and manifest edit run
on a background thread while the next batches are written), the others synchronous — and
every ``--compact-every`` flushes (right after a pipelined one) compacts or, every other time,
runs GC at a safe point below every commit still to come. It prints one line per step, flushed
at once, so the parent can kill it at a chosen point:

    START <index>            resumed at this event index
    WRITE <end>              a batch up to event <end> was written (not yet durable)
    FLUSH-BEGIN <end>        about to flush
    FLUSH-PENDING <end>      a pipelined flush returned: its edit may still be pending
    FLUSH-END <end>          flushed: the store's position is now <end>
    MERGE-BEGIN / MERGE-END  merging each partition's deltas into one (``merge_deltas``)
    COMPACT-BEGIN / COMPACT-END
    GC-BEGIN <end> <safe point> / GC-END
    DONE <events>            every event applied and flushed
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mvcc_model import DB, StreamSpec, future_commit_floor, generate_stream  # noqa: E402

CRASH_SPEC = StreamSpec(steps=250, keys=60, max_regions=8)


def say(*words: object) -> None:
    print(*words, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--steps", type=int, default=CRASH_SPEC.steps)
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--flush-every", type=int, default=3)
    parser.add_argument("--compact-every", type=int, default=2)
    parser.add_argument("--engine", default="native", choices=("native", "clickhouse"))
    args = parser.parse_args(argv)

    from engine_stores import open_store
    from pyspark_theflash.store.compaction import merge_deltas
    from pyspark_theflash.binlog.position import Position

    spec = StreamSpec(**{**CRASH_SPEC.__dict__, "steps": args.steps})
    stream = generate_stream(args.seed, spec)
    commit_floor = future_commit_floor(stream.events)
    store = open_store(args.store, args.engine)
    store.put_schema(DB, stream.table)
    with store.snapshot() as view:
        position = view.position()  # (segment, offset): offset is the next event's index
    start = 0 if position is None else int(position[1])
    say("START", start)
    batches_done = flushes = 0
    end = start
    for begin in range(start, len(stream.events), args.batch):
        end = min(len(stream.events), begin + args.batch)
        store.write(stream.events[begin:end], Position(0, end))
        say("WRITE", end)
        batches_done += 1
        if batches_done % args.flush_every == 0:
            say("FLUSH-BEGIN", end)
            if flushes % 2 == 1:
                store.flush(wait=False)
                say("FLUSH-PENDING", end)
            else:
                store.flush()
                say("FLUSH-END", end)
                if flushes % 3 == 0:  # the writer's frequent delta merge (a no-op for the ClickHouse engine)
                    say("MERGE-BEGIN", end)
                    merge_deltas(getattr(store, "_store", store), 2)
                    say("MERGE-END", end)
            flushes += 1
            if flushes % args.compact_every == 0:
                if (flushes // args.compact_every) % 2 == 0 and commit_floor[end // 2] - 1 > stream.first_ts:
                    # a safe point upstream could give now (below every commit still to come),
                    # lagging well behind, as real safe points do
                    safe_point = min(commit_floor[end // 2] - 1, stream.last_ts)
                    say("GC-BEGIN", end, safe_point)
                    store.gc(safe_point)
                    say("GC-END", end, safe_point)
                else:
                    say("COMPACT-BEGIN", end)
                    store.compact(force=True)
                    say("COMPACT-END", end)
    store.flush()
    say("DONE", len(stream.events))
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
