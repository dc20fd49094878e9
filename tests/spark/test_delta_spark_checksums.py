"""delta-spark checks the version checksums (``_delta_log/<v>.crc``) the publisher writes against
its own state reconstruction, and finds each right, through deletion vectors and compactions; one
made wrong by hand fails loudly (``spark.databricks.delta.checksum.mismatch.fatal``), so a wrong
checksum from the publisher would fail every Delta test that reads through delta-spark
(tests/support/delta_readers.py: ``delta_spark_checksums``; the bank and DDL differentials run it
on each version they read, locally and on S3)."""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from delta_readers import delta_spark_checksums
from items_upstream import T1, Upstream
from jvm_spark import RemoteError
from pyspark_theflash.lake.checksum import checksum_name
from pyspark_theflash.lake.publish import Publisher, table_root
from pyspark_theflash.store import Store, StoreOptions
from store_events import DB

pytestmark = pytest.mark.spark


def test_delta_spark_finds_every_checksum_right_and_a_wrong_one_fails_loudly(tmp_path: Path, delta_spark: Any) -> None:
    rng = random.Random(3)
    store = Store.open(tmp_path / "s", options=StoreOptions(row_group_rows=64))
    store.put_schema(DB, T1.to_json())
    up = Upstream(store)
    up.commit([(h, f"seed{h}") for h in range(1_000)])
    store.flush()
    publisher = Publisher(store.root, checkpoint_interval=3)
    for n in range(5):
        up.commit([(h, None if rng.random() < 0.3 else f"r{n}") for h in rng.sample(range(1_200), 300)])
        store.flush()
        if n == 2:
            store.compact(force=True)
        assert publisher.publish().tables[0].version == n
    store.close()
    root = table_root(tmp_path / "s", T1.id)
    assert delta_spark.call(delta_spark_checksums, [(str(root), v) for v in range(5)]) == []
    # one byte of arithmetic off: a copy of the table whose version 4 says one file more
    wrong = tmp_path / "wrong"
    shutil.copytree(root, wrong, symlinks=True)
    crc = wrong / "_delta_log" / checksum_name(4)
    checksum = json.loads(crc.read_text())
    checksum["numFiles"] += 1
    crc.write_text(json.dumps(checksum))
    with pytest.raises(RemoteError) as failed:
        delta_spark.call(delta_spark_checksums, [(str(wrong), 4)])
    assert "Number of files" in failed.value.message, failed.value.message
