"""capture/state_json.py writes capture's state file piece by piece: the text must be exactly
``json.dumps``'s of the same state, so a restart reads it as it read the whole-string form."""
from __future__ import annotations

import json
import random
from pathlib import Path

from pyspark_theflash.capture import state_json
from pyspark_theflash.capture.state_json import Items, write_json


def test_the_text_equals_json_dumps_of_the_plain_state(tmp_path: Path) -> None:
    rng = random.Random(7)
    for n in (0, 1, 5, state_json.CHUNK - 1, state_json.CHUNK, 3 * state_json.CHUNK + 17):
        indexes = {rng.randrange(1 << 40): rng.randrange(1 << 20) for _ in range(n)}
        rows = [[rng.randrange(1 << 30), rng.randbytes(12).hex(), "", rng.randrange(9)] for _ in range(n)]
        plain = {"cluster_id": 7, "position": [1, 24], "indexes": indexes, "empty": {}, "rows": rows,
                 "nested": {"selection": None, "ended": rows[:3], "live": [[1, rows[:2]]]}}

        def lazy() -> dict[str, object]:  # (its items are made once: a generator's)
            return {"cluster_id": 7, "position": [1, 24], "indexes": Items(indexes.items(), pairs=True),
                    "empty": Items(iter(()), pairs=True), "rows": Items(iter(rows)),
                    "nested": {"selection": None, "ended": Items(rows[:3]), "live": Items([[1, rows[:2]]])}}

        assert state_json.dumps(lazy()) == json.dumps(plain)
        write_json(tmp_path / "state.json", lazy())
        assert json.loads((tmp_path / "state.json").read_text()) == json.loads(json.dumps(plain))
        assert not (tmp_path / "state.json.tmp").exists()


def test_the_background_writer_writes_one_state_at_a_time_and_raises_a_failed_write_on_the_loop(
        tmp_path: Path) -> None:
    import threading

    import pytest

    from pyspark_theflash.capture.state_json import BackgroundWriter

    path = tmp_path / "state.json"
    saver = BackgroundWriter(path, "test-state-save")
    release = threading.Event()

    def held() -> object:  # a state whose items wait until released: the write is in flight meanwhile
        release.wait(10)
        yield [1, "a"]

    saver.start({"rows": Items(held())})
    assert saver.busy() and not path.exists()
    release.set()
    saver.start({"rows": Items(iter([[2, "b"]]))})  # waits for the first, then writes the second
    saver.wait()
    assert not saver.busy() and json.loads(path.read_text()) == {"rows": [[2, "b"]]}
    # a write that fails (its directory gone) is raised on the caller's thread, once
    saver.path = tmp_path / "gone" / "state.json"
    saver.start({"rows": []})
    with pytest.raises(FileNotFoundError):
        saver.wait()
    saver.check()
    assert json.loads(path.read_text()) == {"rows": [[2, "b"]]}  # the last good state stays
