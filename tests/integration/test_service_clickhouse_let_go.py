"""A service that reads any store (``theflash_session()``'s, in the Spark driver) opens a
ClickHouse-engine store's directory only while it reads it: once its sessions and queries are
done it lets go, so ``theflash sql``, a writer or another service can open the directory; it
opens it again for the next read. ``POST /v1/sql`` runs a whole query there, naming the store."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa

from flash_rig import FlashRig, wait_for
from pyspark_theflash.engine.clickhouse import directory as chdir
from pyspark_theflash.scan.session import open_read_session, read_stream
from pyspark_theflash.service import serve
from pyspark_theflash.upstream.tidb import make_column
from service_client import HttpReader

TABLE = "letgo.items"
ROWS = 40


def test_a_service_of_any_store_lets_go_of_a_clickhouse_directory_once_nothing_reads_it(tmp_path: Path) -> None:
    rig = FlashRig(tmp_path / "rig")
    try:
        rig.cluster.create_table(TABLE, [make_column("id", "BIGINT", not_null=True), make_column("kind", "VARCHAR(4)")],
                                 primary_key=["id"])
        with rig.cluster.txn() as t:
            for i in range(ROWS):
                t.insert(TABLE, {"id": i, "kind": ("a", "b")[i % 2]})
        rig.start_writer(interval_s=0.05, engine="clickhouse")
        rig.wait_replicated(TABLE)
        ts = rig.cluster.tso.get_ts()
        with open_read_session(rig.store, TABLE, snapshot_ts=ts, options={"upstream": rig.upstream}) as s:
            assert sum(b.num_rows for n in range(len(s.streams)) for b in read_stream(s, n)) == ROWS
        rig.stop_writer()  # the writer lets go of the directory
        assert chdir._OPEN is None

        query = f"SELECT kind, count() AS n FROM {TABLE} GROUP BY kind ORDER BY kind"
        expected = [{"kind": "a", "n": ROWS // 2}, {"kind": "b", "n": ROWS // 2}]
        with serve(any_store=True, port=0, keeper_interval_s=0.1) as running:
            reader = HttpReader(running.http_url)
            read, _ = reader.read({"table": TABLE, "store": rig.store, "snapshot_ts": ts})
            assert read.num_rows == ROWS
            status, headers, body = reader.request("POST", "/v1/sql", {"sql": query, "snapshot_ts": ts,
                                                                       "store": rig.store})
            assert status == 200, body[:500]
            assert headers["content-type"] == "application/vnd.apache.arrow.stream"
            assert headers["x-theflash-snapshot-ts"] == str(ts) and headers["x-theflash-tables"] == TABLE
            assert pa.ipc.open_stream(pa.py_buffer(body)).read_all().to_pylist() == expected
            assert running.service.stores.engines(), "the service opened the store to read it"

            wait_for(lambda: chdir._OPEN is None and not running.service.stores.engines(), 15,
                     "the service to let go of the ClickHouse directory")
            other = subprocess.run([sys.executable, "-m", "pyspark_theflash", "sql", "--store", rig.store,
                                    "--ts", str(ts), "--format", "json", query],
                                   capture_output=True, text=True, timeout=300)
            assert other.returncode == 0, other.stderr  # another process opens the directory now
            assert [json.loads(line) for line in other.stdout.splitlines()] == expected

            again, _ = reader.read({"table": TABLE, "store": rig.store, "snapshot_ts": ts})
            assert again.sort_by("id").to_pylist() == read.sort_by("id").to_pylist()
            status, _, body = reader.request("POST", "/v1/sql", {"sql": query})
            assert status == 400 and b"give the store" in body, body[:500]
    finally:
        rig.close()
