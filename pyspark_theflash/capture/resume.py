"""What a restarted capture can prove its binlog holds of each key range, so that it registers
each region from there (TiKV's incremental scan) instead of copying the cluster's history
again. TiCDC resumes a changefeed from its checkpoint the same way.

The proof, per key range, from the binlog's events alone (so a restart that reads them again,
from the state file's position or from the first event, learns the same):

- a region's ``ResolvedTs`` event at ts T is written only for its current registration, only
  once that registration's ``RegionSnapshot`` is written (the snapshot is queued when the feed
  says INITIALIZED, before any resolved ts it takes), and after every row that registration
  gave before TiKV's resolved ts (one FIFO, released in order; a resolved ts is clamped to the
  DDL frontier, and rows wait for that frontier too). TiKV promises no commit at or below T
  comes later. So after it, every version committed at or below T of the keys of that
  snapshot's range is in the binlog: in the snapshot (every version TiKV held, or those above
  its ``since_ts`` besides what was proved before) or in a row written before T.
- a whole snapshot (``since_ts`` 0) replaces its range in the replica: nothing is proved of the
  range until its region's next resolved ts; an incremental one (``since_ts`` S) proves every
  version at or below S (capture registered it from a floor proved so) and deletes nothing.
  Either way every other region over the range is retired (by the writer and by capture: its
  registration ends, and writes no resolved ts), so what was proved of the range under other
  regions gives way to the new registration's floor.
- a split or merge event ends the registrations it names: their floors stay proved, but no
  resolved ts raises them until their regions' next snapshots (a merge's target may still have
  its old registration, whose resolved ts speaks of its old range only: that is what it raises).

Floors are kept by key range (PD-encoded), not by region id, so regions that split or merged
while capture was down resume from the floors over their new ranges (``coverage.inherit``:
per key the highest floor; a range with a key no floor covers is scanned whole). A floor below
the cluster's GC safe point is no proof of what TiKV still holds above it (GC may have
collected versions, and deletions, between the two), so such ranges are scanned whole too.

Versions written above a floor before the restart (rows after the last resolved ts) are not
counted: the incremental scan gives them again and the replica keeps one copy of a version
(store/txn_merge_tree.py ``drop_repeated_versions``).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from pyspark_theflash.binlog.packed import resolved_regions
from pyspark_theflash.capture.coverage import Coverage, Floor
from pyspark_theflash.capture.region_table import ResolvedFold
from pyspark_theflash.capture.state_json import Items
from pyspark_theflash.codec.key_ranges import DisjointRanges
from pyspark_theflash.proto import binlog_pb2


def _floors(pieces: Floor | list[Floor]) -> list[Floor]:
    """A region's live floors as a list (``ResumePoints._live`` keeps one floor as it is)."""
    return [pieces] if isinstance(pieces, tuple) else pieces


SETTLE_CHUNK = 4096  # regions' raised floors made Python objects at once (ResumePoints._settle)


