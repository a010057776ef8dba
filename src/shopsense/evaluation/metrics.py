"""Ranking metrics from a hit matrix, per user, counted as RecBole counts them.

``hits[u, r]`` is True when the item ranked ``r`` (0-based) for user ``u`` is
one of the user's ``n_targets[u]`` held-out items.

- Recall@K divides the hits by the user's number of targets.
- NDCG@K's ideal DCG places min(K, targets) hits at the top.
- MAP@K averages precision at each hit over min(K, targets).
- MRR@K is 1 / rank of the first hit (0 without one).
- F1@K is the per-user harmonic mean of precision and recall, then averaged.
- Accuracy is top-1 next-item accuracy: Hit@1.
"""

from __future__ import annotations

import numpy as np

PER_USER_METRICS = ("Precision", "Recall", "F1", "Hit", "NDCG", "MRR", "MAP")


def ranking_metrics(
    hits: np.ndarray, n_targets: np.ndarray, ks: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Per-user metric values, keyed ``"NDCG@10"`` etc., plus ``"Accuracy"``."""
    hits = np.asarray(hits, dtype=bool)
    n_targets = np.asarray(n_targets, dtype=np.float64)
    if hits.shape[1] < max(ks):
        raise ValueError(f"need {max(ks)} ranked items, got {hits.shape[1]}")
    if np.any(n_targets <= 0):
        raise ValueError("every evaluated user needs at least one target")
    ranks = np.arange(1, hits.shape[1] + 1, dtype=np.float64)
    discounts = 1.0 / np.log2(ranks + 1.0)
    cum_hits = np.cumsum(hits, axis=1)
    cum_discounts = np.concatenate(([0.0], np.cumsum(discounts)))
    first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        h = hits[:, :k]
        n_hit = cum_hits[:, k - 1].astype(np.float64)
        precision = n_hit / k
        recall = n_hit / n_targets
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
        dcg = (h * discounts[:k]).sum(axis=1)
        ideal = np.minimum(n_targets, k).astype(int)
        ndcg = dcg / cum_discounts[ideal]
        mrr = np.where((first_hit > 0) & (first_hit <= k), 1.0 / np.maximum(first_hit, 1), 0.0)
        ap = (h * (cum_hits[:, :k] / ranks[:k])).sum(axis=1) / np.minimum(n_targets, k)
        for name, values in zip(
            PER_USER_METRICS,
            (precision, recall, f1, (n_hit > 0).astype(float), ndcg, mrr, ap),
            strict=True,
        ):
            out[f"{name}@{k}"] = values
    out["Accuracy"] = hits[:, 0].astype(np.float64)
    return out
