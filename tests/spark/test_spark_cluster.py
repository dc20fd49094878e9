"""Spark on a cluster: a standalone master and workers, each worker on its own 'host' (a network
namespace on a bridge, and a mount namespace where the test's directory — the store, the mini
cluster, everything — is hidden under a tmpfs). Executors there cannot open the store's files, as
on another machine. All traffic stays on this machine. Needs root (CI runs as root); elsewhere it
says so and skips.

* The default run: README.md's "Running on a Spark cluster" commands as written (the master and a
  worker from the wheel's ``spark-class``, the driver's ``theflash_session(master=...)`` read
  through the jar; only hosts, the port and the store path are this machine's), its output the
  bank's total; then the Python source with no ``server`` (``theflash_session(master=...,
  jvm=False)``): planned on the store's files on the driver, read by the executor through the
  session's service, and a ``readStream`` of it; then the jar by ``spark.jars`` through a
  ``theflash serve`` on the driver's host: each equal to the upstream at one ts while the bank
  workload transfers. The three read paths and a stream, on one worker.
* The slow run: two workers; the jar via ``theflash_session(master=...)`` (and a stream) and via
  ``spark.jars`` + ``server``, the Python source via ``server`` and by itself (and a stream),
  each equal to the upstream at one ts.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import ROOT
from flash_rig import FlashRig, wait_for
from loopback_ports import free_port, free_ports
from pyspark_theflash.service import serve
from pyspark_theflash.upstream.workloads import BankWorkload

pytestmark = [pytest.mark.spark]

TABLE = "bank.accounts"
README = ROOT / "README.md"


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30)


class Lan:
    """A bridge in this namespace (the driver's and the master's host) and one network namespace
    per worker, joined to it by a veth pair; addresses this test assigns."""

    def __init__(self, workers: int) -> None:
        tag = os.getpid() % 100000
        net = 20 + os.getpid() % 200
        self.bridge = f"thf{tag}b"
        self.host = f"10.243.{net}.1"
        self.namespaces = [f"theflash{tag}w{i}" for i in range(workers)]
        self.addresses = [f"10.243.{net}.{10 + i}" for i in range(workers)]
        self._links: list[str] = []
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        self._links.append(self.bridge)
        _run("ip", "addr", "add", f"{self.host}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for i, (ns, address) in enumerate(zip(self.namespaces, self.addresses)):
            _run("ip", "netns", "add", ns)
            outer = f"thf{tag}h{i}"
            _run("ip", "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self._links.append(outer)
            _run("ip", "link", "set", outer, "master", self.bridge, "up")
            for cmd in (("ip", "addr", "add", f"{address}/24", "dev", "eth0"), ("ip", "link", "set", "eth0", "up"),
                        ("ip", "link", "set", "lo", "up"), ("ip", "route", "add", "default", "via", self.host)):
                _run("ip", "netns", "exec", ns, *cmd)

    def close(self) -> None:
        for link in reversed(self._links):
            subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=30)
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def _namespaces_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the cluster test makes network and mount namespaces: it needs root (CI runs it as root)"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"the cluster test needs the {tool} command"
    probe = f"thfprobe{os.getpid() % 10000}"
    made = subprocess.run(["ip", "link", "add", probe, "type", "bridge"], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a bridge here ({made.stderr.strip()}): no namespaces for the cluster test"
    subprocess.run(["ip", "link", "del", probe], capture_output=True)
    return None


@contextlib.contextmanager
def lan_of(workers: int) -> Iterator[Lan]:
    why = _namespaces_unavailable()
    if why is not None:
        pytest.skip(why)
    network = Lan(workers)
    try:
        yield network
    finally:
        network.close()


def _spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


class StandaloneCluster:
    """A master on the bridge's address, a worker in each namespace (started with the wheel's
    ``spark-class``), the test's directory hidden from the workers."""

    def __init__(self, lan: Lan, hidden: Path, logs: Path) -> None:
        spark_class = str(_spark_home() / "bin" / "spark-class")
        env = dict(os.environ, SPARK_HOME=str(_spark_home()), PYSPARK_PYTHON=sys.executable,
                   SPARK_LOCAL_IP=lan.host, SPARK_NO_DAEMONIZE="1")
        port, ui = free_ports(2, lan.host)
        self.master = f"spark://{lan.host}:{port}"
        self.ui = f"http://{lan.host}:{ui}/json/"
        self.processes: list[subprocess.Popen] = []
        logs.mkdir(parents=True, exist_ok=True)
        self._start([spark_class, "org.apache.spark.deploy.master.Master", "--host", lan.host, "--port", str(port),
                     "--webui-port", str(ui)], env, logs / "master.log")
        for i, (ns, address) in enumerate(zip(lan.namespaces, lan.addresses)):
            work = f"{hidden}/spark-worker"
            script = (f"mount -t tmpfs tmpfs {hidden} && mkdir -p {work}/work {work}/local && "
                      f"exec {spark_class} org.apache.spark.deploy.worker.Worker --host {address} --cores 1 "
                      f"--memory 1g --work-dir {work}/work {self.master}")
            worker_env = dict(env, SPARK_LOCAL_IP=address, SPARK_LOCAL_DIRS=f"{work}/local")
            self._start(["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private",
                         "sh", "-c", script], worker_env, logs / f"worker-{i}.log")
        workers = len(lan.namespaces)
        wait_for(lambda: self._alive_workers() == workers, 240, f"{workers} workers to register with {self.master}")

    def _start(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        with open(log, "wb") as out:
            self.processes.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                                   start_new_session=True))

    def _alive_workers(self) -> int:
        try:
            with urllib.request.urlopen(self.ui, timeout=5) as response:
                return int(json.loads(response.read()).get("aliveworkers", 0))
        except OSError:
            return 0

    def close(self) -> None:
        stop_processes(self.processes)


