"""The test machine's class archive for Spark's JVMs: a dynamic AppCDS archive of the classes a
Spark driver loads, which every Spark JVM of the suite maps instead of reading, parsing and
linking those classes from Spark's jars again (issue 54).

Measured on this 2-core machine, a ``spark-submit`` of a one-sum PySpark script (local[2], the
machine's C1-only options, CPU seconds of the whole process tree): 11.6-13.4 without it, 7.9-8.6
with it; wall 10-11 s -> 6.5-7 s. The suite starts about 40 Spark JVMs and the shared sessions'.

The JDK 17 archive has two conditions, and ``machine_spark_conf`` meets both:
- The class path at run time starts with the one at dump time, entry by entry, each jar of the
  same size and mtime. Spark's class path is its conf directory and then its jars, and the conf
  directory differs from one run (and one README block) to the next. So the machine's conf puts
  Spark's jars first (``spark.driver.extraClassPath``, ``spark.executor.extraClassPath``,
  ``SPARK_DAEMON_CLASSPATH`` = ``$SPARK_HOME/jars/*``, the very entry Spark's launcher adds after
  the conf directory, which it then drops as a repeat). The JDK checks the entries up to the last
  one it archived a class from, so the conf directory after them is not compared.
- A directory among those entries must be empty. The conf directory (``spark-defaults.conf``,
  ``spark-env.sh``) is now after them.
Nothing is looked up on the class path in the conf directory (Spark reads its two files by
path), so the order changes no class and no resource a JVM finds.

Where it does not apply (another JDK, a jar changed since the dump, a JVM a test starts with a
class path of its own), the JDK maps nothing and loads every class as before; the machine's conf
turns the JDK's CDS log off, so no JVM prints a warning into output a test compares.
``tests/spark/test_spark_read.py`` checks that the suite's Spark JVM maps it.

``python tests/support/spark_class_archive.py install`` (run by ``scripts/bootstrap.sh``) makes it
from one ``spark-submit`` of this file's ``workload``: what the suite's sessions do, in small (SQL
and DataFrames with generated and interpreted code, Parquet, Arrow both ways, Python UDFs, a
Python data source, a stream); about 40 s. It is kept in the machine's cache
(``$THEFLASH_CACHE/spark-classes``, default ``~/.cache/theflash``) under a digest of what it was
made from (the JDK's build, Spark's jars by path and size, the JVM options, the code that dumps it), and
``.venv/share/theflash/spark-classes.jsa`` links to it: a later set-up of a checkout at the same
path (a clean clone of CI's) finds it made. For that the set-up gives Spark's jars one fixed
mtime (``JARS_MTIME``): pip gives each installed file the time of the install, and the JDK takes
a jar of another mtime for another jar. The cache keeps the three archives used last (made,
found by a set-up, or mapped by a test run's Spark conf).
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()
ARCHIVE = Path(sys.prefix) / "share" / "theflash" / "spark-classes.jsa"   # a link into the cache
KEEP = 3                       # archives the cache keeps (one per checkout path and Spark)
JARS_MTIME = 1_767_225_600     # 2026-01-01 UTC: Spark's jars' mtime after the set-up (see above)


def cache_dir() -> Path:
    return Path(os.environ.get("THEFLASH_CACHE") or Path.home() / ".cache" / "theflash") / "spark-classes"


def spark_home() -> Path:
    """Spark's home as its launch scripts find it for a pip-installed PySpark (the package's real
    path); the class path entries the archive names start with it. Found without importing
    PySpark (``pyspark_theflash.spark.jar.spark_jars_dir`` imports it): every pytest process
    writes the machine's conf at start, unit tier included."""
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pyspark is not installed in this interpreter: run scripts/bootstrap.sh")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def spark_jars_entry() -> str:
    """The class path entry Spark's launcher gives its jars, written the same way so that it
    drops its own as a repeat."""
    return str(spark_home() / "jars" / "*")


