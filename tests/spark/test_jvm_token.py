"""The JVM connector's bearer token against `theflash serve --token-file` in its own process:
option ``token`` beats option ``token_file`` (its first line), which beats the THEFLASH_TOKEN
environment variable; the right token reads (the driver's planning calls and the executors'
stream reads), a wrong or missing one fails with the service's 401 and where the token came
from; and the token is never in an error, in explain() or in Spark's log."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from flash_rig import FlashRig
from jvm_spark import JvmSpark, RemoteError
from pyspark_theflash.spark import jar as connector
from pyspark_theflash.upstream.workloads import BankWorkload

pytestmark = pytest.mark.spark

TABLE = "bank.accounts"
TOKEN = "jvm-t0ken-7f3a9c"
WRONG = "not-the-t0ken-91c2"
NEEDS = ("this service needs a bearer token: send the header 'Authorization: "
         "Bearer <token>' (the token is in the server's --token-file); this read sent no token: give it with "
         "option token or token_file, or set THEFLASH_TOKEN on the driver and the executors (theflash service ")
IS_WRONG = ("the bearer token is wrong (compare it with the server's --token-file); "
            "this read sent the bearer token from ")


class Secured:
    def __init__(self, root: Path, url: str, total: int, log: Path) -> None:
        self.url, self.total, self.log = url, total, log
        self.token_file = root / "token"
        self.token_file.write_text(f"{TOKEN}\n# the first line is the token\n")
        self.wrong_file = root / "wrong-token"
        self.wrong_file.write_text(f"{WRONG}\n")
        self.empty_file = root / "empty-token"
        self.empty_file.write_text("\n\n")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    root = tmp_path_factory.mktemp("jvm-token")
    rig = FlashRig(root)
    bank = BankWorkload(rig.cluster, accounts=12, initial=100, threads=1, seed=23)
    server = None
    try:
        bank.setup()
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated(TABLE)
        (root / "server-token").write_text(TOKEN + "\n")
        log = root / "serve.log"
        with log.open("w") as err:
            server = subprocess.Popen([sys.executable, "-m", "pyspark_theflash", "serve", "--store", rig.store,
                                       "--port", "0", "--token-file", str(root / "server-token")],
                                      stdout=subprocess.PIPE, stderr=err, text=True)
        line = server.stdout.readline()  # type: ignore[union-attr]
        found = re.search(r"http (http://127\.0\.0\.1:\d+)", line)
        assert found, f"theflash serve did not start: {line!r} {log.read_text()[-2000:]}"
        yield Secured(root, found.group(1), bank.total, log)
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        rig.close()


# -- functions run in the Spark worker with the jar (tests/support/jvm_spark.py) ---------------------
def jvm_sum(spark: Any, options: dict[str, str]) -> int:
    return spark.read.format("theflash").options(**options).load(TABLE).agg({"balance": "sum"}).collect()[0][0]


def jvm_catalog_sum(spark: Any, server: str, token_file: str) -> int:
    # a catalog registered at run time, with its own token_file
    spark.conf.set("spark.sql.catalog.secured", "io.theflash.spark.TheFlashCatalog")
    spark.conf.set("spark.sql.catalog.secured.server", server)
    spark.conf.set("spark.sql.catalog.secured.token_file", token_file)
    return spark.sql(f"SELECT sum(balance) FROM secured.{TABLE}").collect()[0][0]


def failure(jvm: JvmSpark, options: dict[str, str]) -> str:
    with pytest.raises(RemoteError) as caught:
        jvm.call(jvm_sum, options)
    assert TOKEN not in caught.value.message and WRONG not in caught.value.message
    return caught.value.message


def test_the_token_or_token_file_option_reads_from_a_service_that_needs_a_token(
        jvm_spark: JvmSpark, secured: Secured) -> None:
    url = secured.url
    assert jvm_spark.call(jvm_sum, {"server": url, "token": TOKEN}) == secured.total
    assert jvm_spark.call(jvm_sum, {"server": url, "token_file": str(secured.token_file)}) == secured.total
    # token before token_file
    assert jvm_spark.call(jvm_sum, {"server": url, "token": TOKEN, "token_file": str(secured.wrong_file)}) == (
        secured.total)
    assert jvm_spark.call(jvm_catalog_sum, url, str(secured.token_file)) == secured.total


def test_a_missing_or_wrong_token_fails_with_the_services_401_and_where_the_token_came_from(
        jvm_spark: JvmSpark, secured: Secured) -> None:
    url = secured.url
    assert NEEDS in failure(jvm_spark, {"server": url})
    assert IS_WRONG + "option token" in failure(jvm_spark, {"server": url, "token": WRONG})
    assert IS_WRONG + f"option token_file {secured.wrong_file}" in failure(
        jvm_spark, {"server": url, "token": " ", "token_file": str(secured.wrong_file)})


def test_a_token_file_that_is_missing_or_empty_and_a_token_a_header_cannot_carry_are_refused_by_name(
        jvm_spark: JvmSpark, secured: Secured) -> None:
    url = secured.url
    missing = secured.token_file.with_name("no-such-token")
    assert f"cannot read the token file {missing} (option token_file): java.nio.file.NoSuchFileException" in failure(
        jvm_spark, {"server": url, "token_file": str(missing)})
    assert (f"the token file {secured.empty_file} (option token_file) is empty: put the bearer token on its "
            "first line") in failure(jvm_spark, {"server": url, "token_file": str(secured.empty_file)})
    message = failure(jvm_spark, {"server": url, "token": f"{TOKEN} {WRONG}"})
    assert ("the bearer token from option token has a character at position 17 that an HTTP header cannot carry "
            "(a token is printable ASCII without spaces)") in message


@pytest.fixture(scope="module")
def jvm_with_environment_token() -> Iterator[JvmSpark]:
    """A second Spark (its own JVM) whose environment has THEFLASH_TOKEN, as a cluster's
    driver and executors would."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("THEFLASH_TOKEN", TOKEN)
        session = JvmSpark(str(connector.jar_path()))
        session.call(jvm_started)  # the worker and its JVM start now, with this environment
    yield session
    session.close()