def stop_processes(processes: list[subprocess.Popen]) -> None:
    """Workers (and their executors), then the master: each process group, the last started first."""
    for process in reversed(processes):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in reversed(processes):
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def run_driver(mode: str, master: str, store: str, ts: int, server: str, token: str, lan: Lan,
               stream: bool = False) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THEFLASH_") and k != "SPARK_LOCAL_IP"}
    env.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable, THEFLASH_TOKEN=token,
               THEFLASH_TEST_LAN_HOST=lan.host)
    if stream:
        env["THEFLASH_TEST_STREAM"] = "1"
    if len(lan.addresses) > 1:
        env["THEFLASH_TEST_PROBE_PAUSE"] = "1"
    cmd = [sys.executable, str(ROOT / "tests" / "support" / "spark_cluster_driver.py"), mode, master, store, TABLE, str(ts)]
    proc = subprocess.run(cmd + [server], capture_output=True, text=True, timeout=420, env=env,
                          cwd=str(ROOT))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT=")]
    assert proc.returncode == 0 and lines, f"driver {mode} failed:\n{proc.stderr[-6000:]}"
    return json.loads(lines[0][len("RESULT="):])


def check_read(got: dict[str, Any], lan: Lan, upstream: list[list[int]], bank: BankWorkload, accounts: int,
               ts: int) -> None:
    """Executors ran on every worker 'host', none of them saw the store, and the rows are the
    upstream's at ts: the bank's total over every account."""
    hosts = {host for host, _ in got["executors"]}
    assert hosts == set(lan.addresses), got["executors"]
    assert not any(seen for _, seen in got["executors"]), got["executors"]
    assert got["rows"] == upstream, f"{got['mode']} at ts {ts}: {got['rows']} != upstream {upstream}"
    assert sum(b for _, b in got["rows"]) == bank.total and len(got["rows"]) == accounts


def check_routed(got: dict[str, Any], lan: Lan) -> None:
    """The Python source with no server: planned on the store's files where the driver sees them,
    each partition read by its executor through a session of the driver's service (opened for its
    stream, released after it), which serves at the driver's address on the workers' network."""
    assert got["planner_sees_store"] and got["server"].startswith(f"http://{lan.host}:"), got
    sessions = got["service_sessions"]
    assert sessions["opened"] == sessions["released"] == got["partitions"] >= 1, (sessions, got["partitions"])


def upstream_at(rig: FlashRig, ts: int) -> list[list[int]]:
    return sorted([int(r["id"]), int(r["balance"])] for r in rig.cluster.read_table(TABLE, ts).rows)


