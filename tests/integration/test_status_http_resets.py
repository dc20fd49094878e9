"""A client that resets its connection to a status endpoint (a scraper killed mid-request) is
no traceback on the process's stderr: the server logs it at debug level and keeps serving
(ports.http_server's servers: the writer's and capture's --metrics-port, TiDB's status port of
the mini cluster)."""
from __future__ import annotations

import logging
import socket
import struct
import urllib.request

import pytest

from flash_rig import wait_for
from pyspark_theflash.status_http import StatusServer


def test_a_reset_connection_is_logged_at_debug_not_printed(capfd: pytest.CaptureFixture[str],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    server = StatusServer(lambda: {"healthy": True}, lambda snapshot: "x_up 1\n")
    try:
        with caplog.at_level(logging.DEBUG, logger="theflash.http"):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"GET /metr")  # half a request line: the server's thread waits on the rest
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # SO_LINGER 0: a RST, so the server's readline raises ConnectionResetError
            wait_for(lambda: bool(caplog.records), 10, "the server to log the reset connection")
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as answer:
            assert answer.read() == b"x_up 1\n"  # still serving
    finally:
        server.close()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith("connection from ('127.0.0.1', "), messages
    assert messages[0].endswith(") ended with an error")
    assert caplog.records[0].exc_info is not None and caplog.records[0].exc_info[0] is ConnectionResetError
    assert "Traceback" not in capfd.readouterr().err
