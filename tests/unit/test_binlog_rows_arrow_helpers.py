"""binlog/rows.py's NumPy <-> Arrow helpers equal pyarrow's own conversions (they keep pandas
out of capture: tests/integration/test_capture_without_pandas.py)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pyspark_theflash.binlog.rows import arrow_mask, arrow_positions, numpy_mask


def test_the_helpers_equal_pyarrows_conversions() -> None:
    rng = np.random.default_rng(3)
    for n in (0, 1, 7, 8, 9, 100):
        which = rng.integers(0, max(n, 1), n)
        for dtype in (np.int64, np.int32, np.intp):
            assert arrow_positions(which.astype(dtype)).equals(pa.array(which.astype(np.int64)))
        mask = rng.random(n) < 0.5
        assert arrow_mask(mask).equals(pa.array(mask))
        arr = pa.array([None if rng.random() < 0.2 else bool(b) for b in mask], pa.bool_())
        for lo in range(0, min(n, 9)):
            part = arr.slice(lo)
            expected = pc.fill_null(part, False).to_numpy(zero_copy_only=False)
            assert np.array_equal(numpy_mask(part), expected)