@pytest.mark.slow
def test_executors_on_other_hosts_read_through_the_jar_the_python_source_and_a_stream(tmp_path: Path) -> None:
    accounts = 20
    rig = FlashRig(tmp_path / "flash")
    cluster: StandaloneCluster | None = None
    bank: BankWorkload | None = None
    try:
        with lan_of(2) as lan:
            bank = BankWorkload(rig.cluster, accounts=accounts, initial=1000, threads=1, seed=43, rate=20)
            bank.setup()
            rig.start_writer(interval_s=0.05)
            rig.wait_replicated(TABLE)
            bank.start()
            cluster = StandaloneCluster(lan, tmp_path, tmp_path / "logs")
            token = secrets.token_urlsafe(24)
            with serve(rig.store, host=lan.host, port=0, token=token) as served:
                for mode in ("session", "jars", "python", "python-auto"):
                    before = bank.stats.committed
                    wait_for(lambda: bank.stats.committed > before, 30, "the workload to commit")
                    ts = int(rig.cluster.get_ts())
                    got = run_driver(mode, cluster.master, rig.store, ts, served.http_url, token, lan,
                                     stream=mode == "python-auto")
                    upstream = upstream_at(rig, ts)
                    check_read(got, lan, upstream, bank, accounts, ts)
                    if mode == "session":
                        assert got["stream_first_batch"] == upstream  # the stream's first batch: the rows at ts
                        assert got["driver_host"] == lan.host and got["server"].startswith(f"http://{lan.host}:")
                        assert got["ui"], "theflash_session() leaves the Spark UI on"
                    if mode == "python-auto":
                        check_routed(got, lan)
                        assert got["stream_first_batch"] == upstream
            bank.stop()
            assert not bank.stats.errors, bank.stats.errors[:3]
    finally:
        if bank is not None:
            bank.stop()
        if cluster is not None:
            cluster.close()
        rig.close()


# --- README.md's "Running on a Spark cluster", as written --------------------------------------

README_MASTER, README_WORKER, README_PORT, README_STORE = "10.0.0.1", "10.0.0.2", "7077", "/data/flash"


