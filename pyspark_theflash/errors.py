"""The root of TheFlash's error types. Each box defines its own subclasses next to its code;
messages say what failed, where (region, ts, file, offset) and what the user can do."""
from __future__ import annotations


class TheFlashError(Exception):
    """Base class of every error TheFlash raises on purpose."""
