"""``theflash serve``'s ``GET /healthz``, as the writer's and capture's: 200 ``ok`` while its store
answers, 503 and the reason in one line once the store's manifest cannot be read."""
from __future__ import annotations

from pathlib import Path

from service_client import HttpReader
from pyspark_theflash.service import serve
from pyspark_theflash.store import Store


def test_healthz_says_ok_then_names_a_manifest_that_does_not_open(tmp_path: Path) -> None:
    Store.open(tmp_path / "s").close()
    with serve(str(tmp_path / "s"), port=0) as running:
        http = HttpReader(running.http_url)
        status, headers, body = http.request("GET", "/healthz")
        assert (status, body) == (200, b"ok\n") and headers["content-type"].startswith("text/plain")
        assert http.request("POST", "/healthz")[0] == 405
        (tmp_path / "s" / "manifest.db").write_bytes(b"not a database" * 512)
        status, _, body = http.request("GET", "/healthz")
        text = body.decode()
        assert status == 503 and text.startswith("unhealthy: ") and text.count("\n") == 1, text
        assert "manifest" in text, text
