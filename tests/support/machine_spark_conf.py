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
minute (issue 54; the figures are in ``JVM_OPTIONS``'s comment).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

# C1 only (no C2 compiles) and the serial collector. A spark-submit of a trivial PySpark script
# (local[2], one sum), CPU seconds of the whole process tree, load 5-10: 14.2-15.8 by default,
# 9.3-9.7 with C1 only, 8.2-8.4 with both; the serial collector alone 14.0-14.7. spark-shell
# running a one-line Scala script: 28.4 -> 13.5 (wall 45 -> 22 s). test_jvm_jar, test_jvm_session
# and test_jvm_quickstart together (11 tests, 10 JVMs, load 8-12): 216 -> 176 CPU s, 243 -> 179 s.
# Tried and left out: -XX:CICompilerCount=1 (8.4, no change), spark.ui.enabled=false (8.3-8.4, no
# change), the launcher JVM's options (SPARK_LAUNCHER_OPTS: 8.4-8.6, no change), AppCDS (the JDK
# 17 archive refuses a class path with a non-empty directory, and Spark's starts with this one).
# And no verification of the bytecode the class path loads (a diagnostic flag in JDK 17): the same
# spark-submit, three runs each on a quiet machine, 8.0-8.4 -> 7.4-7.5 CPU s, wall -0.6 s. The
# class path is the machine's own install (Spark's wheel, the pinned Maven jars, the connector
# built here), and verification changes no value a class computes.
JVM_OPTIONS: tuple[str, ...] = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-XX:+UnlockDiagnosticVMOptions",
                                "-XX:-BytecodeVerificationRemote")

SPARK_DEFAULTS: dict[str, str] = {
    "spark.driver.defaultJavaOptions": " ".join(JVM_OPTIONS),
    "spark.executor.defaultJavaOptions": " ".join(JVM_OPTIONS),
}

# spark-env.sh: spark-class sources it before it starts anything; the standalone master's and
# worker's JVMs (the cluster test)
SPARK_ENV: dict[str, str] = {
    "SPARK_DAEMON_JAVA_OPTS": " ".join(JVM_OPTIONS),
}


def write_spark_conf(directory: Path, defaults: Mapping[str, str] | None = None) -> Path:
    """Writes the machine's ``spark-defaults.conf`` (with ``defaults`` over it) and
    ``spark-env.sh`` into ``directory``; returns it, the value for ``SPARK_CONF_DIR``."""
    directory.mkdir(parents=True, exist_ok=True)
    settings = {**SPARK_DEFAULTS, **(defaults or {})}
    (directory / "spark-defaults.conf").write_text("".join(f"{k} {v}\n" for k, v in settings.items() if v))
    (directory / "spark-env.sh").write_text("".join(f'{k}="{v}"\n' for k, v in SPARK_ENV.items() if v))
    return directory
