"""Reads that need no live upstream (``snapshot=resolved``) and bounded-staleness reads
(``max_staleness``), with the real mini cluster, writer, store, service and Spark.

* A store whose writer stopped and whose upstream is gone reads every table at its resolved ts,
  through the Python source and through the jar, with the values the upstream had at that ts
  (captured before the upstream went away).
* ``max_staleness``: a fresh ts while the writer keeps up; the resolved ts when the writer lags
  and the resolved ts is recent enough; ``StalenessBoundExceededError`` when it is not.
* A read still missing regions names at most five, counts the others, and says what to do.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from flash_rig import FlashRig, wait_for
from jvm_spark import JvmSpark
from pyspark_theflash.codec.tso import physical_ms
from pyspark_theflash.scan import plan
from pyspark_theflash.scan.errors import RegionWaitTimeoutError, StalenessBoundExceededError
from pyspark_theflash.scan.schema_at import lookup_table
from pyspark_theflash.scan.resolved import table_resolved_ts
from pyspark_theflash.scan.planner import query_snapshot_ts
from pyspark_theflash.service import serve
from pyspark_theflash.store import Store
from pyspark_theflash.upstream.workloads import BankWorkload, TwoTableBankWorkload

TABLES = ("bank.accounts", "bank.checking", "bank.savings")
TWO = ("bank.accounts", "bank.checking")  # a query over two tables, one of them written to


def store_resolved_ts(store: str, tables: tuple[str, ...] = TABLES) -> int:
    """The newest ts every region of every table has resolved in the store."""
    with Store.open(store, readonly=True) as opened, opened.snapshot() as view:
        return min(table_resolved_ts(view, lookup_table(view, t), t).ts for t in tables)


def rows_of(records: list[Any]) -> list[tuple[int, int]]:
    return sorted((int(r["id"]), int(r["balance"])) for r in records)


def jvm_resolved_rows(spark: Any, server: str) -> dict[str, Any]:
    """Every table read with snapshot=resolved: by option on format("theflash"), and in one SQL
    query over the catalog with the session's theflash.snapshot; the ts the plans show."""
    spark.conf.set("theflash.server", server)
    out: dict[str, Any] = {}
    for table in TABLES:
        df = spark.read.format("theflash").option("snapshot", "resolved").load(table)
        out[table] = sorted((int(r["id"]), int(r["balance"])) for r in df.select("id", "balance").collect())
        out[table + " ts"] = re.findall(r"snapshot_ts=(\d+)", df._jdf.queryExecution().executedPlan().toString())
    spark.conf.set("theflash.snapshot", "resolved")
    try:
        sql = spark.sql("SELECT (SELECT sum(balance) FROM theflash.bank.checking) + "
                        "(SELECT sum(balance) FROM theflash.bank.savings)")
        out["sql"] = int(sql.collect()[0][0])
        out["sql ts"] = re.findall(r"snapshot_ts=(\d+)", sql._jdf.queryExecution().executedPlan().toString())
    finally:
        spark.conf.unset("theflash.snapshot")
    return out