def installed() -> Path | None:
    """The archive the set-up command linked, if it is there; whether it still fits this JDK and
    these jars the JDK checks itself each time it maps it. Marked used (its mtime, by which the
    cache keeps the last ``KEEP``): a checkout whose tests map it keeps it while the set-ups of
    other checkouts (CI's clean clones, each at a path of its own) add theirs."""
    if not ARCHIVE.is_file():
        return None
    archive = ARCHIVE.resolve()
    # A cache this user may not write to is used as it is: its archives' age is another's to keep.
    with contextlib.suppress(OSError):
        os.utime(archive)
    return archive


def java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    return str(Path(java_home) / "bin" / "java") if java_home else (shutil.which("java") or "java")


def digest(jvm_options: tuple[str, ...]) -> str:
    """What the archive is made from: the JDK's build, each of Spark's jars (path and size; their
    mtime is ``JARS_MTIME``), the JVM options it is dumped with, and ``dump`` and ``workload``'s
    code (not this whole file: a change elsewhere in it is no reason to make the archive again)."""
    h = hashlib.sha256()
    h.update(subprocess.run([java(), "-version"], capture_output=True, text=True, check=True).stderr.encode())
    for jar in sorted((spark_home() / "jars").glob("*.jar")):
        h.update(f"{jar}\0{jar.stat().st_size}\n".encode())
    h.update(" ".join(jvm_options).encode())
    for made_by in (dump, workload):
        h.update(inspect.getsource(made_by).encode())
    return h.hexdigest()[:32]


def install() -> Path:
    """Links ``.venv/share/theflash/spark-classes.jsa`` to the cache's archive for this JDK, these
    jars and this path, dumping it first if the cache has none."""
    from machine_spark_conf import JVM_OPTIONS

    for jar in (spark_home() / "jars").glob("*.jar"):
        if jar.stat().st_mtime != JARS_MTIME:
            os.utime(jar, (JARS_MTIME, JARS_MTIME))
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    cached = cache / f"{digest(JVM_OPTIONS)}.jsa"
    if cached.is_file():
        os.utime(cached)             # used last: kept
    else:
        dump(cached, JVM_OPTIONS)
    for old in sorted(cache.glob("*.jsa"), key=lambda p: p.stat().st_mtime, reverse=True)[KEEP:]:
        old.unlink(missing_ok=True)
    ARCHIVE.parent.mkdir(parents=True, exist_ok=True)
    link = ARCHIVE.with_name(ARCHIVE.name + ".new")
    link.unlink(missing_ok=True)
    link.symlink_to(cached)
    os.replace(link, ARCHIVE)
    return ARCHIVE


def dump(target: Path, jvm_options: tuple[str, ...]) -> None:
    """One ``spark-submit`` of ``workload`` whose JVM writes the classes it loaded to ``target``
    as it exits (the JDK's ``-XX:ArchiveClassesAtExit``)."""
    with tempfile.TemporaryDirectory(prefix="theflash-spark-classes-") as work:
        dumped = Path(work) / "spark-classes.jsa"
        conf = Path(work) / "conf"       # no machine conf of this machine's: the options are these
        conf.mkdir()
        env = {**os.environ, "SPARK_CONF_DIR": str(conf), "SPARK_HOME": str(spark_home()),
               "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
               "SPARK_LOCAL_IP": "127.0.0.1"}
        options = " ".join((*jvm_options, f"-XX:ArchiveClassesAtExit={dumped}", "-Xlog:cds=off,cds+dynamic=off"))
        command = [str(spark_home() / "bin" / "spark-submit"), "--master", "local[2]",
                   "--conf", f"spark.driver.defaultJavaOptions={options}",
                   "--conf", f"spark.driver.extraClassPath={spark_jars_entry()}",
                   "--conf", "spark.ui.enabled=false",
                   str(HERE), "workload", str(Path(work) / "data")]
        done = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True)
        if done.returncode != 0 or not dumped.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise SystemExit(f"the Spark class archive could not be made (spark-submit exited {done.returncode}: "
                             f"{tail[0]}); the tests run without it, slower")
        partial = target.with_name(target.name + f".{os.getpid()}")
        shutil.move(str(dumped), partial)
        os.replace(partial, target)      # one rename: a JVM never maps half an archive


