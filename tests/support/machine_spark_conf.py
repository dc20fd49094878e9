"""The test machine's Spark configuration: a ``SPARK_CONF_DIR`` with the ``spark-defaults.conf``
and ``spark-env.sh`` an administrator keeps for a machine's Spark users. Every Spark the suite
starts reads it (tests/conftest.py sets ``SPARK_CONF_DIR`` for the run; the README's blocks get
their own copy): the suite's sessions, the pyspark, spark-submit, spark-shell and spark-sql
processes tests and README blocks start, the cluster test's master, worker and executors.

What it sets is how this machine starts JVMs, none of the product's behaviour: the README's
commands and ``theflash_session()`` run as written, and a setting of a test's own (``--conf``,
``--driver-java-options``, ``spark.driver.extraJavaOptions``) still applies, after these
(``spark.*.defaultJavaOptions`` are prepended to ``spark.*.extraJavaOptions`` for this purpose).

The suite's JVMs are short-lived (about 40 start, each runs a few small jobs and exits) on a
2-core machine running two pytest workers: JIT compiling is most of a JVM's CPU in its first
minute (issue 54; the figures are in ``JVM_OPTIONS``'s comment), and loading Spark's classes
much of the rest: each maps the class archive the set-up command made from this machine's Spark
(tests/support/spark_class_archive.py), where it is there.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import spark_class_archive

# C1 only (no C2 compiles) and the serial collector. A spark-submit of a trivial PySpark script
# (local[2], one sum), CPU seconds of the whole process tree, load 5-10: 14.2-15.8 by default,
# 9.3-9.7 with C1 only, 8.2-8.4 with both; the serial collector alone 14.0-14.7. spark-shell
# running a one-line Scala script: 28.4 -> 13.5 (wall 45 -> 22 s). test_jvm_jar, test_jvm_session
# and test_jvm_quickstart together (11 tests, 10 JVMs, load 8-12): 216 -> 176 CPU s, 243 -> 179 s.
# Tried and left out: -XX:CICompilerCount=1 (8.4, no change), spark.ui.enabled=false (8.3-8.4, no
# change), the launcher JVM's options (SPARK_LAUNCHER_OPTS: 8.4-8.6, no change).
# And no verification of the bytecode the class path loads (a diagnostic flag in JDK 17): the same
# spark-submit, three runs each on a quiet machine, 8.0-8.4 -> 7.4-7.5 CPU s, wall -0.6 s. The
# class path is the machine's own install (Spark's wheel, the pinned Maven jars, the connector
# built here), and verification changes no value a class computes.
JVM_OPTIONS: tuple[str, ...] = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-XX:+UnlockDiagnosticVMOptions",
                                "-XX:-BytecodeVerificationRemote")


def machine_settings(archive: Path | None) -> tuple[dict[str, str], dict[str, str]]:
    """The machine's ``spark-defaults.conf`` and ``spark-env.sh`` settings: its JVM options for
    the drivers, the executors and the standalone master's and worker's JVMs (the cluster test),
    and, with the class archive the set-up command made (tests/support/spark_class_archive.py),
    that archive mapped by each of them, Spark's jars first on their class path so that it fits."""
    options = JVM_OPTIONS
    defaults: dict[str, str] = {}
    env: dict[str, str] = {}
    if archive is not None:
        jars = spark_class_archive.spark_jars_entry()
        options = (*options, f"-XX:SharedArchiveFile={archive}", "-Xlog:cds=off,cds+dynamic=off")
        defaults = {"spark.driver.extraClassPath": jars, "spark.executor.extraClassPath": jars}
        env = {"SPARK_DAEMON_CLASSPATH": jars}
    defaults = {"spark.driver.defaultJavaOptions": " ".join(options),
                "spark.executor.defaultJavaOptions": " ".join(options), **defaults}
    return defaults, {"SPARK_DAEMON_JAVA_OPTS": " ".join(options), **env}


def write_spark_conf(directory: Path, defaults: Mapping[str, str] | None = None) -> Path:
    """Writes the machine's ``spark-defaults.conf`` (with ``defaults`` over it) and
    ``spark-env.sh`` (spark-class sources it before it starts anything) into ``directory``;
    returns it, the value for ``SPARK_CONF_DIR``."""
    directory.mkdir(parents=True, exist_ok=True)
    machine_defaults, machine_env = machine_settings(spark_class_archive.installed())
    settings = {**machine_defaults, **(defaults or {})}
    (directory / "spark-defaults.conf").write_text("".join(f"{k} {v}\n" for k, v in settings.items() if v))
    (directory / "spark-env.sh").write_text("".join(f'{k}="{v}"\n' for k, v in machine_env.items() if v))
    return directory