@pytest.mark.spark
def test_a_store_whose_writer_stopped_and_upstream_is_gone_reads_every_table_at_its_resolved_ts(
        spark: Any, jvm_spark: JvmSpark, tmp_path: Path) -> None:
    rig = FlashRig(tmp_path)
    try:
        bank = BankWorkload(rig.cluster, accounts=20, seed=3, threads=1, rate=100)
        two = TwoTableBankWorkload(rig.cluster, accounts=10, seed=4, threads=1, rate=100)
        bank.setup()
        two.setup()
        rig.start_writer(interval_s=0.05)
        for table in TABLES:
            rig.wait_replicated(table)
        bank.start()
        two.start()
        wait_for(lambda: bank.stats.committed > 20 and two.stats.committed > 20, 60, "the transfers to commit")
        began = store_resolved_ts(rig.store)
        wait_for(lambda: store_resolved_ts(rig.store) > began, 30, "the store's resolved ts to move")
        rig.stop_writer()  # while the transfers go on: the store keeps what it had resolved
        bank.stop()
        two.stop()
        # each table reads at the newest ts every region *of it* has resolved (its regions may
        # have resolved further than another table's); a query over two tables at the least of theirs
        resolved_at = {t: store_resolved_ts(rig.store, (t,)) for t in TABLES}
        expected = {t: rows_of(rig.cluster.scan_table(t, resolved_at[t])) for t in TABLES}
        pair_ts = min(resolved_at["bank.checking"], resolved_at["bank.savings"])
        assert sum(b for t in ("bank.checking", "bank.savings") for _, b in rows_of(rig.cluster.scan_table(t, pair_ts))) \
            == two.total
        rig.cluster.close()  # the upstream is gone

        python = {t: sorted((int(r["id"]), int(r["balance"])) for r in
                            spark.read.format("theflash").options(**rig.options(snapshot="resolved")).load(t)
                            .select("id", "balance").collect()) for t in TABLES}
        assert python == expected
        with serve(rig.store, port=0) as running:
            got = jvm_spark.call(jvm_resolved_rows, running.http_url)
        assert {t: got[t] for t in TABLES} == expected
        assert all(got[t + " ts"] == [str(resolved_at[t])] for t in TABLES), (got, resolved_at)
        assert got["sql"] == two.total and set(got["sql ts"]) == {str(pair_ts)}, (got, resolved_at)
        # a ts below the resolved one needs no upstream either
        resolved = resolved_at["bank.accounts"]
        with plan(rig.store, "bank.accounts", {"snapshot_ts": str(resolved - 1)}) as at_ts:
            assert at_ts.stats.upstream_calls is False and at_ts.ts == resolved - 1
    finally:
        rig.close()


def test_max_staleness_reads_fresh_while_the_writer_keeps_up_then_resolved_then_refuses_past_the_bound(
        tmp_path: Path) -> None:
    rig = FlashRig(tmp_path)
    try:
        bank = BankWorkload(rig.cluster, accounts=20, seed=5, threads=1, rate=50)
        bank.setup()
        TwoTableBankWorkload(rig.cluster, accounts=5).setup()
        rig.start_writer(interval_s=0.05)
        for table in TWO:
            rig.wait_replicated(table)
        bank.start()
        wait_for(lambda: bank.stats.committed > 10, 60, "the transfers to commit")
        with plan(rig.store, "bank.accounts", {"max_staleness": "5s"}) as fresh:
            assert fresh.stats.snapshot == "fresh" and fresh.stats.upstream_calls
        # the query-wide choice the jar asks for (POST /v1/snapshots) decides the same way
        assert query_snapshot_ts(rig.store, list(TWO), {"max_staleness": "5s"})["snapshot"] == "fresh"
        rig.stop_writer()  # the writer lags from here on; transfers go on upstream
        resolved = store_resolved_ts(rig.store, ("bank.accounts",))
        before = bank.stats.committed
        wait_for(lambda: bank.stats.committed > before + 3, 30, "transfers the store does not have")
        started = time.monotonic()
        with plan(rig.store, "bank.accounts", {"max_staleness": "60s", "region_wait_timeout": "500ms"}) as stale:
            assert stale.stats.snapshot == "resolved" and stale.ts == resolved
            assert sum(int(r["balance"]) for r in rig.cluster.scan_table("bank.accounts", stale.ts)) == bank.total
        assert time.monotonic() - started < 10, "waited for the fresh ts no longer than region_wait_timeout"
        query = query_snapshot_ts(rig.store, list(TWO), {"max_staleness": "60s", "region_wait_timeout": "500ms"})
        assert query == {"ts": store_resolved_ts(rig.store, TWO), "snapshot": "resolved", "tables": list(TWO)}
        wait_for(lambda: physical_ms(int(rig.cluster.get_ts())) - physical_ms(resolved) > 1500, 10,
                 "the resolved ts to be over 1.5s old")
        with pytest.raises(StalenessBoundExceededError) as refused:
            plan(rig.store, "bank.accounts", {"max_staleness": "1s"})
        with pytest.raises(StalenessBoundExceededError):
            query_snapshot_ts(rig.store, list(TWO), {"max_staleness": "1s", "region_wait_timeout": "300ms"})
        message = str(refused.value)
        assert f"max_staleness=1s" in message and str(resolved) in message, message
        assert "raise max_staleness, or read snapshot=resolved" in message, message
        bank.stop()
    finally:
        rig.close()


