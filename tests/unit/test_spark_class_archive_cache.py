"""The machine's class archive cache (tests/support/spark_class_archive.py) keeps the archives
used last: a test run's use of a checkout's archive counts, not only the set-up that linked it
(a clean clone's set-up once evicted the working checkout's archive, which it still linked)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import spark_class_archive


def test_using_the_linked_archive_marks_it_used_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = tmp_path / "cache" / "0123.jsa"
    cached.parent.mkdir()
    cached.write_bytes(b"archive")
    cached.chmod(0o444)  # as the cache keeps them
    os.utime(cached, (1_000_000, 1_000_000))
    link = tmp_path / "venv" / "share" / "theflash" / "spark-classes.jsa"
    link.parent.mkdir(parents=True)
    link.symlink_to(cached)
    monkeypatch.setattr(spark_class_archive, "ARCHIVE", link)
    assert spark_class_archive.installed() == cached.resolve()
    assert cached.stat().st_mtime > 1_000_000 + 86_400 * 365 * 50


def test_a_dangling_link_is_no_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    link = tmp_path / "spark-classes.jsa"
    link.symlink_to(tmp_path / "evicted.jsa")
    monkeypatch.setattr(spark_class_archive, "ARCHIVE", link)
    assert spark_class_archive.installed() is None
