"""The writer's last-error record (writer/last_error.py): a file of fixed size reserved while the
disk has room, so a run that ends on a full disk can still say why. Reserved, it reads as text
saying there is no error (not 4,096 NUL bytes), and readers (`writer status`) take it, or an
older writer's NUL bytes, as no error."""
from __future__ import annotations

import os
from pathlib import Path

from pyspark_theflash.writer import last_error


def test_a_reserved_record_says_no_error_in_text_and_reads_as_none(tmp_path: Path) -> None:
    last_error.reserve(tmp_path)
    data = last_error.path(tmp_path).read_bytes()
    assert len(data) == last_error.RECORD_BYTES and data.startswith(b"no error: ") and b"\0" not in data
    assert os.stat(last_error.path(tmp_path)).st_blocks * 512 >= last_error.RECORD_BYTES  # its blocks exist
    assert last_error.read(tmp_path) is None


def test_an_error_recorded_is_read_back_and_kept_by_the_next_reservation(tmp_path: Path) -> None:
    last_error.reserve(tmp_path)
    error = {"message": "No space left on device: flushing region 7", "kind": "OSError", "at": 1.5}
    last_error.record(tmp_path, error)
    assert last_error.path(tmp_path).stat().st_size == last_error.RECORD_BYTES
    assert last_error.read(tmp_path) == error
    last_error.reserve(tmp_path)  # the next run starts: the last run's error stays until it is replaced
    assert last_error.read(tmp_path) == error


def test_an_older_writers_nul_record_reads_as_no_error_and_is_rewritten_as_text(tmp_path: Path) -> None:
    last_error.path(tmp_path).write_bytes(b"\0" * last_error.RECORD_BYTES)
    assert last_error.read(tmp_path) is None
    last_error.reserve(tmp_path)
    assert last_error.path(tmp_path).read_bytes().startswith(b"no error: ")
    assert last_error.read(tmp_path) is None