def test_a_read_missing_regions_names_five_counts_the_others_and_says_what_to_do(tmp_path: Path) -> None:
    from pyspark_theflash.codec import encode_record_key

    rig = FlashRig(tmp_path)
    try:
        bank = BankWorkload(rig.cluster, accounts=80, seed=6, threads=1, rate=100)
        bank.setup()
        table_id = rig.cluster.table_info("bank", "accounts")["id"]
        for handle in range(10, 80, 10):
            rig.cluster.split_at(bytes(encode_record_key(table_id, handle)))
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated("bank.accounts")
        wait_for(lambda: len(opened_regions(rig.store)) >= 8, 30, "the store to hold the split regions")
        rig.stop_writer()
        bank.start()  # every region gets writes the stopped writer never applies
        wait_for(lambda: bank.stats.committed > 60, 60, "transfers over every region")
        bank.stop()
        with pytest.raises(RegionWaitTimeoutError) as lagging:
            plan(rig.store, "bank.accounts", {"region_wait_timeout": "300ms"})
        message = str(lagging.value)
        named = re.findall(r"region \d+: ", message)
        assert len(lagging.value.lagging) > 5 and len(named) == 5, message
        assert f"and {len(lagging.value.lagging) - 5} other region(s)" in message, message
        for advice in ("region_wait_timeout", "snapshot=resolved", "theflash writer status"):
            assert advice in message, message
    finally:
        rig.close()


def test_a_read_waiting_on_a_key_range_no_region_holds_names_the_key_where_coverage_stops(tmp_path: Path) -> None:
    """A snapshot of a newer region over part of a region's range retires the region whole in the
    store; until its remainder's own snapshot comes no region holds it. A read timing out there
    names the key where the store's regions stop, before the regions that are only behind."""
    from store_events import boundary, region, snapshot_event

    rig = FlashRig(tmp_path)
    try:
        table_id = stopped_with_two_halves(rig)
        newer = region(9999, boundary(table_id, 20), boundary(table_id, 40), version=10_000)
        with Store.open(rig.store) as store:
            store.write([snapshot_event(9999, 1, newer)])
            store.flush()
        with pytest.raises(RegionWaitTimeoutError) as missing:
            plan(rig.store, "bank.accounts", {"region_wait_timeout": "300ms"})
        gap, message = missing.value.gap, str(missing.value)
        assert gap is not None and boundary(table_id) <= gap < boundary(table_id, 20), message
        assert message.index(f"no region of the store holds yet from key {gap.hex()}") < message.index("region 9999"), message
    finally:
        rig.close()


def stopped_with_two_halves(rig: FlashRig) -> int:
    """``bank.accounts`` (80 accounts) split at handle 40, both halves in the store with a
    resolved ts, then the writer stopped; returns the table's id."""
    from pyspark_theflash.codec import encode_record_key

    BankWorkload(rig.cluster, accounts=80, seed=6, threads=1, rate=100).setup()
    table_id = rig.cluster.table_info("bank", "accounts")["id"]
    rig.cluster.split_at(bytes(encode_record_key(table_id, 40)))
    # resolved past the split, not merely resolved: a half's first resolved ts can be from before
    # the table's CREATE (its region was followed from the rig's start), and the upstream has no
    # table to read at such a ts (a full run saw "no table bank.accounts at ts ...")
    split_done = rig.cluster.get_ts()
    rig.start_writer(interval_s=0.05)
    rig.wait_replicated("bank.accounts")
    wait_for(lambda: len(opened_regions(rig.store)) >= 2
             and store_resolved_ts(rig.store, ("bank.accounts",)) > split_done,
             30, "the store to hold both halves, resolved past the split")
    rig.stop_writer()
    return table_id


def opened_regions(store: str) -> list[Any]:
    with Store.open(store, readonly=True) as opened, opened.snapshot() as view:
        table = lookup_table(view, "bank.accounts")
        return list(table_resolved_ts(view, table, "bank.accounts").regions) if table is not None else []


