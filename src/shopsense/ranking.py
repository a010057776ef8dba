"""Top-K selection shared by recommenders and the evaluation harness."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of each row's ``k`` highest scores, best first.

    Within the top k, equal scores are ordered by item index.
    """
    n = scores.shape[1]
    k = min(k, n)
    if k == n:
        part = np.broadcast_to(np.arange(n), scores.shape).copy()
    else:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    return idx, np.take_along_axis(part_scores, order, axis=1)
