"""Delta log commits on S3 are put-if-absent (``lake.s3_put``: ``PUT`` with ``If-None-Match: *``,
signed by TheFlash), so of publishers racing for a version exactly one commits it and the log
is one history, whoever wins each version (PROTOCOL.md, "Creation of New Log Entries").

The races run against the real S3 server of the tests (SeaweedFS, ``s3_server``), which
honours the header (its S3 gateway evaluates ``If-None-Match: *`` under the object's lock:
docs/delta.md). How a commit meets an endpoint that does not, or that fails mid-request, is
shown by a scripted S3 endpoint on loopback (``ScriptedS3``): a refusal before any upload, a
retry after a dropped answer that finds its own bytes, never a write over another's version.
"""
from __future__ import annotations

import json
import os
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from delta_readers import delta_rs_rows
from pyspark_theflash.lake import delta_log, location
from pyspark_theflash.lake.delta_log import TableLog
from pyspark_theflash.lake.errors import LakeLocationError, VersionTakenError
from pyspark_theflash.lake.location import LakeDir, lake_dir
from pyspark_theflash.lake.publish import Publisher, Round
from pyspark_theflash.lake.s3_put import S3RequestError
from pyspark_theflash.store import Store, StoreOptions
from one_region_writes import COLUMNS, T1, Upstream, own_rows
from store_events import DB

SCHEMA = json.dumps({"type": "struct", "fields": [
    {"name": "version", "type": "long", "nullable": False, "metadata": {}},
    {"name": "writer", "type": "long", "nullable": False, "metadata": {}}]})


def _file(version: int, writer: int) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"version": pa.array([version], pa.int64()), "writer": pa.array([writer], pa.int64())}),
                   sink)
    return bytes(sink.getvalue().to_pybytes())


