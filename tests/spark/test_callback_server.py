"""py4j's callback server (foreachBatch, streaming query listeners) works however many
descriptors the driver's process opens after ``theflash_session()`` (issue 49): its accept
loop uses ``select()``, which cannot watch a descriptor >= 1024, and a server started on first
use in a process holding that many left ``foreachBatch`` waiting forever. ``theflash_session``
starts it with the session (``spark/callback_server.py``). In a fresh process, so that the
descriptors it opens stay there."""
from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, os, sys
from pyspark_theflash.spark import theflash_session
spark = theflash_session(master="local[2]", jvm=False, ui=False)
held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # a busy driver: files, sockets, channels
batches = []
query = (spark.readStream.format("rate").option("rowsPerSecond", 10).load()
         .writeStream.foreachBatch(lambda df, batch_id: batches.append(batch_id)).trigger(once=True).start())
done = query.awaitTermination(120)
print(json.dumps({"descriptors": max(held), "terminated": done, "batches": batches}), flush=True)
os._exit(0)  # without stopping a hung query: its stream thread would keep this process alive
"""


def test_foreach_batch_calls_back_after_the_driver_opens_over_1024_descriptors() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["descriptors"] >= 1024
    assert result["terminated"] and result["batches"] == [0], result
