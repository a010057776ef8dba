"""Every catalog row's analysed title as integer term ids.

The ranker compares the query's terms with each candidate's title terms. With
the titles analysed once, when they are indexed, a query's comparisons are
array gathers: a server that has just started answers its first queries as
fast as its thousandth, and no per-process cache of titles grows with the
catalogue.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class TitleTermIndex:
    """Term ids of each row's title in title order (rows one after another,
    ``offsets`` marking where each starts), with a vocabulary that only grows,
    so an id never changes meaning while the catalogue takes new rows."""

    def __init__(self, joined_terms: Iterable[str] = ()) -> None:
        self.vocabulary: dict[str, int] = {}
        self.offsets = np.zeros(1, np.int64)
        self.ids = np.empty(0, np.int32)
        self.distinct = np.empty(0, np.int32)  # different terms per row
        self.extend(joined_terms)

    def extend(self, joined_terms: Iterable[str]) -> None:
        """Add rows, each given as its terms joined by spaces."""
        number = self.vocabulary
        rows = [[number.setdefault(t, len(number)) for t in j.split()] for j in joined_terms]
        if not rows:
            return
        lengths = np.array([len(r) for r in rows], np.int64)
        flat = np.fromiter((i for r in rows for i in r), np.int32, int(lengths.sum()))
        self.offsets = np.concatenate([self.offsets, self.offsets[-1] + np.cumsum(lengths)])
        self.ids = np.concatenate([self.ids, flat])
        distinct = np.array([len(set(r)) for r in rows], np.int32)
        self.distinct = np.concatenate([self.distinct, distinct])

    def ids_of(self, terms: Iterable[str]) -> np.ndarray:
        """Ids of ``terms``; a term no title has gets -1, which matches nothing."""
        return np.array([self.vocabulary.get(t, -1) for t in terms], np.int32)

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the term ids of ``rows``' titles one after another, each title's length)."""
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        total = int(lengths.sum())
        # Position k of the output belongs to title j: it reads starts[j] + (k - first_k[j]).
        shift = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        return self.ids[shift + np.arange(total)], lengths
