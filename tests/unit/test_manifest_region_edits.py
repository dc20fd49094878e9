"""Region rows in manifest edits: whole rows, and regions whose resolved ts alone moved, written
as one UPDATE per ts (a resolved ts lists every region; 10,000 whole rows a flush were the
writer's cost at 10,000 regions). Edits combined in order must leave each region as the last
edit that spoke of it says, whichever form each used; and a store whose flushes take the short
form reads back exactly the regions it applied."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pyspark_theflash.store import manifest as mf


def _row(rid: int, applied: int, resolved: int, state: str = "normal") -> tuple[Any, ...]:
    return (rid, b"a%d" % rid, b"a%d" % (rid + 1), 1, 1, applied, resolved, state, 0, 0)


def _regions(conn: Any) -> dict[int, tuple[int, int, str]]:
    return {int(r[0]): (int(r[1]), int(r[2]), str(r[3]))
            for r in conn.execute("SELECT region_id, applied_index, resolved_ts, state FROM regions")}


# an edit: whole rows (region, applied index, resolved ts) and resolved ts updates (region, ts)
edits = st.lists(st.tuples(st.lists(st.tuples(st.integers(1, 6), st.integers(0, 50), st.integers(0, 99)), max_size=4),
                           st.lists(st.tuples(st.integers(1, 6), st.integers(0, 99)), max_size=4)),
                 min_size=1, max_size=5)


@settings(max_examples=150, deadline=None)
@given(edits, st.booleans())
def test_combined_edits_leave_each_region_as_the_last_edit_that_spoke_of_it(
        tmp_path_factory: Any, steps: list[tuple[list[tuple[int, int, int]], list[tuple[int, int]]]],
        combine: bool) -> None:
    root = tmp_path_factory.mktemp("m")
    conn = mf.connect(root, create=True)
    try:
        mf.initialise(conn)
        base = [_row(r, 0, 0) for r in range(1, 7)]
        mf.apply_edit(conn, mf.ManifestEdit(regions=base))
        want = {r: (0, 0, "normal") for r in range(1, 7)}
        made = []
        for rows, resolved in steps:
            whole = [_row(r, applied, ts) for r, applied, ts in rows]
            made.append(mf.ManifestEdit(regions=whole, resolved=resolved))
            for r, applied, ts in rows:
                want[r] = (applied, ts, "normal")
            for r, ts in resolved:  # (within one edit the whole rows come first, as written)
                want[r] = (want[r][0], ts, "normal")
        if combine:  # each edit's whole rows first, then the updates a later whole row leaves
            mf.apply_edit(conn, mf.ManifestEdit.combined(made))
        else:
            for e in made:
                mf.apply_edit(conn, e)
        assert _regions(conn) == want
    finally:
        conn.close()


def test_an_update_before_a_later_whole_row_of_the_region_is_the_rows_to_say(tmp_path: Path) -> None:
    conn = mf.connect(tmp_path, create=True)
    try:
        mf.initialise(conn)
        mf.apply_edit(conn, mf.ManifestEdit(regions=[_row(1, 0, 0), _row(2, 0, 0)]))
        first = mf.ManifestEdit(resolved=[(1, 50), (2, 50)])
        # a merge lowered region 1's resolved ts in a later batch: its whole row says 30
        second = mf.ManifestEdit(regions=[_row(1, 7, 30)], resolved=[(2, 60)])
        mf.apply_edit(conn, mf.ManifestEdit.combined([first, second]))
        assert _regions(conn) == {1: (7, 30, "normal"), 2: (0, 60, "normal")}
    finally:
        conn.close()
