"""``theflash delta publish|versions|verify <store>``: the store's tables as Delta tables.

* ``publish [--ts T]``: one publication round: every live table whose files changed gets a
  Delta version holding the replica at T (default: the store's resolved ts, the newest ts at
  which every table is complete), in ``<store>/tables/<table id>``.
* ``versions [--ts T]``: which Delta version of each table holds the replica at T (default:
  each table's newest), with its path, ts and in-commit timestamp.
* ``verify``: check every Delta log file and deletion vector (``lake.verify``); exit 1 naming
  each damaged file.

``--to LOCATION`` (each subcommand): the tables are (to be) published under ``LOCATION/tables/<id>``
instead of the store's directory: another directory, a shared mount, or ``s3://bucket/prefix``,
the parts a version names copied there. Credentials come from the environment and the AWS
configuration files (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL``...), never
from the command line.

docs/delta.md says what a reader of these tables sees.
"""
from __future__ import annotations

import argparse
import json
import sys


from pyspark_theflash.cli import CommandError
from pyspark_theflash.errors import TheFlashError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    delta = subparsers.add_parser("delta", help="publish the store's tables as Delta Lake tables, and inspect them",
                                  description=__doc__.splitlines()[0])
    sub = delta.add_subparsers(dest="delta_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("publish", help="one publication round: every changed table gets a Delta version at one ts")
    p.add_argument("dir", help="the store directory")
    p.add_argument("--ts", type=int, metavar="T",
                   help="the TSO to publish (default: the store's resolved ts over every table)")
    p.add_argument("--retention", default="600s",
                   help="how long a version stays readable: its files are pinned and its log entry kept "
                        "(default %(default)s; holds the store's GC back as far)")
    p.add_argument("--checkpoint-interval", type=int, default=10,
                   help="a Delta checkpoint every this many versions of a table (default %(default)s)")
    _to(p)
    p.add_argument("--json", action="store_true", help="one JSON document instead of text")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("versions", help="which Delta version of each table holds the replica at a ts")
    p.add_argument("dir", help="the store directory")
    p.add_argument("--ts", type=int, metavar="T", help="a TSO (default: each table's newest version)")
    _to(p)
    p.add_argument("--json", action="store_true", help="one JSON document instead of text")
    p.set_defaults(func=cmd_versions)

    p = sub.add_parser("verify", help="check every Delta log file and deletion vector (exit 1 if anything is wrong)")
    p.add_argument("dir", help="the store directory")
    _to(p)
    p.set_defaults(func=cmd_verify)


def _to(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", metavar="LOCATION",
                   help="where the Delta tables are: a directory or s3://bucket/prefix (default: the store's "
                        "directory, or where its parts live: writer run --parts-to); credentials from the environment / AWS configuration, never this option")


def _location(args: argparse.Namespace) -> str:
    """The store's directory, or ``--to`` checked to open (one line naming it when it does not)."""
    from pyspark_theflash.lake.location import default_location, lake_dir

    store = _store(args.dir)
    if args.to is None:
        return default_location(store)
    try:
        lake_dir(args.to)  # (refuses credentials in the location, too)
    except TheFlashError as exc:
        raise CommandError(f"--to {exc}") from exc
    return str(args.to)


def _store(path: str) -> str:
    from pathlib import Path

    if not (Path(path) / "manifest.db").is_file():
        raise CommandError(f"{path} is not a store (no manifest.db): give the directory a writer job applies "
                           "(theflash writer run --store DIR)")
    return path


def cmd_publish(args: argparse.Namespace) -> int:
    from pyspark_theflash.lake.publish import Publisher

    from pyspark_theflash.writer.options import parse_duration

    try:
        retention = parse_duration(args.retention, allow_zero=True)
    except ValueError as exc:
        raise CommandError(f"--retention {args.retention}: {exc}") from exc
    where = _location(args)
    try:
        with Publisher(_store(args.dir), retention, args.checkpoint_interval, where) as publisher:
            done = publisher.publish(args.ts)
    except TheFlashError as exc:
        raise CommandError(str(exc)) from exc
    except OSError as exc:  # the location refused a read or a write (credentials, bucket, network)
        raise CommandError(f"{where}: {exc}; check the location and its credentials "
                           "(AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...)") from exc
    if args.json:
        print(json.dumps({"ts": done.ts, "seconds": round(done.seconds, 3),
                          "tables": [t.__dict__ for t in done.tables]}, indent=2))
        return 0
    for t in done.tables:
        what = f"version {t.version}" if t.version is not None else f"no version ({t.skipped})"
        print(f"{t.table}: {what}; {t.files} file(s), {t.converted} converted, {t.deleted_rows} row(s) "
              f"under deletion vectors — {t.root}")
    print(f"published ts {done.ts}: {len(done.committed)} of {len(done.tables)} table(s) in {done.seconds:.3f} s")
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    from pyspark_theflash.lake.versions import versions_at

    where = _location(args)
    try:
        found = versions_at(where, args.ts)
    except TheFlashError as exc:
        raise CommandError(str(exc)) from exc
    except OSError as exc:
        raise CommandError(f"{where}: {exc}; check the location and its credentials") from exc
    if args.json:
        print(json.dumps([v.__dict__ for v in found], indent=2))
        return 0
    for v in found:
        held = (f"version {v.version} (ts {v.ts}, inCommitTimestamp {v.in_commit_ms})" if v.version is not None
                else "no version (first published after that ts)")
        print(f"{v.table}: {held} — {v.root}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from pyspark_theflash.lake.verify import verify

    where = _location(args)
    try:
        report = verify(where)
    except OSError as exc:
        raise CommandError(f"{where}: {exc}; check the location and its credentials") from exc
    for _, text in report.problems:
        print(text, file=sys.stderr)
    verdict = "clean" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"delta {where}: {verdict} — {report.tables} table(s), {report.versions} version(s), "
          f"{report.vectors} deletion vector(s), {report.checksums} version checksum(s) checked",
          file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1