def workload(data: Path) -> None:
    """Runs in the dumping JVM's driver: what the suite's Spark sessions do, each in small, so
    that the classes they load are in the archive."""
    from pyspark.sql import SparkSession, functions as F
    from pyspark.sql.datasource import DataSource, DataSourceReader
    from pyspark.sql.types import LongType, StructField, StructType

    spark = SparkSession.builder.appName("theflash-class-archive").getOrCreate()
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")

    class Numbers(DataSource):
        @classmethod
        def name(cls) -> str:
            return "class_archive_numbers"

        def schema(self) -> str:
            return "id long, v long"

        def reader(self, schema: StructType) -> DataSourceReader:
            return NumbersReader()

    class NumbersReader(DataSourceReader):
        def read(self, partition):  # type: ignore[no-untyped-def]
            for i in range(100):
                yield (i, i * i)

    spark.dataSource.register(Numbers)
    for codegen in ("true", "false"):   # the shared sessions run plans interpreted, the rest generated
        spark.conf.set("spark.sql.codegen.wholeStage", codegen)
        spark.conf.set("spark.sql.codegen.factoryMode", "FALLBACK" if codegen == "true" else "NO_CODEGEN")
        left = spark.range(1000).select(F.col("id"), (F.col("id") % 7).alias("k"), F.lit("x").alias("s"))
        right = spark.read.format("class_archive_numbers").load()
        joined = left.join(right, "id").groupBy("k").agg(F.sum("v"), F.count("*"), F.max("s"))
        joined.orderBy("k").collect()
        left.createOrReplaceTempView("t")
        spark.sql("SELECT k, sum(id) OVER (PARTITION BY k ORDER BY id) AS w, CAST(id AS DECIMAL(20, 2)) d, "
                  "date_add(DATE'2024-01-01', CAST(id AS INT)) dt, "
                  "CAST(id AS TIMESTAMP) ts FROM t WHERE id BETWEEN 3 AND 900 AND s IN ('x', 'y')").collect()
        spark.sql("SELECT k, count(DISTINCT id), collect_list(s)[0] FROM t GROUP BY k HAVING count(*) > 1").collect()
        target = str(data / f"parquet-{codegen}")
        left.write.mode("overwrite").partitionBy("k").parquet(target)
        spark.read.parquet(target).filter("k = 3").toPandas()

    frame = spark.createDataFrame(spark.range(50).toPandas())        # Arrow both ways
    add_one = F.udf(lambda x: x + 1, LongType())
    frame.select(add_one("id")).collect()
    frame.select(F.pandas_udf(lambda s: s * 2, LongType())("id")).collect()   # type: ignore[call-overload]
    frame.rdd.map(lambda row: row.id).sum()
    schema = StructType([StructField("id", LongType()), StructField("v", LongType())])
    stream_in = data / "stream-in"
    stream_in.mkdir(parents=True)
    spark.range(10).selectExpr("id", "id AS v").write.mode("overwrite").json(str(stream_in / "batch"))
    query = (spark.readStream.schema(schema).json(str(stream_in / "batch")).writeStream
             .foreachBatch(lambda batch, _: batch.count()).trigger(availableNow=True)
             .option("checkpointLocation", str(data / "checkpoint")).start())
    query.awaitTermination()
    spark.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["install"]:
        print(install())
    elif sys.argv[1:2] == ["workload"] and len(sys.argv) == 3:
        workload(Path(sys.argv[2]))
    else:
        raise SystemExit("usage: python tests/support/spark_class_archive.py install")