# -- max_staleness through Spark: the Python source's option, the jar's option and session conf --
MARKS = "marks.m"


def jvm_staleness_reads(spark: Any, server: str, bound: str, wait: str | None) -> dict[str, Any]:
    """``marks.m`` read through the jar with ``max_staleness=bound``: by option on format("theflash")
    and by the session conf theflash.max_staleness; the ids each read saw and the ts its plan
    shows, or the error's message."""
    spark.conf.set("theflash.server", server)
    out: dict[str, Any] = {}

    def attempt(name: str, df_of: Any) -> None:
        try:
            df = df_of()
            out[name] = sorted(int(r["id"]) for r in df.select("id").collect())
            out[name + " ts"] = sorted({int(t) for t in re.findall(
                r"snapshot_ts=(\d+)", df._jdf.queryExecution().executedPlan().toString())})
        except Exception as exc:  # the read's error, as a user sees it
            out[name] = "error: " + str(exc)

    def reader() -> Any:
        r = spark.read.format("theflash")
        return r.option("region_wait_timeout", wait) if wait else r

    attempt("option", lambda: reader().option("max_staleness", bound).load(MARKS))
    spark.conf.set("theflash.max_staleness", bound)
    try:
        attempt("session conf", lambda: reader().load(MARKS))
    finally:
        spark.conf.unset("theflash.max_staleness")
    return out


@pytest.mark.spark
def test_max_staleness_through_spark_reads_fresh_then_resolved_then_refuses_with_the_python_source_and_the_jar(
        spark: Any, jvm_spark: JvmSpark, tmp_path: Path) -> None:
    from pyspark_theflash.upstream.tidb import make_column

    rig = FlashRig(tmp_path)
    try:
        rig.cluster.create_table(MARKS, [make_column("id", "BIGINT", not_null=True)], primary_key=["id"])

        def mark(n: int) -> int:
            with rig.cluster.txn() as t:
                t.insert(MARKS, {"id": n})
            return int(rig.cluster.get_ts())

        def python_read(**options: str) -> list[int]:
            df = spark.read.format("theflash").options(**rig.options(**options)).load(MARKS)
            return sorted(int(r["id"]) for r in df.collect())

        mark(1)
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated(MARKS)
        with serve(rig.store, port=0) as running:
            # 1. the writer keeps up: a fresh ts, which sees the row committed just before the read
            committed = mark(2)
            assert python_read(max_staleness="5s") == [1, 2]
            committed = mark(3)
            fresh = jvm_spark.call(jvm_staleness_reads, running.http_url, "5s", None)
            assert fresh["option"] == [1, 2, 3] and fresh["session conf"] == [1, 2, 3], fresh
            assert fresh["option ts"][0] > committed and fresh["session conf ts"][0] > committed, fresh

            # 2. the writer stops, the upstream goes on: the resolved ts, no older than the bound
            rig.stop_writer()
            resolved = store_resolved_ts(rig.store, (MARKS,))
            mark(4)  # upstream only: a fresh ts can no longer be served
            assert python_read(max_staleness="60s", region_wait_timeout="500ms") == [1, 2, 3]
            stale = jvm_spark.call(jvm_staleness_reads, running.http_url, "60s", "500ms")
            assert stale["option"] == [1, 2, 3] and stale["session conf"] == [1, 2, 3], stale
            assert stale["option ts"] == [resolved] and stale["session conf ts"] == [resolved], (resolved, stale)
            assert sorted(int(r["id"]) for r in rig.cluster.scan_table(MARKS, resolved)) == [1, 2, 3]

            # 3. the resolved ts is older than the bound: a clear error, no rows
            wait_for(lambda: physical_ms(int(rig.cluster.get_ts())) - physical_ms(resolved) > 1500, 10,
                     "the resolved ts to be over 1.5s old")
            with pytest.raises(Exception) as refused:
                python_read(max_staleness="1s", region_wait_timeout="300ms")
            message = str(refused.value)
            assert "max_staleness=1s" in message and "raise max_staleness, or read snapshot=resolved" in message, \
                message[-2000:]
            too_old = jvm_spark.call(jvm_staleness_reads, running.http_url, "1s", "300ms")
            for way in ("option", "session conf"):
                assert isinstance(too_old[way], str) and too_old[way].startswith("error: "), too_old
                assert "max_staleness=1s" in too_old[way] and "snapshot=resolved" in too_old[way], too_old[way][-2000:]
    finally:
        rig.close()