class ResumePoints:
    """Per key range, the ts at or below which the binlog holds every version (``floors``),
    learned from the events written (``absorb``) and kept in capture's state file."""

    def __init__(self, selection: list[str] | None = None) -> None:
        # the captured tables the floors speak of (``--tables``; None = every table): a restart
        # that selects other tables has no floor for the ones it adds
        self.selection = selection
        self.selection_known = True  # False: the binlog was written for tables no state file names
        # region -> its registration's range (one Floor, or a list of them: a restart's); its
        # resolved ts raise it. (One floor is kept as it is, not in a list: 72 bytes a region.)
        self._live: dict[int, Floor | list[Floor]] = {}
        self._live_ranges: DisjointRanges[int] = DisjointRanges()  # the same ranges -> region (which overlap a snapshot)
        self._ended: DisjointRanges[int] = DisjointRanges()  # ranges of ended registrations -> floor: raised by none
        self._raised = ResolvedFold()  # resolved ts absorbed, not yet in ``_live`` (_settle)

    # ------------------------------------------------------------------ events

    def absorb(self, ev: binlog_pb2.Event,
               same_range: Callable[[int, bytes, bytes], tuple[int, bytes, bytes]] | None = None) -> None:
        """What ``ev`` proves; ``same_range`` gives a snapshot's region id and keys as objects the
        caller keeps already (Capture._same_range), so that they are not kept twice."""
        kind = ev.WhichOneof("payload")
        if kind == "resolved":  # kept as arrays, folded in when next needed (_settle)
            self._raised.add(resolved_regions(ev.resolved), int(ev.resolved.ts))
            return
        if kind not in ("snapshot", "admin"):
            return
        self._settle()
        if kind == "snapshot":
            r, rid = ev.snapshot.region, int(ev.region_id)
            start, end = bytes(r.start_key), bytes(r.end_key)
            if same_range is not None:
                rid, start, end = same_range(rid, start, end)
            # its own earlier registration and every other over the range are retired
            for other in [rid, *(o for _, _, o in self._live_ranges.overlapping(start, end))]:
                self._end(other)
            self._ended.cut(start, end)
            self._set_live(rid, (start, end, int(ev.snapshot.since_ts)))
        elif kind == "admin" and ev.admin.HasField("split"):
            for r in ev.admin.split.regions:
                self._end(int(r.id))
        elif kind == "admin" and ev.admin.HasField("merge"):
            self._end(int(ev.admin.merge.source.id))

    def _settle(self) -> None:
        """The resolved ts absorbed since the last time, folded into the live floors: each
        region's greatest once (a resolved ts lists every region, several a second)."""
        if not self._raised:
            return
        live = self._live
        ids, tss = self._raised.take()
        # (made Python ints a chunk at a time, and one int object per ts: a resolved ts lists
        # every region, and 100,000 pairs at once, or an int per floor, were megabytes)
        same: dict[int, int] = {}
        for lo in range(0, len(ids), SETTLE_CHUNK):
            for rid, ts in zip(ids[lo:lo + SETTLE_CHUNK].tolist(), tss[lo:lo + SETTLE_CHUNK].tolist()):
                pieces = live.get(rid)
                if pieces is not None:
                    ts = same.setdefault(ts, ts)
                    if isinstance(pieces, tuple):
                        if ts > pieces[2]:
                            live[rid] = (pieces[0], pieces[1], ts)
                    else:
                        live[rid] = [(s, e, max(f, ts)) for s, e, f in pieces]

    def _set_live(self, region_id: int, pieces: Floor | list[Floor]) -> None:
        self._live[region_id] = pieces[0] if isinstance(pieces, list) and len(pieces) == 1 else pieces
        for s, e, _ in _floors(pieces):
            self._live_ranges.assign(s, e, region_id)

    def _end(self, region_id: int) -> None:
        for s, e, ts in _floors(self._live.pop(region_id, [])):
            self._live_ranges.cut(s, e)
            self._ended.assign(s, e, ts)

    # ------------------------------------------------------------------ restart

    def floors(self) -> list[Floor]:
        """Every proved floor above 0, in key order, equal neighbours joined (the pieces never
        overlap: each snapshot takes its range from every other)."""
        self._settle()
        pieces = sorted(p for p in [*self._ended, *(p for ps in self._live.values() for p in _floors(ps))] if p[2] > 0)
        out: list[Floor] = []
        for s, e, ts in pieces:
            if out and out[-1][1] == s and out[-1][2] == ts:
                out[-1] = (out[-1][0], e, ts)
            else:
                out.append((s, e, ts))
        return out

    def coverages(self, gc_safe_point: int) -> list[Coverage]:
        """What a restarted capture knows the replica holds: one coverage per run of adjacent
        floors at or above ``gc_safe_point`` (TiKV holds every version above such a floor)."""
        runs: list[list[Floor]] = []
        for s, e, ts in self.floors():
            if ts < gc_safe_point:
                continue
            if runs and runs[-1][-1][1] == s:
                runs[-1].append((s, e, ts))
            else:
                runs.append([(s, e, ts)])
        return [Coverage(run) for run in runs]

    # ------------------------------------------------------------------ state file

    def state(self, lazy: bool = False) -> dict[str, Any]:
        """What the state file keeps; ``lazy``: its lists as capture/state_json.py ``Items``,
        made as they are written (the same JSON)."""
        def enc(pieces: Iterable[Floor]) -> list[list[Any]]:
            return [[s.hex(), e.hex(), ts] for s, e, ts in pieces]

        # (as of this call: the ended pieces and each live region's floors copied now, made JSON
        # as iterated; a floor is replaced, never changed in place)
        self._settle()
        live = self._live
        ended: Iterable[list[Any]] = ([s.hex(), e.hex(), ts] for s, e, ts in self._ended)
        ids = sorted(live)
        regions: Iterable[list[Any]] = ([rid, enc(_floors(f))] for rid, f in zip(ids, [live[rid] for rid in ids]))
        if not lazy:
            return {"selection": self.selection, "ended": list(ended), "live": list(regions)}
        return {"selection": self.selection, "ended": Items(ended), "live": Items(regions)}

    @classmethod
    def from_state(cls, saved: dict[str, Any] | None) -> "ResumePoints":
        """The points a state file kept, as of its position (the events after it are absorbed
        next). A state file without them (an older release) proves nothing of the tables it
        selected: ``speaks_for`` is then false."""
        if saved is None:
            points = cls()
            points.selection_known = False
            return points
        points = cls(saved.get("selection"))

        def dec(pieces: list[list[Any]]) -> list[Floor]:
            return [(bytes.fromhex(s), bytes.fromhex(e), int(ts)) for s, e, ts in pieces]

        points._ended = DisjointRanges(dec(saved["ended"]))
        for rid, pieces in saved["live"]:
            points._set_live(int(rid), dec(pieces))
        return points

    def speaks_for(self, selection: list[str] | None) -> bool:
        """Whether these floors hold for the tables ``selection`` names: the binlog's rows are
        those of the tables it was written for, and a table a restart adds has none below them."""
        return self.selection_known and self.selection == selection
