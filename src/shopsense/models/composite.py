"""What hybrids share: fitting several registered models and keeping them
inside the hybrid's own ``model.json`` and ``arrays.safetensors``."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from shopsense.data.dataset import Dataset
from shopsense.errors import ShopsenseError
from shopsense.models.base import Recommender


def build_parts(spec: dict[str, dict[str, Any]]) -> dict[str, Recommender]:
    """Unfitted models from ``{name: params}`` (names from the registry)."""
    from shopsense.models.registry import create_model

    if not spec:
        raise ShopsenseError("a hybrid needs at least one model")
    return {name: create_model(name, **(params or {})) for name, params in spec.items()}


def fit_parts(parts: dict[str, Recommender], dataset: Dataset, progress: bool) -> None:
    for model in parts.values():
        model.fit(dataset, progress=progress)


def parts_json(parts: dict[str, Recommender]) -> dict[str, Any]:
    return {name: m._json_state() for name, m in parts.items()}


def parts_arrays(parts: dict[str, Recommender]) -> dict[str, np.ndarray]:
    return {f"{name}/{k}": v for name, m in parts.items() for k, v in m._state().items()}


def forget_in_parts(parts: dict[str, Recommender], parent: Recommender, users: np.ndarray) -> None:
    """Erase ``users`` from each part, which shares the parent's history."""
    for model in parts.values():
        model.user_items_ = parent.user_items_
        model._forget_users(users)


def restore_parts(
    parts: dict[str, Recommender],
    parent: Recommender,
    json_state: dict[str, Any],
    arrays: dict[str, np.ndarray],
) -> None:
    """Give each part the parent's shape and history, then its saved state."""
    for name, model in parts.items():
        model.n_users_, model.n_items_ = parent.n_users_, parent.n_items_
        model.user_items_ = parent.user_items_
        model._set_json_state(json_state.get(name, {}))
        prefix = f"{name}/"
        model._set_state({k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)})


def normalized(scores: np.ndarray, how: str) -> np.ndarray:
    """Per-user scaling so models with different score ranges can be mixed."""
    scores = np.where(np.isfinite(scores), scores, np.nan)
    if how == "minmax":
        lo = np.nanmin(scores, axis=1, keepdims=True)
        hi = np.nanmax(scores, axis=1, keepdims=True)
        out = (scores - lo) / np.maximum(hi - lo, 1e-12)
    elif how == "zscore":
        mean = np.nanmean(scores, axis=1, keepdims=True)
        std = np.nanstd(scores, axis=1, keepdims=True)
        out = (scores - mean) / np.maximum(std, 1e-12)
    elif how == "rank":
        order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), axis=1)
        out = np.empty_like(scores)
        np.put_along_axis(out, order, 1.0 / (np.arange(scores.shape[1]) + 61.0), axis=1)
    else:
        raise ShopsenseError(f"normalize must be minmax, zscore or rank, not {how!r}")
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


def part_scores(
    parts: dict[str, Recommender], users: np.ndarray, history: sp.csr_matrix | None
) -> dict[str, np.ndarray]:
    return {name: m.score(users, user_items=history) for name, m in parts.items()}
