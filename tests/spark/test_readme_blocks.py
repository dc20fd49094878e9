"""Every fenced code block of README.md runs as it is written, on a checkout after the set-up
command, or says right before its fence why it does not: ``<!-- not run: reason -->``.

How a block runs, as a user at one shell runs it:

* ``bash``: its commands (continuation lines joined, comments dropped), one after the other,
  with bash, from the checkout's root, in an environment without an activated venv (no
  ``VIRTUAL_ENV``, no ``.venv/bin`` on the PATH, no ``PYSPARK_PYTHON``, no ``SPARK_HOME``).
  A command ending in ``&`` keeps running in the background until the test ends. A program
  that serves until it is stopped (the mini cluster, capture, a writer, ``theflash serve``)
  is waited for until it is up (``READY``); started in the foreground, it is then stopped
  with Ctrl-C (SIGINT to its process group) and must stop cleanly. Any other command must
  exit 0. ``spark-sql`` reads the ``sql`` block that follows its block at its prompt, and
  every statement must answer.
* ``python``: the block saved as a file and run with ``.venv/bin/python``: exit 0.
* Wherever a block sums ``balance``, its output shows the bank's exact total.
* A block for an S3 endpoint, marked ``<!-- with S3: bucket NAME ... -->``, runs as written
  against the suite's S3 server (SeaweedFS on loopback): the bucket created, the server's
  endpoint and keys in the block's environment, where the README tells a user to put theirs.

The blocks that read replicated data need the pipeline of "Running it piece by piece": the
commands of that block that keep running (the mini cluster, capture, the writer started
with ``--daemon``, ``theflash serve``) start it, as written, once for this module; the slow
test runs that block whole (the foreground writer, the writer as a Spark job, status,
verify, dump). The only changes to what is written are where things live: ``/tmp`` is this
test's directory (also ``TMPDIR``), the checkout's root is a directory of links to it (so
that spark-sql's ``metastore_db`` lands there), and the README's fixed ports are free ones,
as other runs share this machine. The blocks' Spark reads the test machine's configuration, as
a user's ``spark-defaults.conf`` and ``spark-env.sh`` hold it (``SPARK_CONF_DIR``, read by every
Spark the blocks start): how its JVMs start (tests/support/machine_spark_conf.py, as for the
rest of the suite), and one setting of this module's: delta-spark reconstructs a table's
snapshot in 2 tasks (``SPARK_DEFAULTS``), not its default 50, which on local[2] beside the
running pipeline took most of the delta-spark block's time.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from conftest import ROOT
from loopback_ports import free_port_runs
from machine_spark_conf import write_spark_conf
from polling import wait_for

README = ROOT / "README.md"
VENV_BIN = ROOT / ".venv" / "bin"

# Every port the README's commands name; a pair (p, p + 1) is a service's Flight port and its
# HTTP port (or the mini cluster's service and its binlog port) and stays neighbours.
README_PORTS = (2379, 8815, 8816, 8825, 8826, 9464, 10080, 20170, 20171)
COMMAND_TIMEOUT_S = 300
READY_TIMEOUT_S = 180
# What "Running it piece by piece" replicates and later blocks read.
REPLICATED_TABLES = ["bank.accounts", "shop.orders"]
# This module's spark-defaults.conf settings, over the machine's (machine_spark_conf): the README's tables are
# small, and delta-spark's default of 50 snapshot partitions is 50 tasks per stage of each log replay.
SPARK_DEFAULTS = {"spark.databricks.delta.snapshotPartitions": "2"}


# --- the page -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    line: int  # the opening fence's line, 1-based
    lang: str
    text: str
    section: str
    not_run: str | None  # the reason of a <!-- not run: ... --> right before the fence
    s3_bucket: str | None = None  # <!-- with S3: bucket NAME ... -->: run against an S3 server with that bucket

    @property
    def name(self) -> str:
        return f"README.md:{self.line} ({self.section})"


NOT_RUN = re.compile(r"<!--\s*not run:\s*(.*?)\s*-->")
# A block for an S3 endpoint: run with the suite's S3 server (SeaweedFS on loopback, tests/support/s3_server.py),
# its endpoint and keys in the block's environment, the bucket the marker names created first.
WITH_S3 = re.compile(r"<!--\s*with S3:\s*bucket\s+([\w.-]+)\b.*?-->")


def readme_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    section, i = "top", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        if line.startswith("```"):
            start, lang = i, line[3:].strip()
            i += 1
            body: list[str] = []
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            marked = NOT_RUN.fullmatch(before.strip())
            s3 = WITH_S3.fullmatch(before.strip())
            blocks.append(Block(start + 1, lang, "\n".join(body) + "\n", section,
                                marked.group(1) if marked else None, s3.group(1) if s3 else None))
        i += 1
    return blocks


def commands(text: str) -> list[str]:
    """A shell block's commands: continuation lines joined, comment lines and comments after
    two spaces dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [line.split("  #")[0].strip() for line in joined.splitlines() if not line.lstrip().startswith("#")]
    return [line for line in lines if line]


