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
import socket
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from flash_rig import FlashRig, wait_for
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


def free_ports() -> tuple[int, int]:
    """Two neighbouring free ports: the service's Flight port and its HTTP port (Flight + 1)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port, port + 1
        except OSError:
            continue
    raise AssertionError("no two neighbouring free ports")


def plain_env() -> dict[str, str]:
    """This process's environment without an activated venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "PYTHONPATH", "SPARK_HOME")}
    venv_bin = str(ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p.rstrip("/") != venv_bin)
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    return env


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FlashRig, int]]:
    """A store of the bank's accounts and the quick start's `theflash serve` over it."""
    rig = FlashRig(tmp_path_factory.mktemp("quickstart"))
    service = None
    try:
        BankWorkload(rig.cluster, accounts=ACCOUNTS, initial=INITIAL).setup()
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated("bank.accounts")
        serve = [c for b in blocks(ROOT / "jvm-shim" / "README.md") for c in commands(b) if "theflash serve" in c]
        assert serve == [".venv/bin/theflash serve --store /tmp/flash &"], serve
        flight, http = free_ports()
        line = serve[0].removesuffix("&").replace("/tmp/flash", rig.store) + f" --port {flight}"
        service = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=ROOT, env=plain_env(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def listening() -> bool:
            assert service.poll() is None, service.stderr.read().decode() if service.stderr else ""
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", http)) == 0

        wait_for(listening, 60, "theflash serve to listen")
        yield rig, http
    finally:
        if service is not None:
            service.terminate()
            service.wait(30)
        rig.close()


def run_block(block: str, port: int, store: str, stdin: str = "") -> str:
    def ours(text: str) -> str:
        return text.replace("8816", str(port)).replace("/tmp/flash", store)

    out = subprocess.run(["bash", "-c", "set -e\n" + ours("\n".join(commands(block)))], input=ours(stdin), capture_output=True, text=True,
                         cwd=ROOT, env=plain_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def shell_block(page: Path) -> tuple[str, str]:
    """The page's spark-shell block: its shell lines, and its `scala>` lines as the REPL's input."""
    block = next(b for b in blocks(page) if "spark-shell" in b)
    lines = commands(block)
    scala = [line.removeprefix("scala> ") for line in lines if line.startswith("scala> ")]
    shell = [line for line in lines if not line.startswith("scala> ") and "theflash serve" not in line]
    return "\n".join(shell), "\n".join(scala + [":quit", ""])


def test_the_spark_shell_quick_start_runs_as_written(served: tuple[FlashRig, int]) -> None:
    rig, port = served
    shell, scala = shell_block(ROOT / "jvm-shim" / "README.md")
    readme = shell_block(ROOT / "README.md")
    assert readme == (shell, scala), "README.md and jvm-shim/README.md differ"
    out = run_block(shell, port, rig.store, stdin=scala)
    assert re.search(rf"\|\s*{ACCOUNTS * INITIAL}\s*\|", out), out[-3000:]  # format("theflash"): the total
    assert re.search(rf"\|\s*{ACCOUNTS}\s*\|", out), out[-3000:]  # the catalog's self-join: every account


def test_the_spark_submit_quick_start_runs_as_written(served: tuple[FlashRig, int]) -> None:
    rig, port = served
    block = next(b for b in blocks(ROOT / "jvm-shim" / "README.md") if "spark-submit" in b)
    out = run_block(block, port, rig.store)
    assert f"accounts={ACCOUNTS} total={ACCOUNTS * INITIAL}" in out, out[-3000:]
