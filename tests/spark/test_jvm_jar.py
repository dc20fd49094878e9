"""The connector jar as a JVM user meets it: built from the current sources, found with
``theflash jar``, named by build.sbt with the pinned wheel's versions, run by spark-submit as a
plain Java application and by spark-shell with a Scala script — no Python in Spark's read."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

from flash_rig import FlashRig, wait_for
from pyspark_theflash.service import serve
from pyspark_theflash.spark import jar as connector
from pyspark_theflash.upstream.workloads import BankWorkload

ROOT = Path(__file__).resolve().parents[2]
SPARK_HOME = Path(connector.spark_jars_dir()).parent
EXAMPLES = ROOT / "jvm-shim" / "examples"


def test_the_jar_is_built_from_the_current_sources() -> None:
    assert connector.JAR.exists(), "the connector jar is not built: run scripts/bootstrap.sh"
    assert connector.built_digest() == connector.sources_digest(), (
        f"{connector.JAR} is stale: jvm-shim/src changed since it was built; run theflash jar --build")
    with zipfile.ZipFile(connector.JAR) as z:
        names = z.namelist()
        assert z.read("META-INF/services/org.apache.spark.sql.sources.DataSourceRegister").decode().strip() == (
            "io.theflash.spark.TheFlashTableProvider")
    assert "io/theflash/spark/TheFlashCatalog.class" in names


def test_theflash_jar_prints_the_jar_path() -> None:
    out = subprocess.run([sys.executable, "-m", "pyspark_theflash.cli", "jar"], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == str(connector.JAR)


def test_build_sbt_names_the_shim_sources_and_the_wheels_versions() -> None:
    import pyspark

    sbt = (ROOT / "build.sbt").read_text()
    assert '"spark-sql" % "' + pyspark.__version__ + '"' in sbt
    arrow = next(p.name for p in connector.spark_jars_dir().glob("arrow-vector-*.jar"))
    assert '"arrow-vector" % "' + arrow.removeprefix("arrow-vector-").removesuffix(".jar") + '"' in sbt
    scala = next(p.name for p in connector.spark_jars_dir().glob("scala-library-*.jar"))
    assert 'scalaVersion := "' + scala.removeprefix("scala-library-").removesuffix(".jar") + '"' in sbt
    assert 'baseDirectory.value / "src" / "main" / "java"' in sbt and 'file("jvm-shim")' in sbt


# -- JVM applications: spark-submit and spark-shell -------------------------------------------
class Bank:
    def __init__(self, rig: FlashRig, bank: BankWorkload, server: str) -> None:
        self.rig, self.bank, self.server = rig, bank, server


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bank]:
    rig = FlashRig(tmp_path_factory.mktemp("jvm-apps"))
    # 15 transfers a second: unthrottled, they (and capture and the writer after them) took a core
    # beside the applications' JVMs (issue 54)
    workload = BankWorkload(rig.cluster, accounts=40, initial=1000, threads=1, seed=17, rate=15)
    try:
        workload.setup()
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated("bank.accounts")
        with serve(rig.store, port=0) as running:
            workload.start()  # transfers run while the applications read
            try:
                wait_for(lambda: workload.stats.committed > 10, 60, "the transfers to start")
                yield Bank(rig, workload, running.http_url)
            finally:
                workload.stop()
    finally:
        rig.close()


def jvm_env() -> dict[str, str]:
    env = dict(os.environ, SPARK_HOME=str(SPARK_HOME), SPARK_LOCAL_IP="127.0.0.1")
    env["PYSPARK_PYTHON"] = "/bin/false"  # no Python may run in this Spark
    return env


SPARK_CONF = ["--master", "local[2]", "--conf", "spark.ui.enabled=false", "--conf", "spark.driver.host=127.0.0.1",
              "--conf", "spark.driver.bindAddress=127.0.0.1"]


@pytest.mark.spark
def test_a_java_application_reads_a_table_through_spark_submit_with_the_jar(bank: Bank, tmp_path: Path) -> None:
    classes = tmp_path / "classes"
    subprocess.run(["javac", "--release", "17", "-d", str(classes), "-cp", str(connector.spark_jars_dir() / "*"),
                    str(EXAMPLES / "ReadTable.java")], check=True)
    app = tmp_path / "read-table.jar"
    subprocess.run(["jar", "cf", str(app), "-C", str(classes), "."], check=True)
    ts = int(bank.rig.cluster.get_ts())
    out = subprocess.run([str(SPARK_HOME / "bin" / "spark-submit"), *SPARK_CONF, "--jars", str(connector.JAR),
                          "--class", "ReadTable", str(app), bank.server, "bank.accounts", "balance", str(ts)],
                         capture_output=True, text=True, env=jvm_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"theflash bank.accounts rows=40 sum(balance)={bank.bank.total}" in out.stdout.splitlines(), out.stdout


@pytest.mark.spark
def test_spark_shell_reads_a_table_through_the_catalog_with_a_scala_script(bank: Bank) -> None:
    out = subprocess.run([str(SPARK_HOME / "bin" / "spark-shell"), *SPARK_CONF, "--jars", str(connector.JAR),
                          "--conf", "spark.sql.catalog.theflash=io.theflash.spark.TheFlashCatalog",
                          "--conf", f"spark.sql.catalog.theflash.server={bank.server}",
                          "-i", str(EXAMPLES / "read_catalog.scala")],
                         capture_output=True, text=True, env=jvm_env(), timeout=300, stdin=subprocess.DEVNULL)
    assert f"theflash bank.accounts rows=40 sum(balance)={bank.bank.total}" in out.stdout, (out.stdout[-2000:],
                                                                                             out.stderr[-3000:])
    assert re.search(r"\|\s*bank\|\s*accounts\|\s*false\|", out.stdout), out.stdout[-2000:]