def test_a_lock_prewritten_after_the_resolved_ts_passed_its_start_ts_does_not_hold_a_read_from_the_store(
        tmp_path: Path) -> None:
    """TiKV's resolved ts promises that nothing commits at or below it; a transaction that
    started below it may still prewrite after it (and commit above it). A read at a ts the store
    has resolved, served from the store alone, reads past such a lock instead of refusing."""
    from pyspark_theflash.scan.context import locks_of
    from pyspark_theflash.upstream.tidb import Abandoned, make_column

    rig = FlashRig(tmp_path)
    try:
        c = rig.cluster
        c.create_table("late.t", [make_column("id", "BIGINT", not_null=True), make_column("v", "INT")],
                       primary_key=["id"])
        with c.txn() as t:
            t.insert("late.t", {"id": 1, "v": 1})
        rig.start_writer(interval_s=0.05)
        rig.wait_replicated("late.t")

        def die(*_: Any) -> None:
            raise Abandoned()

        late = c.txn(ttl_ms=120_000, after_prewrite=die)  # alive for the whole test: nobody rolls it back
        late.update("late.t", {"id": 1, "v": 2})
        wait_for(lambda: store_resolved_ts(rig.store, ("late.t",)) > late.start_ts, 30,
                 "the store to resolve past the transaction's start ts")
        with pytest.raises(Abandoned):
            late.commit()  # its lock (start ts below the store's resolved ts) reaches the store

        def lock_stored() -> bool:
            with Store.open(rig.store, readonly=True) as s, s.snapshot() as view:
                info = lookup_table(view, "late.t")
                return any(int(lk.start_ts) == late.start_ts for lk in locks_of(view, [int(info.id)]))

        wait_for(lock_stored, 30, "the writer to apply the prewrite")
        ts = store_resolved_ts(rig.store, ("late.t",))
        assert ts > late.start_ts
        got = rig.read_at(rig.store, "late.t", ts)
        assert got.select(["id", "v"]).to_pylist() == [{"id": 1, "v": 1}]
    finally:
        rig.close()


def split_in_flight(tmp_path: Path) -> tuple[FlashRig, int, int, list[tuple[int, int]], Any]:
    """A store whose writer stopped at resolved ts R over ``bank.accounts`` (two regions, split
    at handle 40), then met what a writer applying a split meets: the snapshot of a newer region
    over handles [20, 40) retired the region over [.., 40) whole, so no region holds handles
    below 20 until the next region's snapshot. Returns (rig, table id, R, the rows at R, a
    function that applies that next snapshot, bringing handles below 20 back at R)."""
    from store_events import boundary

    rig = FlashRig(tmp_path)
    try:
        table_id = stopped_with_two_halves(rig)
        at = store_resolved_ts(rig.store, ("bank.accounts",))
        expected = rows_of(rig.cluster.scan_table("bank.accounts", at))
        apply_incremental_snapshot(rig.store, 9999, boundary(table_id, 20), boundary(table_id, 40), at)
    except BaseException:
        rig.close()
        raise
    return rig, table_id, at, expected, lambda: apply_incremental_snapshot(
        rig.store, 9998, boundary(table_id), boundary(table_id, 20), at)


def apply_incremental_snapshot(store_path: str, region_id: int, start: bytes, end: bytes, at: int) -> None:
    """Region ``region_id`` over [start, end) introduced by an incremental snapshot from ``at``
    (the replica holds every version at or below it: nothing is replaced), resolved at ``at``."""
    from store_events import region, resolved_ts, snapshot_event

    ev = snapshot_event(region_id, 1, region(region_id, start, end, version=10_000))
    ev.snapshot.since_ts = at
    with Store.open(store_path) as store:
        store.write([ev, resolved_ts(region_id, 2, at)])
        store.flush()


