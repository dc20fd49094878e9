"""notebooks/quickstart.ipynb runs top to bottom, headless, so it never rots: its own cells
assert the bank total at every snapshot, that two tables read at one ts are consistent, and
that the change stream's Parquet sink, replayed, equals the snapshot at the stream's offset.
It leaves nothing in its temporary directory. README's command that opens it in JupyterLab
starts and serves it; nbconvert is installed beside it."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT
from loopback_ports import free_port
from polling import wait_for

pytestmark = pytest.mark.spark


def test_quickstart_notebook_executes_its_checks_hold_and_it_leaves_nothing_behind(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    kernel_tmp = tmp_path / "tmp"  # the kernel's TMPDIR: where tempfile puts the notebook's directory
    kernel_tmp.mkdir()
    notebook = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env={**os.environ, "TMPDIR": str(kernel_tmp)})

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "items without their order 0" in text
    plots = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(plots) == 2, "the freshness/throughput plot and the stream's lag plot were not both drawn"
    assert "differences from the snapshot at the offset 0" in text
    assert "_change_type" in text  # the SQL CHANGES query's table

    store = re.search(r"^store\s+(\S+)", text, re.M)
    assert store and Path(store.group(1)).is_relative_to(kernel_tmp), "the notebook's directory was not made in TMPDIR"
    assert not list(kernel_tmp.iterdir()), f"left behind in {kernel_tmp}: {sorted(p.name for p in kernel_tmp.iterdir())}"


def test_a_cell_failing_after_the_first_leaves_nothing_behind_when_the_kernel_exits(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    kernel_tmp = tmp_path / "tmp"
    kernel_tmp.mkdir()
    notebook = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    notebook.cells = [first, nbformat.v4.new_code_cell("raise RuntimeError('a cell fails')")]
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    with pytest.raises(CellExecutionError, match="a cell fails"):
        client.execute(env={**os.environ, "TMPDIR": str(kernel_tmp)})

    printed = "".join(o.get("text", "") for o in notebook.cells[0].get("outputs", []))
    assert f"store    {kernel_tmp}" in printed, printed  # the deployment was started, in TMPDIR
    # execute() returns once the kernel has exited: its atexit handlers have run
    assert not list(kernel_tmp.iterdir()), f"left behind in {kernel_tmp}: {sorted(p.name for p in kernel_tmp.iterdir())}"


def jupyter_command() -> str:
    """README's one command that opens the notebook."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    lines = [b.split("  #")[0].strip() for block in blocks for b in block.splitlines() if "jupyter lab" in b]
    assert lines == [".venv/bin/jupyter lab notebooks/quickstart.ipynb"], lines
    return lines[0]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200, url
        return json.loads(response.read())


def test_the_readme_command_opens_the_notebook_in_jupyterlab(tmp_path: Path) -> None:
    port = free_port()
    command = f"{jupyter_command()} --no-browser --ip 127.0.0.1 --port {port} --ServerApp.port_retries=0"
    venv_bin = str(ROOT / ".venv" / "bin")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p.rstrip("/") != venv_bin)
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")  # its server file and token, not in ~/.local
    log = tmp_path / "jupyter.log"
    with open(log, "wb") as sink:
        server = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                  stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def serving() -> re.Match[str] | None:
            assert server.poll() is None, f"{command} exited {server.returncode}:\n{log.read_text()[-3000:]}"
            return re.search(rf"http://127\.0\.0\.1:{port}/lab\?token=(\w+)", log.read_text())

        token = wait_for(serving, 120, "JupyterLab to serve", interval_s=0.5).group(1)

        def answering() -> dict[str, object] | None:
            # its address is printed as it binds; on a loaded machine the first request has met
            # a refused connection before it accepted (a full run's notebook test, 2026-11-28)
            assert server.poll() is None, f"{command} exited {server.returncode}:\n{log.read_text()[-3000:]}"
            try:
                return get_json(f"http://127.0.0.1:{port}/api")
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, ConnectionRefusedError):
                    return None
                raise

        assert "version" in wait_for(answering, 60, "JupyterLab to answer", interval_s=0.5)
        # given a file, JupyterLab serves its directory and opens the file in it
        opened = get_json(f"http://127.0.0.1:{port}/api/contents/quickstart.ipynb?token={token}")
        assert opened["type"] == "notebook" and opened["content"]["cells"], opened.get("name")
        kernels = get_json(f"http://127.0.0.1:{port}/api/kernelspecs?token={token}")
        assert opened["content"]["metadata"]["kernelspec"]["name"] in kernels["kernelspecs"]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert server.returncode == 0, log.read_text()[-3000:]
    assert not list((tmp_path / "runtime").glob("jpserver-*")), "JupyterLab did not shut down cleanly"


def test_nbconvert_is_installed_and_reads_the_notebook() -> None:
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "jupyter"), "nbconvert", "--to", "script", "--stdout",
                          "notebooks/quickstart.ipynb"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LocalDeployment(work" in out.stdout
