"""Fusing ranked lists: reciprocal rank fusion and a weighted sum of
min-max-normalized scores (a list's best is 1, its worst 0, absent is 0)."""

from __future__ import annotations

import numpy as np

FUSION_METHODS = ("convex", "rrf")


def fuse(
    lists: list[tuple[np.ndarray, np.ndarray]],
    weights: list[float],
    method: str = "convex",
    rrf_k: float = 60.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of every list, best first, with their fused scores."""
    lists = [(r, s) for r, s in lists]
    every = np.concatenate([r for r, _ in lists]) if lists else np.empty(0, np.int64)
    rows = np.unique(every)
    fused = np.zeros(len(rows), np.float64)
    for (r, s), w in zip(lists, weights, strict=False):
        if not len(r) or w == 0:
            continue
        pos = np.searchsorted(rows, r)
        if method == "rrf":
            ranks = np.empty(len(s), np.float64)
            ranks[np.argsort(-s, kind="stable")] = np.arange(1, len(s) + 1)
            fused[pos] += w / (rrf_k + ranks)
        else:
            lo, hi = float(s.min()), float(s.max())
            fused[pos] += w * ((s - lo) / (hi - lo) if hi > lo else np.ones(len(s)))
    order = np.argsort(-fused, kind="stable")
    return rows[order], fused[order]
