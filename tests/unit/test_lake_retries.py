"""A whole file written to an object store is written again after a transient error of the
store (INTERNAL_FAILURE, SLOW_DOWN, ...: ``lake.location.TRANSIENT``), up to
``WRITE_ATTEMPTS``; any other error fails at once. The store is a local directory behind a
``pyarrow.fs`` handler that answers the first uploads as SeaweedFS did under load."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from pyspark_theflash.lake import location
from pyspark_theflash.lake.errors import LakeLocationError
from pyspark_theflash.lake.location import LakeDir

INTERNAL = ("When uploading part for key 'x': AWS Error INTERNAL_FAILURE during UploadPart operation: We encountered "
            "an internal error, please try again.")
DENIED = "When uploading part for key 'x': AWS Error ACCESS_DENIED during UploadPart operation: Access Denied"


class _FailingUpload:
    """A file-like object whose close (the upload) fails with ``message``, after writing to
    ``inner``."""

    def __init__(self, inner: Any, message: str) -> None:
        self.inner, self.message, self.closed = inner, message, False

    def write(self, data: bytes) -> int:
        return int(self.inner.write(data))

    def flush(self) -> None:
        self.inner.flush()

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.inner.close()
            raise OSError(self.message)


class FlakyStore(pafs.FileSystemHandler):
    """The local directory ``root`` whose first ``failures`` uploads fail with ``message``."""

    def __init__(self, root: Path, failures: int, message: str) -> None:
        self.root = root
        self.local = pafs.LocalFileSystem()
        self.failures, self.message, self.uploads = failures, message, 0

    def open_output_stream(self, path: str, metadata: Any) -> Any:
        self.uploads += 1
        Path(path).parent.mkdir(parents=True, exist_ok=True)  # (an object store has no directories to make)
        stream = self.local.open_output_stream(path)
        if self.uploads <= self.failures:
            return pa.PythonFile(_FailingUpload(stream, self.message), mode="w")
        return stream

    def get_type_name(self) -> str:
        return "flaky-s3"

    def get_file_info(self, paths: list[str]) -> Any:
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector: Any) -> Any:
        return self.local.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.local.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        self.local.delete_dir_contents(str(self.root))

    def delete_file(self, path: str) -> None:
        self.local.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.local.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.local.copy_file(src, dest)

    def open_input_stream(self, path: str) -> Any:
        return self.local.open_input_stream(path)

    def open_input_file(self, path: str) -> Any:
        return self.local.open_input_file(path)

    def open_append_stream(self, path: str, metadata: Any) -> Any:
        return self.local.open_append_stream(path)

    def normalize_path(self, path: str) -> str:
        return path


def flaky(tmp_path: Path, failures: int, message: str) -> tuple[LakeDir, FlakyStore]:
    handler = FlakyStore(tmp_path, failures, message)
    return LakeDir(pafs.PyFileSystem(handler), str(tmp_path), f"s3://bucket{tmp_path}"), handler


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(location, "RETRY_FIRST_S", 0.001)


def test_a_file_is_written_again_after_transient_failures(tmp_path: Path) -> None:
    lake, store = flaky(tmp_path, location.WRITE_ATTEMPTS - 1, INTERNAL)
    lake.write("part.parquet", b"the same bytes")
    assert store.uploads == location.WRITE_ATTEMPTS
    assert (tmp_path / "part.parquet").read_bytes() == b"the same bytes"


def test_a_version_is_never_checked_then_written_on_a_file_system_without_put_if_absent(tmp_path: Path) -> None:
    # S3's conditional PUT (lake.s3_put) and a local link are the only put-if-absent TheFlash
    # has: on any other file system a log entry is refused, not written after a check
    lake, store = flaky(tmp_path, 0, INTERNAL)
    with pytest.raises(LakeLocationError, match="never be overwritten.*flaky-s3"):
        lake.create("_delta_log/00000000000000000000.json", b"{}")
    with pytest.raises(LakeLocationError):
        lake.require_put_if_absent()
    assert store.uploads == 0 and not (tmp_path / "_delta_log").exists()


def test_the_last_attempts_error_is_raised_and_another_error_at_once(tmp_path: Path) -> None:
    lake, store = flaky(tmp_path, location.WRITE_ATTEMPTS, INTERNAL)
    with pytest.raises(OSError, match="INTERNAL_FAILURE"):
        lake.write("part.parquet", b"x")
    assert store.uploads == location.WRITE_ATTEMPTS
    lake, store = flaky(tmp_path, 1, DENIED)
    with pytest.raises(OSError, match="ACCESS_DENIED"):
        lake.write("part.parquet", b"x")
    assert store.uploads == 1