def sql_statements(text: str) -> list[str]:
    code = re.sub(r"--[^\n]*", "", text)
    return [s.strip() for s in code.split(";") if s.strip()]


BLOCKS = readme_blocks(README.read_text())


def sql_input_of(block: Block) -> str | None:
    """The sql block typed at the prompt of `block`'s spark-sql, if `block` starts one."""
    following = BLOCKS[BLOCKS.index(block) + 1:]
    if not any("spark-sql" in c for c in commands(block.text)) or not following or following[0].lang != "sql":
        return None
    return following[0].text


PIPELINE = next(b for b in BLOCKS if b.lang == "bash" and "theflash upstream" in b.text)
RUNNABLE = [b for b in BLOCKS if b.not_run is None and b.lang in ("bash", "python")]


def bank_total() -> int:
    """The bank's total under the README's upstream command: its --accounts default (the
    command gives none) times the workload's initial balance."""
    from pyspark_theflash.cli import build_parser
    from pyspark_theflash.upstream.workloads import BankWorkload

    accounts = build_parser("upstream").parse_args(["upstream", "--data", "unused"]).accounts
    initial = inspect.signature(BankWorkload.__init__).parameters["initial"].default
    return int(accounts) * int(initial)


# --- a user's shell -------------------------------------------------------------------------

