"""The JVM quick starts of README.md and jvm-shim/README.md run as they are written.

Each block is taken from the page, its lines joined where they end in a backslash; the only
changes are the store directory (``/tmp/flash``: a fresh store of this test's) and the ports
(``8816`` and the service's default Flight port: free ones, as other runs share this machine).
The commands run with ``bash`` from the repository's root, in an environment without an
activated venv: no ``VIRTUAL_ENV``, no ``.venv/bin`` on the PATH, no ``PYSPARK_PYTHON``.
"""
from __future__ import annotations

import os
import re
import subprocess
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from flash_rig import FlashRig, wait_for
from loopback_ports import free_port_runs
from pyspark_theflash.upstream.workloads import BankWorkload

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS, INITIAL = 12, 1000


def blocks(page: Path) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", page.read_text(), re.S)


def commands(block: str) -> list[str]:
    """The block's lines, continuation lines joined, comments after `#` dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.split("  #")[0].rstrip() for line in joined.splitlines() if line.strip()]


def plain_env() -> dict[str, str]:
    """This process's environment without an activated venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "PYTHONPATH", "SPARK_HOME")}
    venv_bin = str(ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p.rstrip("/") != venv_bin)
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    return env


class Served:
    """The quick start's ``theflash serve``: its HTTP port, and what to say when a block fails."""

    def __init__(self, process: subprocess.Popen[bytes], http: int, log: Path) -> None:
        self.process, self.http, self.log = process, http, log

    def state(self) -> str:
        code = self.process.poll()
        said = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        return (f"theflash serve (HTTP {self.http}) " + ("is running" if code is None else f"exited with {code}")
                + (f"; its stderr ends: {said}" if said else "; its stderr is empty"))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FlashRig, Served]]:
    """A store of the bank's accounts and the quick start's `theflash serve` over it. Its stderr
    goes to a file (a pipe nobody reads would stall it once full), and it is ready when its own
    /healthz answers: a port that merely accepts may be another process's, taken between
    ``free_ports`` and the service's bind."""
    base = tmp_path_factory.mktemp("quickstart")
    rig = FlashRig(base)
    service = None
    try:
        BankWorkload(rig.cluster, accounts=ACCOUNTS, initial=INITIAL).setup()
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated("bank.accounts")
        serve = [c for b in blocks(ROOT / "jvm-shim" / "README.md") for c in commands(b) if "theflash serve" in c]
        assert serve == [".venv/bin/theflash serve --store /tmp/flash &"], serve
        flight = free_port_runs([2])[0]  # the service's Flight port and its HTTP port (Flight + 1)
        http = flight + 1
        line = serve[0].removesuffix("&").replace("/tmp/flash", rig.store) + f" --port {flight}"
        log = base / "serve.stderr"
        with open(log, "wb") as stderr:
            process = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=ROOT, env=plain_env(),
                                       stdout=subprocess.DEVNULL, stderr=stderr)
        service = Served(process, http, log)

        def healthy() -> bool:
            assert process.poll() is None, service.state()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=5) as answer:
                    return bool(answer.status == 200)
            except OSError:
                return False

        wait_for(healthy, 60, "theflash serve to answer /healthz")
        yield rig, service
    finally:
        if service is not None:
            service.process.terminate()
            service.process.wait(30)
        rig.close()


def run_block(block: str, served: Served, store: str, stdin: str = "") -> str:
    def ours(text: str) -> str:
        return text.replace("8816", str(served.http)).replace("/tmp/flash", store)

    out = subprocess.run(["bash", "-c", "set -e\n" + ours("\n".join(commands(block)))], input=ours(stdin), capture_output=True, text=True,
                         cwd=ROOT, env=plain_env(), timeout=300)
    assert out.returncode == 0, f"{served.state()}\n{out.stderr[-3000:]}"
    return out.stdout


def shell_block(page: Path) -> tuple[str, str]:
    """The page's spark-shell block: its shell lines, and its `scala>` lines as the REPL's input."""
    block = next(b for b in blocks(page) if "spark-shell" in b)
    lines = commands(block)
    scala = [line.removeprefix("scala> ") for line in lines if line.startswith("scala> ")]
    shell = [line for line in lines if not line.startswith("scala> ") and "theflash serve" not in line]
    return "\n".join(shell), "\n".join(scala + [":quit", ""])


def test_the_spark_shell_quick_start_runs_as_written(served: tuple[FlashRig, Served]) -> None:
    rig, service = served
    shell, scala = shell_block(ROOT / "jvm-shim" / "README.md")
    readme = shell_block(ROOT / "README.md")
    assert readme == (shell, scala), "README.md and jvm-shim/README.md differ"
    out = run_block(shell, service, rig.store, stdin=scala)
    # format("theflash"): the total; the catalog's self-join: every account
    assert re.search(rf"\|\s*{ACCOUNTS * INITIAL}\s*\|", out), f"{service.state()}\n{out[-3000:]}"
    assert re.search(rf"\|\s*{ACCOUNTS}\s*\|", out), f"{service.state()}\n{out[-3000:]}"


def test_the_spark_submit_quick_start_runs_as_written(served: tuple[FlashRig, Served]) -> None:
    rig, service = served
    block = next(b for b in blocks(ROOT / "jvm-shim" / "README.md") if "spark-submit" in b)
    out = run_block(block, service, rig.store)
    assert f"accounts={ACCOUNTS} total={ACCOUNTS * INITIAL}" in out, f"{service.state()}\n{out[-3000:]}"
