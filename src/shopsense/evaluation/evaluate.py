"""The evaluation harness: rank every item for every test user, in batches.

``mode="full"`` ranks the whole catalog (the user's history excluded), which
is the honest protocol. ``mode="sampled"`` ranks the targets among 100 random
unseen items, only to compare with older papers; its results say so.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

from shopsense.data.split import Split
from shopsense.errors import ShopsenseError
from shopsense.evaluation.metrics import ranking_metrics
from shopsense.ranking import top_k

DEFAULT_KS = (1, 5, 10, 20)
SAMPLED_NEGATIVES = 100


class Scorer(Protocol):
    def score(self, users: np.ndarray, user_items: sp.csr_matrix | None = None) -> np.ndarray: ...


def mode_label(mode: str, n_negatives: int = SAMPLED_NEGATIVES) -> str:
    if mode == "full":
        return "full ranking"
    return f"SAMPLED ({n_negatives} negatives; not comparable with full ranking)"


def _sample_candidates(
    blocked: np.ndarray, n_negatives: int, rng: np.random.Generator
) -> np.ndarray:
    """A mask with ``n_negatives`` random unblocked items per row."""
    n_rows = blocked.shape[0]
    chosen = np.zeros_like(blocked)
    for row in range(n_rows):
        free = np.flatnonzero(~blocked[row])
        take = rng.choice(free, size=min(n_negatives, len(free)), replace=False)
        chosen[row, take] = True
    return chosen


def evaluate(
    model: Scorer,
    split: Split,
    ks: tuple[int, ...] = DEFAULT_KS,
    on: str = "test",
    mode: str = "full",
    batch_size: int = 2048,
    n_negatives: int = SAMPLED_NEGATIVES,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Mean metrics over the users with targets in ``on`` ("valid" or "test").

    The model scores each user from the history before ``on`` (train, plus
    valid when testing), and those items are excluded from the ranking.
    """
    if mode not in ("full", "sampled"):
        raise ShopsenseError(f"evaluation mode must be 'full' or 'sampled', not {mode!r}")
    ks = tuple(sorted(set(int(k) for k in ks)))
    if not ks or ks[0] < 1:
        raise ShopsenseError("every K must be a positive integer")
    history = split.history(on)
    targets = split.targets(on)
    n_items = targets.shape[1]
    k_max = min(max(ks), n_items)
    if k_max < max(ks):
        raise ShopsenseError(f"K={max(ks)} is larger than the catalog ({n_items} items)")
    users = np.flatnonzero(np.diff(targets.indptr) > 0)
    if len(users) == 0:
        raise ShopsenseError(f"no user has {on} interactions: nothing to evaluate")
    popularity = np.bincount(split.train.interactions["item"].to_numpy(), minlength=n_items)
    rng = np.random.default_rng(seed)
    per_user: dict[str, list[np.ndarray]] = {}
    recommended: dict[int, np.ndarray] = {k: np.zeros(n_items, bool) for k in ks}
    avg_pop: dict[int, list[np.ndarray]] = {k: [] for k in ks}
    started = time.perf_counter()
    batches = range(0, len(users), batch_size)
    for start in tqdm(batches, desc="evaluate", unit=" batch", disable=not progress):
        batch = users[start : start + batch_size]
        hist = history[batch]
        if getattr(model, "uses_sequences", False):
            scores = model.score(batch, user_items=hist, sequences=split.sequences(on).rows(batch))
        else:
            scores = model.score(batch, user_items=hist)
        scores = np.asarray(scores, dtype=np.float32)
        if scores.shape != (len(batch), n_items):
            raise RuntimeError(f"model returned scores of shape {scores.shape}")
        blocked = hist.toarray().astype(bool)
        target_dense = targets[batch].toarray().astype(bool)
        if mode == "sampled":
            candidates = target_dense | _sample_candidates(blocked | target_dense, n_negatives, rng)
            scores = np.where(candidates, scores, -np.inf)
        else:
            scores[blocked] = -np.inf
        top, top_scores = top_k(scores, k_max)
        hits = np.take_along_axis(target_dense, top, axis=1) & np.isfinite(top_scores)
        for name, values in ranking_metrics(hits, target_dense.sum(axis=1), ks).items():
            per_user.setdefault(name, []).append(values)
        for k in ks:
            recommended[k][top[:, :k]] = True
            avg_pop[k].append(popularity[top[:, :k]].mean(axis=1))
    results: dict[str, Any] = {
        name: float(np.concatenate(v).mean()) for name, v in per_user.items()
    }
    for k in ks:
        results[f"Coverage@{k}"] = float(recommended[k].mean())
        results[f"AvgPop@{k}"] = float(np.concatenate(avg_pop[k]).mean())
    results["users"] = len(users)
    results["mode"] = mode_label(mode, n_negatives)
    results["eval_seconds"] = round(time.perf_counter() - started, 3)
    return results