def _actions(version: int, writer: int, path: str, size: int) -> list[dict[str, Any]]:
    ms = 1_700_000_000_000 + version
    actions: list[dict[str, Any]] = [{"commitInfo": {"timestamp": ms, "inCommitTimestamp": ms, "theflashTs": version,
                                                     "operation": "WRITE", "writer": writer}}]
    if version == 0:
        actions += [{"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}},
                    {"metaData": {"id": "5c1b9d3e-0000-4000-8000-000000000001", "name": "race.t",
                                  "format": {"provider": "parquet", "options": {}}, "schemaString": SCHEMA,
                                  "partitionColumns": [], "configuration": {}, "createdTime": ms}}]
    actions.append({"add": {"path": path, "partitionValues": {}, "size": size, "modificationTime": ms,
                            "dataChange": True, "stats": json.dumps({"numRecords": 1})}})
    return actions


def _text(actions: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(a, separators=(",", ":")) + "\n" for a in actions).encode()


def test_of_writers_racing_for_each_version_on_s3_exactly_one_commits_it_and_the_log_is_one_history(
        s3_bucket: str) -> None:
    import deltalake

    writers, versions = 3, 30
    root = lake_dir(f"s3://{s3_bucket}/race/t")
    winners: list[int] = []
    lost = 0
    for version in range(versions):
        state = TableLog(root, version=version - 1)   # every writer builds on the same version
        barrier = threading.Barrier(writers)
        outcome: list[Any] = [None] * writers
        texts: list[bytes] = [b""] * writers

        def attempt(writer: int) -> None:
            path = f"part-{version}-{writer}.parquet"
            data = _file(version, writer)
            root.write(path, data)                     # its own data file first, as a publisher does
            actions = _actions(version, writer, path, len(data))
            texts[writer] = _text(actions)
            barrier.wait()
            try:
                outcome[writer] = delta_log.commit(state, actions, "race.t")
            except Exception as exc:   # noqa: BLE001 - the assertions below name what it must be
                outcome[writer] = exc

        threads = [threading.Thread(target=attempt, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        won = [w for w, o in enumerate(outcome) if o == version]
        assert len(won) == 1, f"version {version}: {outcome}"
        for w, o in enumerate(outcome):
            if w in won:
                continue
            assert isinstance(o, VersionTakenError), f"version {version}, writer {w}: {o!r}"
            assert (o.table, o.version) == ("race.t", version)
            message = str(o)
            assert "\n" not in message and "table race.t: version" in message and "one publisher per store" in message
            lost += 1
        # the winner's bytes, never a loser's written over them
        assert root.read_bytes(f"_delta_log/{version:020d}.json") == texts[won[0]], f"version {version} overwritten"
        winners.append(won[0])
    assert lost == versions * (writers - 1)
    # one history: TheFlash's replay and delta-rs agree on it, version by version
    log = delta_log.replay(root.uri)
    assert [v for v, _, _ in log.history] == list(range(versions))
    assert sorted(log.files) == sorted(f"part-{v}-{w}.parquet" for v, w in enumerate(winners))
    table = deltalake.DeltaTable(root.uri)
    assert table.version() == versions - 1
    rows = table.to_pyarrow_table().sort_by("version").to_pylist()
    assert rows == [{"version": v, "writer": w} for v, w in enumerate(winners)]
    assert [r["writer"] for r in deltalake.DeltaTable(root.uri, version=7).to_pyarrow_table()
            .sort_by("version").to_pylist()] == winners[:8]


def test_the_server_checks_the_conditional_put_s_signature(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # SeaweedFS verifies Signature V4 (the races above are authenticated requests): a wrong
    # secret is refused, naming the status and what to check, and nothing is written
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    log_dir = lake_dir(f"s3://{s3_bucket}/signed/t") / "_delta_log"
    with pytest.raises(S3RequestError, match="403 SignatureDoesNotMatch.*AWS_SECRET_ACCESS_KEY") as refused:
        log_dir.create("00000000000000000000.json", b"{}\n")
    assert refused.value.status == 403 and "\n" not in str(refused.value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    assert not log_dir.names()


def test_two_publishers_of_a_store_racing_to_s3_commit_each_version_once_and_the_loser_is_told_why(
        tmp_path: Path, s3_bucket: str) -> None:
    rng = random.Random(51)
    store = Store.open(tmp_path / "s", options=StoreOptions(row_group_rows=64, part_compression="zstd"))
    store.put_schema(DB, T1.to_json())
    up = Upstream(store)
    to = f"s3://{s3_bucket}/raced"
    publishers = [Publisher(store.root, to=to), Publisher(store.root, to=to)]
    up.commit([(h, f"seed{h}") for h in range(1_000)])
    store.flush()
    taken = 0
    rounds = 8
    for n in range(rounds):
        up.commit([(h, None if rng.random() < 0.2 else f"r{n}-{h}") for h in rng.sample(range(1_200), 150)])
        store.flush()
        barrier = threading.Barrier(2)
        outcome: list[Any] = [None, None]

        def run(i: int) -> None:
            barrier.wait()
            try:
                outcome[i] = publishers[i].publish()
            except Exception as exc:   # noqa: BLE001 - the assertions below name what it must be
                outcome[i] = exc

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        won = [o for o in outcome if isinstance(o, Round) and o.tables[0].version is not None]
        assert len(won) == 1, f"round {n}: {outcome}"
        assert won[0].tables[0].version == n
        (other,) = [o for o in outcome if o is not won[0]]
        if isinstance(other, VersionTakenError):
            # it had read the log before the winner committed: told which table and version, no more
            assert (other.table, other.version) == (f"{DB}.{T1.name}", n), other
            taken += 1
        else:   # it read the log after: the round's ts is published already
            assert isinstance(other, Round) and other.tables[0].skipped == f"already published at ts {won[0].ts}", other
    assert taken, "the publishers never raced for a version (each read the log after the other committed)"
    # one history: every version, read from the bucket by delta-rs, is TheFlash's own read at its ts
    root = f"{to}/tables/{T1.id}"
    log = delta_log.replay(root)
    assert [v for v, _, _ in log.history] == list(range(rounds))
    for version, ts, _ in log.history:
        assert delta_rs_rows(root, version, COLUMNS) == own_rows(store, ts), f"version {version}"
    store.close()


# --- an endpoint that does not honour If-None-Match, or fails mid-request ---------------------

class ScriptedS3(ThreadingHTTPServer):
    """A minimal S3 endpoint on loopback (path-style PUT, GET, DELETE of whole objects) whose
    conditional PUT is honoured or ignored (``honours``), and whose next PUTs follow ``script``:
    ``"503"`` (SlowDown, nothing stored), ``"drop"`` (stored, then the connection closed with
    no answer). Every request is recorded as (method, key, If-None-Match)."""

    daemon_threads = True

    def __init__(self, honours: bool) -> None:
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.honours = honours
        self.objects: dict[str, bytes] = {}
        self.script: list[str] = []
        self.requests: list[tuple[str, str, str | None]] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ScriptedHandler(BaseHTTPRequestHandler):
    server: ScriptedS3

    def log_message(self, format: str, *args: Any) -> None:
        pass  # (the scripted server answers quietly: its requests are asserted, not logged)

    def _answer(self, status: int, body: bytes = b"", code: str = "") -> None:
        if code:
            body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{code}</Message></Error>".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.requests.append(("PUT", self.path, self.headers.get("If-None-Match")))
        action = self.server.script.pop(0) if self.server.script else None
        if action == "503":
            return self._answer(503, code="SlowDown")
        if self.server.honours and self.headers.get("If-None-Match") == "*" and self.path in self.server.objects:
            return self._answer(412, code="PreconditionFailed")
        self.server.objects[self.path] = body
        if action == "drop":
            self.close_connection = True
            self.connection.shutdown(2)   # stored, and no answer: the client cannot know
            return
        self._answer(200)

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path, None))
        if self.path in self.server.objects:
            return self._answer(200, self.server.objects[self.path])
        self._answer(404, code="NoSuchKey")

    def do_DELETE(self) -> None:
        self.server.requests.append(("DELETE", self.path, None))
        self.server.objects.pop(self.path, None)
        self._answer(204)


def _scripted(honours: bool, monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedS3]:
    server = ScriptedS3(honours)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name, value in {"AWS_ENDPOINT_URL": server.endpoint, "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
                        "AWS_SECRET_ACCESS_KEY": "secret", "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true",
                        "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(location, "RETRY_FIRST_S", 0.001)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ignoring_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedS3]:
    yield from _scripted(False, monkeypatch)


@pytest.fixture
def honouring_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedS3]:
    yield from _scripted(True, monkeypatch)


def test_a_publisher_refuses_an_s3_endpoint_that_ignores_if_none_match_before_uploading_anything(
        tmp_path: Path, ignoring_s3: ScriptedS3) -> None:
    store = Store.open(tmp_path / "s", options=StoreOptions(row_group_rows=64, part_compression="zstd"))
    store.put_schema(DB, T1.to_json())
    Upstream(store).commit([(h, f"seed{h}") for h in range(100)])
    store.flush()
    with pytest.raises(LakeLocationError, match="ignores If-None-Match on PUT") as refused:
        Publisher(store.root, to="s3://lake/flash").publish()
    assert "\n" not in str(refused.value) and ignoring_s3.endpoint in str(refused.value)
    # the probe only: one new key PUT twice conditionally (the second replaced the first), then deleted
    (put1, put2, gone) = ignoring_s3.requests
    assert put1 == put2 and put1[0] == "PUT" and put1[2] == "*" and put1[1].startswith("/lake/flash/.theflash-put-if")
    assert gone == ("DELETE", put1[1], None)
    assert ignoring_s3.objects == {}, "something was uploaded to an endpoint that cannot keep a version"
    # and so is a bare commit: nothing is checked and then written
    with pytest.raises(LakeLocationError, match="ignores If-None-Match"):
        (lake_dir("s3://lake/flash") / "_delta_log").create("00000000000000000000.json", b"{}\n")
    store.close()


def test_a_commit_whose_answer_was_lost_finds_its_own_bytes_and_never_takes_another_s(
        honouring_s3: ScriptedS3) -> None:
    log_dir: LakeDir = lake_dir("s3://lake/t") / "_delta_log"
    log_dir.require_put_if_absent()
    honouring_s3.requests.clear()
    # stored, the answer lost: the retry meets 412, reads the object back, finds its own bytes
    honouring_s3.script = ["drop"]
    log_dir.create("00000000000000000000.json", b"version 0\n")
    assert [r[0] for r in honouring_s3.requests] == ["PUT", "PUT", "GET"]
    assert honouring_s3.objects["/lake/t/_delta_log/00000000000000000000.json"] == b"version 0\n"
    # a transient refusal, then the key is free: written on the retry
    honouring_s3.requests.clear()
    honouring_s3.script = ["503"]
    log_dir.create("00000000000000000001.json", b"version 1\n")
    assert [r[0] for r in honouring_s3.requests] == ["PUT", "PUT"]
    # a transient refusal, and meanwhile another publisher's version: the retry's 412 is checked
    # against the object, which is not ours: a lost race, nothing written over it
    honouring_s3.objects["/lake/t/_delta_log/00000000000000000002.json"] = b"theirs\n"
    honouring_s3.script = ["503"]
    with pytest.raises(FileExistsError):
        log_dir.create("00000000000000000002.json", b"ours\n")
    assert honouring_s3.objects["/lake/t/_delta_log/00000000000000000002.json"] == b"theirs\n"
    # a plain 412 is a lost race at once: no read, no retry
    honouring_s3.requests.clear()
    with pytest.raises(FileExistsError):
        log_dir.create("00000000000000000000.json", b"again\n")
    assert [r[0] for r in honouring_s3.requests] == ["PUT"]
