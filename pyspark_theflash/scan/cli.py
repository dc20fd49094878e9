"""``theflash scan --store DIR db.table``: plan (and optionally read) one snapshot of a table
without Spark — the read path's learner read, lock resolution and partitions, printed; the
tool to reach for when a Spark read waits or fails.

    theflash scan --store /data/flash --upstream grpc://127.0.0.1:7000 bank.accounts
    theflash scan --store /data/flash bank.accounts --read --sum balance
    theflash scan --store /data/flash bank.accounts --snapshot-ts 470611740992208897 --json
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from pyspark_theflash.cli import CommandError
from pyspark_theflash.errors import TheFlashError
from pyspark_theflash.scan.errors import ScanError, as_flags, spelled

# the read options this command takes, as its flags (an error's remedy names these)
FLAGS = {"upstream": "--upstream", "snapshot_ts": "--snapshot-ts", "as_of": "--as-of", "snapshot": "--snapshot",
         "max_staleness": "--max-staleness", "isolation": "--isolation",
         "region_wait_timeout": "--region-wait-timeout", "partition_target_bytes": "--partition-target-bytes",
         "schema": "--schema"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("scan", help="plan (and read) a snapshot of a table, without Spark",
                              description=__doc__.splitlines()[0])
    p.add_argument("table", help="db.table")
    p.add_argument("--store", required=True, help="the store directory")
    p.add_argument("--upstream", help="the upstream: pd://HOST:PORT[,...] of a TiDB cluster or grpc://host:port of the mini cluster's private service (default: recorded in the store)")
    p.add_argument("--latch", help="grpc://host:port of the latch service (default: in-process)")
    p.add_argument("--snapshot-ts", help="read at this TSO (default: a fresh ts, or as --snapshot says)")
    p.add_argument("--as-of", help="read as of this time (ISO-8601, UTC unless an offset is given; default: a fresh ts, or as --snapshot says)")
    p.add_argument("--snapshot", choices=["fresh", "resolved"], default=None,
                   help="without --snapshot-ts/--as-of: fresh (default) asks the upstream for a ts; resolved reads at "
                        "the newest ts the store has resolved, without the upstream (a stopped writer's store)")
    p.add_argument("--max-staleness", help="bounded staleness (5s): a fresh ts if the store catches up within it, "
                                           "else the resolved ts if no older than it (default: none, a fresh ts the read waits for)")
    p.add_argument("--schema", choices=["as_of", "current"], default=None,
                   help="with --snapshot-ts/--as-of: as_of (default) reads the table that had the name at that ts, "
                        "with its schema then; current reads today's table of the name at that ts")
    p.add_argument("--isolation", choices=["SI", "RC"], default="SI",
                   help="SI resolves the locks of transactions that may have committed at or below ts; RC skips "
                        "lock checks (default %(default)s)")
    p.add_argument("--region-wait-timeout", default="30s",
                   help="how long the learner read waits for lagging regions: 500ms, 30s, 2m (default %(default)s)")
    p.add_argument("--partition-target-bytes", default=None,
                   help="group neighbouring small regions into one partition up to this size, e.g. 64MiB "
                        "(default: the read option's, 128MiB)")
    p.add_argument("--read", action="store_true", help="also read every partition and count the rows")
    p.add_argument("--sum", metavar="COLUMN", help="with --read: the sum of this column (default: none)")
    p.add_argument("--json", action="store_true", help="one JSON document instead of text")
    p.set_defaults(func=cmd_scan)


def cmd_scan(args: argparse.Namespace) -> int:
    import time

    from pyspark_theflash.scan import plan
    from pyspark_theflash.scan.read import read_partition
    from pyspark_theflash.codec.tso import describe_ts

    options = {"upstream": args.upstream, "latch": args.latch, "snapshot_ts": args.snapshot_ts,
               "as_of": args.as_of, "isolation": args.isolation, "region_wait_timeout": args.region_wait_timeout,
               "partition_target_bytes": args.partition_target_bytes, "snapshot": args.snapshot,
               "max_staleness": args.max_staleness, "schema": args.schema}
    try:
        given = {k: v for k, v in options.items() if v is not None}
        with spelled(as_flags(FLAGS)), plan(args.store, args.table, given) as p:
            out: dict[str, Any] = {"table": p.table, "ts": p.ts, "time": describe_ts(p.ts), "stats": vars(p.stats),
                                   "partitions": [{"index": part.index, "regions": list(part.region_ids),
                                                   "ranges": [[r.lo, r.hi] for r in part.ranges],
                                                   "parts": sum(len(r.parts) for r in part.ranges),
                                                   "bytes": part.size_bytes} for part in p.partitions]}
            if args.read:
                started = time.monotonic()
                rows, total = 0, 0
                columns = [args.sum] if args.sum else None
                for part in p.partitions:
                    if columns is not None:
                        part = type(part)(**{**vars(part), "columns": tuple(columns)})
                    for batch in read_partition(part):
                        rows += batch.num_rows
                        if args.sum:
                            import pyarrow.compute as pc

                            value = pc.sum(batch.column(args.sum)).as_py()
                            total += value or 0
                out["rows"] = rows
                if args.sum:
                    out["sum"] = str(total)
                out["read_s"] = round(time.monotonic() - started, 3)
    except ScanError as exc:  # its remedy in this command's flags
        raise CommandError(exc.phrased(as_flags(FLAGS))) from exc
    except TheFlashError as exc:
        raise CommandError(str(exc)) from exc
    except Exception as exc:
        from pyspark_theflash.store.errors import ManifestDamagedError, manifest_damage
        from pyspark_theflash.store.manifest import manifest_path

        if manifest_damage(exc):  # met while reading, after planning
            raise CommandError(str(ManifestDamagedError(str(manifest_path(args.store)), exc))) from exc
        raise
    if args.json:
        print(json.dumps(out, default=str))
        return 0
    s = out["stats"]
    print(f"{out['table']} at ts {out['ts']} ({out['time']}), planned in {s['plan_s'] * 1000:.0f} ms")
    print(f"  regions {s['regions']} (resolved-ts skips {s['regions_resolved_ts']}, read index {s['regions_read_index']}, "
          f"waited {s['learner_wait_s'] * 1000:.0f} ms); locks at or below ts {s['locks_seen']} "
          f"(committed for us {s['txns_committed_for_us']}, rolled back {s['txns_rolled_back']}, backoffs {s['lock_backoffs']})")
    print(f"  regions pruned by the filter {s['regions_pruned']}; partitions {s['partitions']}, parts {s['parts']}, "
          f"{s['bytes']} bytes")
    if s.get("table_partitions") or s.get("table_partitions_pruned"):
        print(f"  table partitions read {s['table_partitions']}; pruned by the filter {s['table_partitions_pruned']}")
    for part in out["partitions"]:
        print(f"    #{part['index']}: regions {part['regions']} handles {part['ranges']} parts {part['parts']} "
              f"~{part['bytes']} bytes")
    if "rows" in out:
        extra = f", sum({args.sum}) = {out['sum']}" if args.sum else ""
        print(f"  read {out['rows']} rows in {out['read_s']}s{extra}")
    return 0
