"""Errors of the Delta publication: each names the table, file or ts and says what to do."""
from __future__ import annotations

from pyspark_theflash.errors import TheFlashError


class LakeError(TheFlashError):
    """Base of the publication's errors."""


class LakeSetupError(LakeError):
    """Something the set-up command provides (delta-spark's jars) is missing."""


class PublishTsError(LakeError):
    """The ts asked for cannot be published: not resolved yet, below the GC safe point, or not
    newer than what a table already has."""


class UnmappedTypeError(LakeError):
    """A column whose Arrow type has no Delta type."""


class LakeDamagedError(LakeError):
    """A Delta log file or deletion vector file does not hold what its writer wrote."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        super().__init__(f"{path}: {why}; publish again from the store (theflash delta publish) after moving "
                         "the table's _delta_log aside, or restore the file from a backup")


class LakeLocationError(LakeError):
    """Where the Delta tables should go (``--to``) is not a location pyarrow opens, or cannot be reached."""


class VersionTakenError(LakeError):
    """A version of a table's log exists already (or another writer's conditional PUT of it is
    in flight): another publisher committed it first. Nothing was written over it."""

    def __init__(self, table: str, version: int, path: str) -> None:
        self.table, self.version, self.path = table, version, path
        super().__init__(f"table {table}: version {version} was committed by another publisher first ({path}); "
                         "nothing was written over it. Run one publisher per store (the writer's --delta-to, or "
                         "theflash delta publish, not both); a publisher's next round builds on the log as it is")
