"""Fusing ranked lists: reciprocal rank fusion and a weighted sum of
min-max-normalized scores (a list's best is 1, its floor 0, absent is 0).

A list's floor is its lowest score, or a fixed score that earns nothing
where the list has one: the semantic list's is ``semantic_min_score``, where
the nearest items of nonsense stop, so the items a query's words let in
below it (``query.matching``) join with no semantic credit, and an item's
credit does not shrink as more items come just above the floor.
"""

from __future__ import annotations

import numpy as np

FUSION_METHODS = ("convex", "rrf")


def fuse(
    lists: list[tuple[np.ndarray, np.ndarray]],
    weights: list[float],
    method: str = "convex",
    rrf_k: float = 60.0,
    floors: list[float | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of every list, best first, with their fused scores; ``floors``,
    one a list, are the scores that earn nothing in convex fusion (None: the
    list's lowest; a score below its floor earns nothing too)."""
    lists = [(r, s) for r, s in lists]
    every = np.concatenate([r for r, _ in lists]) if lists else np.empty(0, np.int64)
    rows = np.unique(every)
    fused = np.zeros(len(rows), np.float64)
    floors = floors or [None] * len(lists)
    for (r, s), w, floor in zip(lists, weights, floors, strict=False):
        if not len(r) or w == 0:
            continue
        pos = np.searchsorted(rows, r)
        if method == "rrf":
            ranks = np.empty(len(s), np.float64)
            ranks[np.argsort(-s, kind="stable")] = np.arange(1, len(s) + 1)
            fused[pos] += w / (rrf_k + ranks)
        else:
            lo, hi = (float(s.min()) if floor is None else floor), float(s.max())
            scaled = (s - lo) / (hi - lo) if hi > lo else np.full(len(s), float(floor is None))
            fused[pos] += w * np.clip(scaled, 0.0, 1.0)
    order = np.argsort(-fused, kind="stable")
    return rows[order], fused[order]
