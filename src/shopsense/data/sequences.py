"""Users' interactions in time order, for models that read them as sequences.

Consecutive events on the same item collapse into one step that keeps the
strongest behaviour (view < click < cart < fav < purchase), so "view, cart,
purchase X" is one step on X with type purchase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class Sequences:
    """Ragged rows: ``items[indptr[u]:indptr[u + 1]]`` is row ``u`` in time order;
    ``types`` holds each step's behaviour code (``EVENT_TYPES`` index)."""

    indptr: np.ndarray
    items: np.ndarray
    types: np.ndarray

    @classmethod
    def from_events(cls, events: pd.DataFrame, n_users: int) -> Sequences:
        ev = events[events["item"] >= 0]
        order = np.lexsort((np.arange(len(ev)), ev["timestamp"].to_numpy(), ev["user"].to_numpy()))
        users = ev["user"].to_numpy()[order]
        items = ev["item"].to_numpy()[order].astype(np.int32)
        types = ev["type"].cat.codes.to_numpy()[order].astype(np.int8)
        # A new step starts where the user or the item changes.
        start = np.ones(len(items), bool)
        start[1:] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
        step = np.cumsum(start) - 1
        strongest = np.zeros(int(start.sum()), np.int8)
        np.maximum.at(strongest, step, types)
        counts = np.bincount(users[start], minlength=n_users)
        return cls(np.concatenate(([0], np.cumsum(counts))), items[start], strongest)

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def rows(self, users: np.ndarray) -> Sequences:
        starts, stops = self.indptr[users], self.indptr[np.asarray(users) + 1]
        lengths = stops - starts
        take = (
            np.concatenate([np.arange(a, b) for a, b in zip(starts, stops, strict=True)])
            if len(users)
            else np.empty(0, int)
        )
        return Sequences(
            np.concatenate(([0], np.cumsum(lengths))), self.items[take], self.types[take]
        )

    def without(self, users: np.ndarray) -> Sequences:
        """The same rows with ``users``' emptied."""
        lengths = np.diff(self.indptr)
        keep = np.ones(len(self.items), bool)
        for row in np.asarray(users).tolist():
            keep[self.indptr[row] : self.indptr[row + 1]] = False
        lengths[users] = 0
        indptr = np.concatenate(([0], np.cumsum(lengths))).astype(self.indptr.dtype)
        return Sequences(indptr, self.items[keep], self.types[keep])

    def padded(self, length: int, ends: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The last ``length`` steps of each row, right-aligned; items shifted by +1
        and types by +1 so that 0 is padding. ``ends``: per row, how many of its
        steps the window ends after (default all of them), for a window that
        stops earlier in a long row."""
        n = len(self)
        items = np.zeros((n, length), np.int64)
        types = np.zeros((n, length), np.int64)
        stops = self.indptr[1:] if ends is None else self.indptr[:-1] + ends
        keep = np.minimum(stops - self.indptr[:-1], length)
        for row in np.flatnonzero(keep):
            stop = stops[row]
            items[row, length - keep[row] :] = self.items[stop - keep[row] : stop] + 1
            types[row, length - keep[row] :] = self.types[stop - keep[row] : stop] + 1
        return items, types
