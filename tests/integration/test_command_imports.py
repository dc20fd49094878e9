"""What a command's start loads: the writer's and capture's packages name their big classes
lazily (``lazy_exports``), and the store's layout constants live with its options, so parsing a
command's options, or `capture stop`, does not load the writer's loop, capture proper or the parts
reader. Checked in a child process: this one has the whole package loaded already."""
from __future__ import annotations

import json
import subprocess
import sys

LIGHT = ["pyspark_theflash.writer.options", "pyspark_theflash.writer.errors", "pyspark_theflash.capture.errors",
         "pyspark_theflash.capture.cli", "pyspark_theflash.store.options"]
NOT_LOADED = ["pyspark_theflash.writer.loop", "pyspark_theflash.capture.capture", "pyspark_theflash.store.parts",
              "pyspark_theflash.store.txn_merge_tree", "pyarrow.compute"]


def _loaded_after(code: str) -> list[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps([m for m in {NOT_LOADED!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_option_and_error_modules_load_neither_the_loops_nor_the_parts_reader() -> None:
    assert _loaded_after("\n".join(f"import {m}" for m in LIGHT)) == []


def test_the_packages_still_name_their_classes_when_asked() -> None:
    loaded = _loaded_after("from pyspark_theflash.writer import Writer, WriterOptions\n"
                           "from pyspark_theflash.capture import Capture, CaptureOptions\n"
                           "from pyspark_theflash.store.options import DEFAULT_BATCH_ROWS, PART_COMPRESSION\n"
                           "from pyspark_theflash.store.parts import DEFAULT_BATCH_ROWS as from_parts\n"
                           "assert Writer.__name__ == 'Writer' and Capture.__name__ == 'Capture'\n"
                           "assert from_parts == DEFAULT_BATCH_ROWS and PART_COMPRESSION == 'lz4'")
    assert {"pyspark_theflash.writer.loop", "pyspark_theflash.capture.capture"} <= set(loaded)
