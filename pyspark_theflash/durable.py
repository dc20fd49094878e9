"""Making a new name durable: after a file is created or renamed into a directory, the
directory's own entry must reach the disk too (fsync of the directory), or a power loss can
forget the name while keeping the data. Shared by every box that writes files under names:
the binlog's segments, the Delta publication's log and files."""
from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make the entries of ``directory`` (a name just created or renamed there) durable."""
    fd = os.open(Path(directory), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