def free_ports(wanted: tuple[int, ...]) -> dict[int, int]:
    """A free port for each README port, neighbours for neighbours (a server's PORT and PORT+1),
    below the ephemeral range (tests/support/loopback_ports.py): a background writer's HTTP port,
    picked by bind(0), was taken by an outbound connection before the writer bound it."""
    runs: list[tuple[int, ...]] = []
    for port in sorted(wanted):
        if any(port in run for run in runs):
            continue
        runs.append((port, port + 1) if port + 1 in wanted else (port,))
    firsts = free_port_runs([len(run) for run in runs])
    return {port: first + i for run, first in zip(runs, firsts) for i, port in enumerate(run)}


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def plain_env() -> dict[str, str]:
    """This process's environment without an activated venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "PYTHONPATH", "SPARK_HOME")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p.rstrip("/") != str(VENV_BIN))
    return env


def flag(command: str, name: str) -> str | None:
    m = re.search(rf"(?:^|\s){re.escape(name)}[ =](\S+)", command)
    return m.group(1) if m else None


@dataclass
class Process:
    command: str
    proc: subprocess.Popen
    log: Path  # where its output goes: the command's own `> FILE` or ours

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        if self.alive():
            self.signal_group(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.proc.wait(10)


def is_writer(command: str) -> bool:
    return bool(re.search(r"theflash writer (run|start)\b|writer --spark-entry", command))


def readiness(command: str, process: Process | None) -> tuple[str, Callable[[], bool]] | None:
    """For a program that serves until stopped: what being up means, and the check."""
    out = process.output if process else (lambda: "")
    if re.search(r"theflash upstream\b.*--serve", command):
        return "the mini cluster to serve", lambda: "upstream: serving" in out()
    if re.search(r"theflash capture\b", command):
        return "capture to capture its regions", lambda: "capture: capturing" in out()
    if re.search(r"theflash serve\b", command):
        port = int(flag(command, "--port") or 8815)
        return "theflash serve to listen", lambda: "serving store" in out() and listening(port) and listening(port + 1)
    if is_writer(command):
        serve, store = flag(command, "--serve"), flag(command, "--store")
        assert store, command
        foreground = process is not None  # a daemon's output goes to its --log

        def up() -> bool:
            if foreground and "theflash.writer.progress INFO running" not in out():
                return False
            if serve:
                return listening(int(serve)) and listening(int(serve) + 1)
            return replicated(Path(store))

        return f"the writer to replicate {', '.join(REPLICATED_TABLES)} into {store}", up
    return None


def replicated(store: Path) -> bool:
    from pyspark_theflash.store import Store

    if not (store / "manifest.db").exists():
        return False
    with Store.open(store, readonly=True) as opened, contextlib.closing(opened.snapshot()) as view:
        return set(REPLICATED_TABLES) <= {f"{t.db}.{t.name}" for t in view.tables()}


@dataclass
class Terminal:
    """One user's shell at the README, in `work`: /tmp is work/tmp, the checkout's root is
    work/clone (links to the checkout's files), the README's ports are free ones."""

    work: Path
    ports: dict[int, int] = field(default_factory=lambda: free_ports(README_PORTS))
    lasting: list[Process] = field(default_factory=list)  # `&` commands, still running
    daemon_stores: list[str] = field(default_factory=list)  # stores of writers started with --daemon
    tmp: Path = field(init=False)
    cwd: Path = field(init=False)
    env: dict[str, str] = field(init=False)
    _logs: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.tmp = self.work / "tmp"
        self.cwd = self.work / "clone"
        self.tmp.mkdir(parents=True)
        self.cwd.mkdir()
        tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        for name in {path.split("/")[0] for path in tracked.splitlines()} | {".venv"}:
            (self.cwd / name).symlink_to(ROOT / name)
        spark_conf = write_spark_conf(self.work / "spark-conf", SPARK_DEFAULTS)
        self.env = {**plain_env(), "TMPDIR": str(self.tmp), "SPARK_CONF_DIR": str(spark_conf)}

    def ours(self, text: str) -> str:
        text = re.sub(r"(?<![\w.])/tmp(?=/)", str(self.tmp), text)
        return re.sub(r"(?<!\d)(" + "|".join(map(str, README_PORTS)) + r")(?!\d)",
                      lambda m: str(self.ports[int(m.group(1))]), text)

    def start(self, command: str) -> Process:
        """Start `command` in a process group of its own; its output goes to the file it
        redirects to (`> FILE 2>&1`), else to a log of ours."""
        self._logs += 1
        ours = self.work / f"command-{self._logs}.log"
        redirect = re.search(r">\s*(\S+)\s+2>&1\s*$", command)
        with open(ours, "ab") as sink:
            proc = subprocess.Popen(["bash", "-c", command], cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        return Process(command, proc, Path(redirect.group(1)) if redirect else ours)

    def wait_up(self, command: str, process: Process | None) -> None:
        ready = readiness(command, process)
        if ready is None:
            return
        what, check = ready

        def up() -> bool:
            if process is not None and not process.alive():
                raise AssertionError(f"{command}\nexited with {process.proc.returncode} before it was up:\n"
                                     f"{process.output()[-3000:]}")
            return check()

        wait_for(up, READY_TIMEOUT_S, what, interval_s=0.5)

    def run(self, command: str, stdin: str | None = None) -> str:
        """One command of a block, as written (after `ours`); returns what it printed."""
        command = self.ours(command)
        if command.endswith("&"):
            process = self.start(command[:-1].rstrip())
            self.lasting.append(process)
            self.wait_up(command, process)
            return ""
        if readiness(command, None) is not None and "--daemon" not in command:
            # serves until stopped, in the foreground: up, then Ctrl-C
            process = self.start(command)
            try:
                self.wait_up(command, process)
            finally:
                process.signal_group(signal.SIGINT)
            try:
                process.proc.wait(60)
            except subprocess.TimeoutExpired:
                process.stop()
                raise AssertionError(f"{command}\ndid not stop within 60 s of Ctrl-C:\n{process.output()[-3000:]}")
            out = process.output()
            assert process.proc.returncode in (0, 130), f"{command}\nexited {process.proc.returncode} on Ctrl-C:\n{out[-3000:]}"
            if is_writer(command):
                assert "theflash.writer.progress INFO stopped" in out, f"{command}\ndid not stop cleanly:\n{out[-3000:]}"
            return out
        result = subprocess.run(["bash", "-c", command], cwd=self.cwd, env=self.env, input=stdin or "",
                                capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, start_new_session=True)
        assert result.returncode == 0, (f"{command}\nexited {result.returncode}:\n{result.stdout[-2000:]}\n"
                                        f"{result.stderr[-4000:]}")
        if "--daemon" in command:
            self.daemon_stores.append(flag(command, "--store") or "")
            self.wait_up(command, None)
        return result.stdout + result.stderr

    def run_python(self, block: Block) -> str:
        script = self.work / f"block-{block.line}.py"
        script.write_text(self.ours(block.text))
        result = subprocess.run([".venv/bin/python", str(script)], cwd=self.cwd, env=self.env, capture_output=True,
                                text=True, timeout=2 * COMMAND_TIMEOUT_S, start_new_session=True)
        assert result.returncode == 0, f"{block.name} exited {result.returncode}:\n{result.stderr[-5000:]}"
        return result.stdout + result.stderr

    def check_alive(self) -> None:
        for process in self.lasting:
            assert process.alive(), (f"{process.command}\nstopped ({process.proc.returncode}) while it should "
                                     f"keep running:\n{process.output()[-3000:]}")

    def close(self) -> None:
        for store in reversed(self.daemon_stores):
            subprocess.run([str(VENV_BIN / "theflash"), "writer", "stop", "--store", store],
                           capture_output=True, timeout=60, env=self.env)
        for process in reversed(self.lasting):
            process.stop()


def run_block(terminal: Terminal, block: Block, only_lasting: bool = False) -> str:
    """Run a bash or python block; returns everything it printed. `only_lasting`: only the
    commands that keep something running (`&`, `--daemon`)."""
    if block.lang == "python":
        return terminal.run_python(block)
    sql = sql_input_of(block)
    printed = []
    for command in commands(block.text):
        if only_lasting and not (command.endswith("&") or "--daemon" in command):
            continue
        interactive = sql if "spark-sql" in command else None
        out = terminal.run(command, stdin=terminal.ours(interactive) if interactive else None)
        if interactive:
            check_spark_sql(command, interactive, out)
        printed.append(out)
    return "\n".join(printed)


def run_with_s3(terminal: Terminal, block: Block, server: Any) -> str:
    """A block for an S3 endpoint, run as written against the suite's S3 server: the bucket it
    names created, the server's endpoint and keys in its environment (where the README says a
    user's are), nothing else changed."""
    assert block.s3_bucket is not None
    if server.filesystem().get_file_info(block.s3_bucket).type.name == "NotFound":
        server.create_bucket(block.s3_bucket)
    saved = terminal.env
    terminal.env = {**saved, **server.env()}
    try:
        return run_block(terminal, block)
    finally:
        terminal.env = saved


def check_spark_sql(command: str, sql: str, out: str) -> None:
    statements = sql_statements(sql)
    answered = out.count("Time taken:")
    assert answered == len(statements), (f"{command}\nanswered {answered} of the {len(statements)} statements "
                                         f"typed at its prompt:\n{out[-5000:]}")
    assert "without the connector's extension" not in out, f"{command}\nruns without TheFlashExtensions:\n{out[-3000:]}"


def check_bank_total(block: Block, out: str) -> None:
    text = block.text + (sql_input_of(block) or "")
    sums = len(re.findall(r"sum\(\s*\"?balance\"?\s*\)", text))
    total = bank_total()
    shown = len(re.findall(rf"(?<![\d.]){total}(?![\d.])", out))
    assert shown >= sums, f"{block.name} sums balance {sums} time(s); its output shows the total {total} {shown} time(s):\n{out[-4000:]}"


# --- the tests ------------------------------------------------------------------------------

def test_every_block_is_run_or_says_why_not() -> None:
    assert BLOCKS and PIPELINE in RUNNABLE
    for block in BLOCKS:
        assert block.lang in ("bash", "python", "sql"), f"{block.name}: a fence needs a language this test runs: {block.lang!r}"
        if block.not_run is not None:
            assert len(block.not_run) > 10, f"{block.name}: say why it is not run"
            for test in re.findall(r"tests/[\w/]+\.py", block.not_run):
                assert (ROOT / test).exists(), f"{block.name}: {test} does not exist"
        elif block.lang == "sql":
            before = BLOCKS[BLOCKS.index(block) - 1]
            assert sql_input_of(before) == block.text, f"{block.name}: a sql block runs only at the spark-sql prompt of the block before it"
    assert any(sql_input_of(b) for b in RUNNABLE), "the spark-sql catalog block is no longer found"


def test_the_pipeline_blocks_lasting_commands_are_the_whole_pipeline() -> None:
    lasting = [c for c in commands(PIPELINE.text) if c.endswith("&") or "--daemon" in c]
    for program in ("theflash upstream", "theflash capture", "theflash writer start --daemon", "theflash serve"):
        assert any(program in c for c in lasting), f"{PIPELINE.name} no longer starts {program} to keep running"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Terminal]:
    """The pipeline as "Running it piece by piece" starts it: its commands that keep running."""
    terminal = Terminal(tmp_path_factory.mktemp("readme"))
    try:
        run_block(terminal, PIPELINE, only_lasting=True)
        yield terminal
    finally:
        terminal.close()


@pytest.mark.spark
@pytest.mark.parametrize("block", [b for b in RUNNABLE if b is not PIPELINE], ids=lambda b: f"line{b.line}-{b.lang}")
def test_the_block_runs_as_written(pipeline: Terminal, block: Block, request: pytest.FixtureRequest) -> None:
    started = time.monotonic()
    if block.s3_bucket is not None:
        out = run_with_s3(pipeline, block, request.getfixturevalue("s3_server"))
    else:
        out = run_block(pipeline, block)
    check_bank_total(block, out)
    pipeline.check_alive()
    print(f"{block.name}: {time.monotonic() - started:.1f}s")


@pytest.mark.slow
@pytest.mark.spark
def test_the_pipeline_block_runs_whole_as_written(tmp_path: Path) -> None:
    terminal = Terminal(tmp_path)
    try:
        out = run_block(terminal, PIPELINE)
        terminal.check_alive()
    finally:
        terminal.close()
    assert "clean" in out, out[-3000:]  # store verify --online
    assert "COMMITTED" in out, out[-3000:]  # binlog dump