def readme_cluster_commands() -> list[str]:
    """The commands of the bash block of README.md's "Running on a Spark cluster": comment lines
    dropped, a command's lines joined while a quoted string is open (the driver's ``python -c``)."""
    section = README.read_text().split("\n## Running on a Spark cluster\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert len(blocks) == 1, f"README's cluster section has {len(blocks)} bash blocks; this test runs one"
    commands: list[str] = []
    pending = ""
    for line in blocks[0].splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending = f"{pending}\n{line}" if pending else line
        if pending.count('"') % 2 == 0:
            commands.append(pending)
            pending = ""
    assert not pending, f"an unterminated quote in README's cluster block: {pending!r}"
    return commands


class ReadmeCluster:
    """README's commands on this machine: the master on the bridge's address, the worker in its
    namespace under the test's hidden directory, the driver on the bridge's host. What is written
    changes only where things are: the hosts, the master's port, the store's path (and Spark's
    work and local directories, by environment)."""

    def __init__(self, lan: Lan, hidden: Path, store: str, logs: Path) -> None:
        port = str(free_port(lan.host))
        self.master = f"spark://{lan.host}:{port}"
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.processes: list[subprocess.Popen] = []

        def placed(command: str, worker: str) -> str:
            for written, here in ((README_MASTER, lan.host), (README_WORKER, worker), (README_PORT, port),
                                  (README_STORE, store)):
                command = command.replace(written, here)
            return command

        commands = readme_cluster_commands()
        home = [c for c in commands if c.startswith("SPARK_HOME=")]
        master = [c for c in commands if "deploy.master.Master" in c]
        worker = [c for c in commands if "deploy.worker.Worker" in c]
        driver = [c for c in commands if c not in home + master + worker]
        assert len(home) == len(master) == len(worker) == len(driver) == 1, commands
        assert all(c.rstrip().endswith("&") for c in master + worker), "README starts them in the background"
        self.home = home[0]
        env = plain_env()
        self._start(["bash", "-c", f"{self.home}\nexec {placed(master[0], '').rstrip().rstrip('&')}"], env,
                    logs / "master.log")
        for i, (ns, address) in enumerate(zip(lan.namespaces, lan.addresses)):
            work = f"{hidden}/spark-worker"
            script = (f"mount -t tmpfs tmpfs {shlex.quote(str(hidden))} && mkdir -p {work}/work {work}/local && "
                      f"{self.home}\nexec {placed(worker[0], address).rstrip().rstrip('&')}")
            self._start(["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "bash", "-c",
                         script], dict(env, SPARK_WORKER_DIR=f"{work}/work", SPARK_LOCAL_DIRS=f"{work}/local"),
                        logs / f"worker-{i}.log")
        self.driver_command = placed(driver[0], "")
        wait_for(lambda: self.registered() == len(lan.namespaces), 240,
                 f"{len(lan.namespaces)} worker(s) to register with {self.master}")

    def registered(self) -> int:
        log = self.logs / "master.log"
        return log.read_text(errors="replace").count("Registering worker") if log.exists() else 0

    def _start(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        with open(log, "wb") as out:
            self.processes.append(subprocess.Popen(cmd, env=env, cwd=str(ROOT), stdout=out,
                                                   stderr=subprocess.STDOUT, start_new_session=True))

    def run_driver(self) -> str:
        """The README's driver command, from the checkout's root in a user's shell: its output."""
        proc = subprocess.run(["bash", "-c", self.driver_command], env=plain_env(), cwd=str(ROOT),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"README's driver failed:\n{proc.stderr[-6000:]}"
        return proc.stdout

    def close(self) -> None:
        stop_processes(self.processes)


def plain_env() -> dict[str, str]:
    """This process's environment as a user's shell has it: no venv, no Spark or TheFlash
    settings of the test's."""
    venv_bin = str(ROOT / ".venv" / "bin")
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "PYTHONPATH", "SPARK_HOME",
                        "SPARK_LOCAL_IP") and not k.startswith("THEFLASH_")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p.rstrip("/") != venv_bin)
    return env


def test_the_readmes_cluster_commands_run_and_an_executor_on_another_host_reads_through_each_read_path_and_a_stream(
        tmp_path: Path) -> None:
    accounts = 10
    rig = FlashRig(tmp_path / "flash")
    cluster: ReadmeCluster | None = None
    bank: BankWorkload | None = None
    try:
        with lan_of(1) as lan:
            bank = BankWorkload(rig.cluster, accounts=accounts, initial=1000, threads=1, seed=43, rate=20)
            bank.setup()
            rig.start_writer(interval_s=0.05)
            rig.wait_replicated(TABLE)
            bank.start()
            started = time.monotonic()
            cluster = ReadmeCluster(lan, tmp_path, rig.store, tmp_path / "logs")
            up = time.monotonic()
            # the README's driver: the jar through theflash_session(master=...), a fresh read's total
            shown = cluster.run_driver()
            readme = time.monotonic()
            assert re.search(rf"\|\s*{bank.total}\s*\|", shown), shown
            # the Python source, no server option: the executor reads through the session's service
            before = bank.stats.committed
            wait_for(lambda: bank.stats.committed > before, 30, "the workload to commit")
            ts = int(rig.cluster.get_ts())
            got = run_driver("python-auto", cluster.master, rig.store, ts, "", "", lan, stream=True)
            upstream = upstream_at(rig, ts)
            check_read(got, lan, upstream, bank, accounts, ts)
            check_routed(got, lan)
            assert got["stream_first_batch"] == upstream  # readStream through the service: the rows at ts
            # theflash_session(master=...) found the address executors reach it at, and left the UI on
            assert got["driver_host"] == lan.host and got["ui"], got
            python = time.monotonic()
            # the jar named by spark.jars, reading through a `theflash serve` on the driver's host
            token = secrets.token_urlsafe(24)
            with serve(rig.store, host=lan.host, port=0, token=token) as served:
                before = bank.stats.committed
                wait_for(lambda: bank.stats.committed > before, 30, "the workload to commit")
                ts = int(rig.cluster.get_ts())
                got = run_driver("jars", cluster.master, rig.store, ts, served.http_url, token, lan)
                check_read(got, lan, upstream_at(rig, ts), bank, accounts, ts)
            print(f"README's cluster up in {up - started:.0f}s, its driver {readme - up:.0f}s, the Python source's "
                  f"driver (and stream) {python - readme:.0f}s, the jar's with a server {time.monotonic() - python:.0f}s")
            bank.stop()
            assert not bank.stats.errors, bank.stats.errors[:3]
    finally:
        if bank is not None:
            bank.stop()
        if cluster is not None:
            cluster.close()
        rig.close()
