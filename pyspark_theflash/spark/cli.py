"""``theflash jar``: the Spark connector jar's path (``--jars $(theflash jar)``)."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("jar", help="print the path of the Spark connector jar (for --jars / spark.jars)",
                       description="Print the path of the Spark connector jar: "
                                   "spark-submit --jars $(theflash jar) ...")
    p.add_argument("--build", action="store_true", help="build it first when it is missing or stale (needs javac)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pyspark_theflash.cli import CommandError
    from pyspark_theflash.spark.jar import JarError, build, is_current, jar_path, SOURCES

    try:
        if args.build:
            path = build()
        else:
            path = jar_path()
            if SOURCES.exists() and not is_current():
                raise JarError(f"{path} is older than the sources in {SOURCES}: run theflash jar --build "
                               "(or scripts/bootstrap.sh)")
    except JarError as exc:
        raise CommandError(str(exc)) from None
    print(path)
    return 0
