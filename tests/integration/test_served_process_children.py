"""Child processes started from a process that serves gRPC (issue 55): a user who embeds the
mini cluster (``MiniCluster(...).serve()``) and then starts processes from the same Python
process. gRPC's fork handlers aborted about one child in 30 that was fork()ed there and ran
Python before exec, which is how PySpark starts its JVM; the package turns gRPC's fork
support off before anything imports ``grpc`` (``pyspark_theflash/grpc_fork.py``). Each run is
a fresh process (tests/support/served_process_child.py), with one core kept busy."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from served_process_child import run_fresh

PACKAGE = Path(__file__).resolve().parents[2] / "pyspark_theflash"


def test_children_forked_as_pyspark_forks_its_jvm_start_from_a_process_serving_grpc(tmp_path: Path) -> None:
    (result,) = run_fresh(tmp_path, 1, "--forks", "300")
    assert result["forked"] == 300
    assert result["died"] == [], "children aborted before exec (-6: gRPC's fork handlers)"


def test_the_background_writer_starts_from_a_process_serving_grpc(tmp_path: Path) -> None:
    results = run_fresh(tmp_path, 2, "--writer")
    assert all(r["writer"] > 0 for r in results)


@pytest.mark.slow
def test_the_background_writer_starts_from_a_process_serving_grpc_50_times(tmp_path: Path) -> None:
    results = run_fresh(tmp_path, 50, "--writer", "--forks", "50")
    assert all(r["writer"] > 0 and r["died"] == [] for r in results)


def test_the_package_starts_no_child_with_a_preexec_fn() -> None:
    """A ``preexec_fn`` makes CPython fork() and run Python in the child instead of vfork or
    posix_spawn: the package's own children go without one (a new session is
    ``start_new_session=True``)."""
    found = [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
             for path in PACKAGE.rglob("*.py")
             for node in ast.walk(ast.parse(path.read_text(), str(path)))
             if isinstance(node, ast.keyword) and node.arg == "preexec_fn"]
    assert not found, f"children started with a preexec_fn: {found}"


def test_the_package_turns_grpcs_fork_support_off_before_grpc_is_imported() -> None:
    probe = ("import os, sys; import pyspark_theflash.upstream_client.client; "
             "print(os.environ['GRPC_ENABLE_FORK_SUPPORT'], 'grpc' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60,
                          check=True)
    assert done.stdout.split() == ["false", "True"]


def test_importing_grpc_before_the_package_is_warned_about() -> None:
    """gRPC reads its fork setting when first imported: the package cannot turn it off after."""
    env = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    late = subprocess.run([sys.executable, "-c", "import grpc, pyspark_theflash"], capture_output=True, text=True,
                          env=env, timeout=60, check=True)
    assert "grpc was imported before pyspark_theflash" in late.stderr
    first = subprocess.run([sys.executable, "-c", "import pyspark_theflash, grpc"], capture_output=True, text=True,
                           env=env, timeout=60, check=True)
    assert first.stderr == ""
