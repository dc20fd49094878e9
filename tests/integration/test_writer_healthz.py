"""The writer's /healthz (``--metrics-port``; issue 52, item 8): 200 ``ok`` while it applies the
binlog or copies the upstream's regions, 503 and the reason in one line while it starts, after
it stopped and when it failed (the error that ended it), as capture's and the service's."""
from __future__ import annotations

import urllib.error
import urllib.request

from pyspark_theflash.writer.metrics_http import MetricsServer
from pyspark_theflash.writer.progress import Progress


def healthz(progress: Progress) -> tuple[int, str]:
    server = MetricsServer(progress.to_status, port=0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()
    finally:
        server.close()


def test_the_writers_healthz_is_ok_while_it_works_and_says_why_not_otherwise() -> None:
    progress = Progress()
    assert healthz(progress) == (503, "the writer is starting\n")
    for state in ("bootstrapping", "running"):
        progress.state = state
        assert healthz(progress) == (200, "ok\n")
    progress.state = "stopped"
    assert healthz(progress) == (503, "the writer has stopped\n")
    progress.state = "failed"
    progress.last_error = {"message": "the disk under /data/flash is full", "kind": "StorageFailureError", "at": 1.0}
    assert healthz(progress) == (503, "the writer failed: the disk under /data/flash is full\n")