def jvm_started(spark: Any) -> str:
    return spark.version


def test_the_environment_token_is_used_when_neither_option_gives_one(
        jvm_with_environment_token: JvmSpark, secured: Secured) -> None:
    jvm, url = jvm_with_environment_token, secured.url
    assert jvm.call(jvm_sum, {"server": url}) == secured.total
    assert IS_WRONG + "option token" in failure(jvm, {"server": url, "token": WRONG})
    assert IS_WRONG + f"option token_file {secured.wrong_file}" in failure(
        jvm, {"server": url, "token_file": str(secured.wrong_file)})


# Spark's log at INFO on the console (spark-shell's default config shows WARN and above only)
LOG4J2 = """
rootLogger.level = info
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.repl.name = org.apache.spark.repl.Main
logger.repl.level = info
"""

SCRIPT = """
object TokenCheck {
  def run(): Unit = {
    spark.sparkContext.setLogLevel("INFO")  // the shell's default is WARN
    val server = sys.env("CHECK_SERVER")
    val token = sys.env("CHECK_TOKEN")
    val df = spark.read.format("theflash").option("server", server).option("token", token).load("bank.accounts")
      .filter("balance >= 0").selectExpr("sum(balance)")
    println("EXPLAIN-EXTENDED")
    df.explain("extended")
    println("EXPLAIN-FORMATTED")
    df.explain("formatted")
    println(s"theflash sum(balance)=${df.first().get(0)}")
    try {
      spark.read.format("theflash").option("server", server).option("token", sys.env("CHECK_WRONG"))
        .load("bank.accounts").collect()
      println("the wrong token read")
    } catch {
      case e: Exception => println("theflash refused: " + e)
    }
  }
}
TokenCheck.run()
sys.exit(0)
"""


def test_the_token_is_not_in_explain_output_errors_or_sparks_log(secured: Secured, tmp_path: Path) -> None:
    script = tmp_path / "token_check.scala"
    script.write_text(SCRIPT)
    log_config = tmp_path / "log4j2.properties"
    log_config.write_text(LOG4J2)
    spark_home = connector.spark_jars_dir().parent
    env = dict(os.environ, SPARK_HOME=str(spark_home), SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON="/bin/false",
               CHECK_SERVER=secured.url, CHECK_TOKEN=TOKEN, CHECK_WRONG=WRONG)
    env.pop("THEFLASH_TOKEN", None)
    out = subprocess.run([str(spark_home / "bin" / "spark-shell"), "--master", "local[2]",
                          "--conf", "spark.ui.enabled=false", "--conf", "spark.driver.host=127.0.0.1",
                          "--conf", "spark.driver.bindAddress=127.0.0.1",
                          "--driver-java-options", f"-Dlog4j2.configurationFile={log_config}",
                          "--jars", str(connector.JAR), "-i", str(script)],
                         capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    output = out.stdout + out.stderr
    assert f"theflash sum(balance)={secured.total}" in out.stdout, output[-3000:]
    assert "TheFlashScan bank.accounts PushedFilters: [balance >= 0]" in out.stdout, out.stdout[-3000:]
    assert "theflash refused: io.theflash.spark.ServiceException: " + IS_WRONG + (
        "option token") in out.stdout, out.stdout[-3000:]
    assert re.search(r" INFO DAGScheduler: Job \d+ finished", out.stderr), out.stderr[-3000:]  # Spark's log, at INFO
    assert TOKEN not in output and WRONG not in output
    assert TOKEN not in secured.log.read_text() and WRONG not in secured.log.read_text()