def resolved_rows(store: str, options: dict[str, str]) -> tuple[int, list[tuple[int, int]]]:
    import pyarrow as pa

    from pyspark_theflash.scan.session import open_read_session, read_stream

    with open_read_session(store, "bank.accounts", options=options) as session:
        table = pa.Table.from_batches([b for n in range(len(session.streams)) for b in read_stream(session, n)],
                                      schema=session.schema)
        return session.ts, rows_of(table.to_pylist())


def test_a_resolved_read_waits_out_a_split_in_flight_while_a_writer_holds_the_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gap in the store's regions is a split or merge in flight while a writer applies the
    store, and a read from the store alone waits for it (bounded by region_wait_timeout); in a
    stopped store, or a copy, nothing will close it and the read names it at once."""
    import threading

    from pyspark_theflash.latch import connect as connect_latch
    from pyspark_theflash.scan import planner
    from pyspark_theflash.scan.errors import MissingRegionsError

    asked = threading.Event()  # the read met the gap and asks whether a writer applies the store

    def writer_live_on(store: str, latch_address: Any = None) -> Any:
        live = real_writer_live_on(store, latch_address)

        def asking() -> bool:
            answer = live()
            asked.set()
            return answer
        return asking

    real_writer_live_on = planner.writer_live_on
    monkeypatch.setattr(planner, "writer_live_on", writer_live_on)
    rig, _, at, expected, close_the_gap = split_in_flight(tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(MissingRegionsError, match=r"handles \[-inf, 20\) of bank.accounts"):
            resolved_rows(rig.store, {"snapshot": "resolved", "region_wait_timeout": "20s"})
        assert time.monotonic() - started < 10, "a stopped store's gap is named at once, not waited for"

        latch = connect_latch(rig.store)
        holder = latch.acquire_write_latch("a writer applying the split")  # a live writer, as the read sees one
        try:
            asked.clear()
            closer = threading.Thread(target=lambda: asked.wait(20) and close_the_gap())
            closer.start()
            ts, rows = resolved_rows(rig.store, {"snapshot": "resolved", "region_wait_timeout": "20s"})
            closer.join()
            assert asked.is_set(), "the read met the gap and waited for it"
        finally:
            latch.release(holder.token)
            latch.close()
        assert (ts, rows) == (at, expected)
    finally:
        rig.close()


def test_a_store_alone_learner_read_waits_for_its_regions_to_cover_the_table_again(tmp_path: Path) -> None:
    """The race a pinned read meets: the store had resolved the ts when the read chose to serve
    it alone, and the learner's next view of the store has a gap (the writer retired a stale
    region a moment before the snapshot of the region holding the rest). The learner waits for
    the store to cover the table again instead of handing the read a view it cannot serve."""
    import threading

    from pyspark_theflash.scan.learner import LearnerRead, _first_gap
    from pyspark_theflash.scan.context import covering_physical, table_key_range

    rig, table_id, at, _, close_the_gap = split_in_flight(tmp_path)
    try:
        with Store.open(rig.store, readonly=True) as store:
            views = []

            def snapshot() -> Any:
                views.append(store.snapshot())
                return views[-1]

            learner = LearnerRead(snapshot=snapshot, covering=lambda v: covering_physical(v, [table_id]),
                                  upstream=None, latch=None, ts=at, table="bank.accounts",
                                  key_range=table_key_range(table_id))
            with store.snapshot() as view:
                assert _first_gap(learner.regions_over_range(view), *learner.key_range) is not None
            def close_once_seen() -> None:  # the learner saw the gap and looks again
                wait_for(lambda: len(views) >= 2, 20, "the learner to look at the store again")
                close_the_gap()

            closer = threading.Thread(target=close_once_seen)
            closer.start()
            view = learner.run(time.monotonic() + 20, 20)
            closer.join()
            assert len(views) >= 3, "the learner waited for the gap to close"
            try:
                assert _first_gap(learner.regions_over_range(view), *learner.key_range) is None
                assert min(int(r.resolved_ts) for r in learner.regions_over_range(view)) >= at
            finally:
                view.close()
    finally:
        rig.close()
