"""Live rows made binlog entries events as capture releases them (``Capture._release``).

Rows wait in capture's FIFO until the DDL frontier passes their commits; by then a newer
region may speak for some of their keys (a split or merge whose snapshot was written first:
its snapshot holds those versions and locks), a table may have left the selection, or the
registration may have been discarded. What is kept is written as it came, the C match's
bytes untouched where nothing is left out: one event of one region (``columns_event``), or
one event of many regions' runs (``runs_event``, binlog/region_runs.py). Each kept region's
coverage is told of the versions written, and its next binlog index is taken.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from pyspark_theflash.binlog import region_runs
from pyspark_theflash.binlog import rows as binlog_rows
from pyspark_theflash.capture import feed_columns
from pyspark_theflash.capture.captured_tables import CapturedTables
from pyspark_theflash.capture.range_claims import Claim, RangeClaims
from pyspark_theflash.capture.region_feed import RegionFeed
from pyspark_theflash.capture.region_table import RegionTable
from pyspark_theflash.proto import binlog_pb2

# a registration's coverage is raised to its resolved ts once this many live batches wait in it
# (capture/coverage.py): not at every resolved ts, which lists every region
COVERAGE_RAISE_PENDING = 64


def rows_where(cols: feed_columns.RowBatchColumns, keep: np.ndarray) -> feed_columns.RowBatchColumns:
    """The rows of ``cols`` (pack_columns keywords) where ``keep`` is true."""
    idx = binlog_rows.arrow_positions(np.flatnonzero(keep))
    return {"types": cols["types"][keep], "ops": cols["ops"][keep], "start_ts": cols["start_ts"][keep],
            "commit_ts": cols["commit_ts"][keep], "keys": cols["keys"].take(idx), "values": cols["values"].take(idx)}



class LiveEvents:
    """Builds the entries events of released live rows against capture's registrations
    (``table``: their binlog indexes), the tables followed and the range claims."""

    def __init__(self, table: RegionTable, tables: CapturedTables, claims: RangeClaims) -> None:
        self.table, self.tables, self.claims = table, tables, claims

    def columns_event(self, feed: RegionFeed, rows: feed_columns.LiveBatch) -> list[binlog_pb2.Event]:
        """Live rows (``take_columns``) as one entries event: the C match's bytes as they are,
        or, where a newer region or the table selection leaves rows out, the rows kept."""
        if feed.discarded:
            return []
        cols: feed_columns.RowBatchColumns | None = None  # the rows kept, where some are left out
        newer = self.claims.newer(feed.id, feed.start, feed.end, feed.version)
        if newer:  # keys a newer region holds now: its snapshot has these versions and locks
            keep = np.array([not RangeClaims.covers_key(newer, k) for k in rows.keys.to_pylist()], bool)
            if not keep.any():
                return []
            cols = rows_where(rows.columns(), keep)
        if self.tables.filters:  # a table may have left the selection while the rows waited
            keys = cols["keys"] if cols is not None else rows.keys
            keep = self.tables.captured(feed_columns.record_table_ids(keys))
            if not keep.any():
                return []
            if not keep.all():
                cols = rows_where(cols if cols is not None else rows.columns(), keep)
        # filled in place: a sub-message given to a constructor is copied
        event = binlog_pb2.Event(region_id=feed.id, index=self.table.next_index(feed.id), epoch=feed.epoch())
        if cols is None:
            if feed.coverage is not None:  # versions only: a row without a commit ts is never above a floor
                feed.coverage.add_batch(rows)
            rows.fill(event.entries.batch)
        else:
            if feed.coverage is not None:
                feed.coverage.add_columns(cols["keys"], cols["commit_ts"])
            binlog_rows.pack_columns(**cols, out=event.entries.batch)
        if feed.coverage is not None and feed.coverage.pending() >= COVERAGE_RAISE_PENDING:
            feed.current_coverage()  # its batches at or below the resolved ts written are let go
        return [event]

    def runs_event(self, slots: list[RegionFeed], runs: feed_columns.LiveRuns) -> list[binlog_pb2.Event]:
        """Many registrations' live rows of one message (capture's ``_on_live_message``) as one entries
        event of many regions (binlog/region_runs.py), built when released: each region's rows
        kept by ``columns_event``'s rules (none of a discarded registration; not those a newer
        region holds now; only the selection's tables), its coverage told, its next index taken.
        One region's rows: a plain event of that region."""
        rows = runs.rows
        counts = runs.counts
        ends = np.cumsum(counts)
        keep: np.ndarray | None = None  # per row, where some are left out
        # (one pass of plain Python over the message's regions: a few attribute reads each)
        changes = self.claims.changes
        for slot, feed, n, end in zip(range(len(slots)), slots, counts.tolist(), ends.tolist()):
            if not n or (not feed.discarded and feed.claims_seen == changes and not feed.newer):
                continue
            lo = end - n
            newer = self._newer_claims(feed)
            if feed.discarded or newer:
                if keep is None:
                    keep = np.ones(rows.count, dtype=bool)
                if feed.discarded:
                    keep[lo:lo + n] = False
                else:  # keys a newer region holds now: its snapshot has these versions and locks
                    keys = rows.keys.slice(lo, n).to_pylist()
                    keep[lo:lo + n] = [not RangeClaims.covers_key(newer, k) for k in keys]
        if self.tables.filters:  # a table may have left the selection while the rows waited
            captured = self.tables.captured(feed_columns.record_table_ids(rows.keys))
            keep = captured if keep is None else keep & captured
        if keep is not None and keep.all():
            keep = None
        if keep is None:
            kept = counts
        else:
            if not keep.any():
                return []
            upto = np.concatenate(([0], np.cumsum(keep, dtype=np.int64)))
            kept = upto[ends] - upto[ends - counts]
        at = np.flatnonzero(kept)
        ids, epochs, confs = [], [], []
        row_lo = (ends - counts).tolist()
        counts_l, newest = counts.tolist(), runs.newest.tolist()
        for slot in at.tolist():
            feed = slots[slot]
            coverage = feed.coverage
            if coverage is not None:  # versions only: a row without a commit ts is never above a floor
                lo, n = row_lo[slot], counts_l[slot]
                if keep is None:
                    coverage.add_batch(rows, lo, n, newest[slot])
                else:
                    which = np.flatnonzero(keep[lo:lo + n]) + lo
                    coverage.add_columns(rows.keys.take(binlog_rows.arrow_positions(which)),
                                         rows.commit_ts[which])
                if coverage.pending() >= COVERAGE_RAISE_PENDING:
                    feed.current_coverage()  # its batches at or below the resolved ts written are let go
            ids.append(feed.id)
            epochs.append(feed.version)
            confs.append(feed.conf_ver)
        indexes = self.table.next_indexes(ids)  # (each region's next, taken at once)
        event = binlog_pb2.Event()
        if keep is None:
            rows.fill(event.entries.batch)
        else:
            cols = rows_where(rows.columns(), keep)
            binlog_rows.pack_columns(**cols, out=event.entries.batch)
        if len(ids) == 1:  # one region: its own event, as a reader of any version reads it
            event.region_id, event.index = ids[0], indexes[0]
            event.epoch.version, event.epoch.conf_version = epochs[0], confs[0]
            return [event]
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(kept[at], out=offsets[1:])
        region_runs.pack_runs(np.array(ids), np.array(indexes), np.array(epochs), np.array(confs), offsets,
                              out=event.entries.runs)
        return [event]

    def _newer_claims(self, feed: RegionFeed) -> Sequence[Claim]:
        """``claims.newer`` for the registration, asked again only when a claim was made since."""
        if feed.claims_seen != self.claims.changes:
            feed.newer = self.claims.newer(feed.id, feed.start, feed.end, feed.version)
            feed.claims_seen = self.claims.changes
        return feed.newer
