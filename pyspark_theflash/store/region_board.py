"""The writer's regions' resolved ts and orphan windows as columns (``RegionBoard``).

TiKV sends one resolved ts listing every region of a connection (thousands) several times a
second. Held as a field of each region's object, each such event cost a Python step per
region three times over: raising it (with an undo copy of the region), finding at the flush
which regions' rows differ from the manifest's only in it, and noting what the flush
persisted. Held here as arrays by slot, an event is a few NumPy calls over its list
(``raise_to``), a flush takes the moved regions as the slots whose value differs from the
one persisted (``moved_since_persisted``), and a batch's undo is the old values of the slots
it touched (``begin``/``rollback``/``commit``), as the region caches keep theirs.

A region's object (``write_state.MutableRegion``) reads and writes its own slot through
``resolved_ts``/``orphan_until_ts``: the per-event paths (a split, a merge, a snapshot) see
one truth.
"""
from __future__ import annotations

import numpy as np

INITIAL_SLOTS = 64


class RegionBoard:
    """Resolved ts, the resolved ts last persisted, and the orphan window (the newest commit
    a region snapshot holds, 0: none) of every region the write state knows, a slot each.

    Values are TSOs (below 2^63) in int64 columns. A released slot (a region a rolled-back
    batch had created) is zeroed and reused."""

    def __init__(self) -> None:
        self.slot_of: dict[int, int] = {}
        self.ids = np.full(INITIAL_SLOTS, -1, np.int64)       # slot -> region id (-1: free)
        self.resolved = np.zeros(INITIAL_SLOTS, np.int64)
        self.persisted = np.zeros(INITIAL_SLOTS, np.int64)     # as the manifest has it (or the flush in flight)
        self.orphan_until = np.zeros(INITIAL_SLOTS, np.int64)
        self.used = 0                                          # slots [0, used) were ever taken
        self._free: list[int] = []
        self._index: tuple[np.ndarray, np.ndarray] | None = None  # (region ids sorted, their slots)
        self.moved = False  # a resolved ts moved by ``raise_to`` since a flush last took them
        # a batch's undo: (slots, their resolved ts, their orphan windows) before it changed them,
        # as arrays (``save``) and one slot at a time (``save_one``: a region a batch changes
        # otherwise, thousands a batch, where a NumPy call each cost more than the change)
        self._undo: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self._undo_one: list[tuple[int, int, int]] = []

    # --- slots ---------------------------------------------------------------------------------
    def add(self, region_id: int, resolved_ts: int = 0, orphan_until_ts: int = 0, persisted_ts: int = 0) -> int:
        """A slot for ``region_id`` (its own if it has one), set to the values given."""
        slot = self.slot_of.get(region_id)
        if slot is None:
            if self._free:
                slot = self._free.pop()
            else:
                if self.used == len(self.ids):
                    self._grow()
                slot = self.used
                self.used += 1
            self.slot_of[region_id] = slot
            self.ids[slot] = region_id
            self._index = None
        self.resolved[slot] = resolved_ts
        self.persisted[slot] = persisted_ts
        self.orphan_until[slot] = orphan_until_ts
        return slot

    def release(self, region_id: int) -> None:
        """Forget ``region_id`` (a region a rolled-back batch introduced)."""
        slot = self.slot_of.pop(region_id, None)
        if slot is None:
            return
        self.ids[slot] = -1
        self.resolved[slot] = self.persisted[slot] = self.orphan_until[slot] = 0
        self._free.append(slot)
        self._index = None

    def _grow(self) -> None:
        n = 2 * len(self.ids)
        self.ids = np.concatenate([self.ids, np.full(n - len(self.ids), -1, np.int64)])
        for name in ("resolved", "persisted", "orphan_until"):
            column = getattr(self, name)
            setattr(self, name, np.concatenate([column, np.zeros(n - len(column), np.int64)]))

    def slots(self, region_ids: np.ndarray) -> np.ndarray:
        """The slots of ``region_ids`` (-1 for a region the board does not know), by a search
        in the ids sorted once per change of the region set (regions come and go by splits and
        merges, a resolved ts comes many times a second)."""
        if self._index is None:
            taken = np.flatnonzero(self.ids[:self.used] >= 0)
            order = np.argsort(self.ids[taken], kind="stable")
            self._index = (self.ids[taken][order], taken[order])
        ids, slots = self._index
        if not len(ids):
            return np.full(len(region_ids), -1, np.int64)
        at = np.minimum(np.searchsorted(ids, region_ids), len(ids) - 1)
        return np.where(ids[at] == region_ids, slots[at], -1)

    # --- a batch -------------------------------------------------------------------------------
    def begin(self) -> None:
        self._undo = []
        self._undo_one = []

    def save(self, slots: np.ndarray) -> None:
        """Keep the values of ``slots`` for the batch's undo (before the batch changes them)."""
        if self._undo is not None and len(slots):
            if self._undo_one:  # (the log stays in the order of the saves: rollback goes back through it)
                self._fold_ones()
            self._undo.append((slots, self.resolved[slots], self.orphan_until[slots]))

    def save_one(self, slot: int) -> None:
        """``save`` of one slot, as Python ints."""
        if self._undo is not None:
            self._undo_one.append((slot, int(self.resolved[slot]), int(self.orphan_until[slot])))
            if len(self._undo_one) >= 4096:  # (bounded: folded into the arrays' log)
                self._fold_ones()

    def _fold_ones(self) -> None:
        assert self._undo is not None
        slots, resolved, orphan_until = (np.array(c, np.int64) for c in zip(*self._undo_one))
        self._undo.append((slots, resolved, orphan_until))
        self._undo_one = []

    def rollback(self) -> None:
        """The values every slot had when the batch began."""
        if self._undo is not None and self._undo_one:
            self._fold_ones()
        for slots, resolved, orphan_until in reversed(self._undo or ()):
            self.resolved[slots] = resolved
            self.orphan_until[slots] = orphan_until
        self._undo = None
        self._undo_one = []

    def commit(self) -> None:
        self._undo = None
        self._undo_one = []

    # --- resolved ts -----------------------------------------------------------------------------
    def raise_to(self, region_ids: np.ndarray, ts: int) -> tuple[int, np.ndarray]:
        """Raise the resolved ts of the known regions of ``region_ids`` that are below ``ts``
        to it. Returns how many moved, and the ids of those whose orphan window it closes (no
        commit at or below the resolved ts can come any more, so no orphan can either); their
        windows are set to 0."""
        slots = self.slots(region_ids)
        slots = slots[slots >= 0]
        moving = slots[self.resolved[slots] < ts]  # (TiKV lists a region once; listed twice, it counts twice)
        if not len(moving):
            return 0, np.zeros(0, np.int64)
        self.save(moving)
        self.resolved[moving] = ts
        self.moved = True
        windows = self.orphan_until[moving]
        closing = moving[(windows != 0) & (windows <= ts)]
        if len(closing):
            self.orphan_until[closing] = 0
        return len(moving), self.ids[closing]

    def moved_since_persisted(self, leave: set[int]) -> tuple[np.ndarray, np.ndarray]:
        """(region ids, resolved ts) of the regions whose resolved ts differs from the one
        persisted, but for those in ``leave`` (written as whole rows)."""
        self.moved = False
        n = self.used
        at = np.flatnonzero(self.resolved[:n] != self.persisted[:n])
        ids = self.ids[at]
        if leave and len(at):
            keep = ~np.isin(ids, np.fromiter(leave, np.int64, len(leave)))
            at, ids = at[keep], ids[keep]
        return ids, self.resolved[at]

    def note_persisted(self, region_ids: np.ndarray, resolved_ts: np.ndarray) -> None:
        """The manifest has (or the flush in flight writes) these resolved ts."""
        slots = self.slots(region_ids)
        known = slots >= 0
        self.persisted[slots[known]] = resolved_ts[known]
