"""What the matrix-factorization models share: behaviour confidence, and user
and item factors that score by dot product."""

from __future__ import annotations

import numpy as np

from shopsense.data.dataset import Dataset
from shopsense.data.schema import DEFAULT_EVENT_WEIGHTS
from shopsense.models.base import Recommender


def confidence_matrix(dataset: Dataset, event_weights: dict | None):
    """Users × items confidence: behaviour weights summed over repeated events."""
    return dataset.user_item_matrix(
        {**DEFAULT_EVENT_WEIGHTS, **(event_weights or {})}, binary=False
    )


def cosine(vectors: np.ndarray, items: np.ndarray, others: np.ndarray | None = None) -> np.ndarray:
    """Cosine of ``vectors[items]`` with ``vectors[others]`` (all rows by default)."""
    right = vectors if others is None else vectors[others]
    left = vectors[items]
    norms_left = np.linalg.norm(left, axis=1) + 1e-12
    norms_right = np.linalg.norm(right, axis=1) + 1e-12
    return (left @ right.T) / (norms_left[:, None] * norms_right[None, :])


class FactorModel(Recommender):
    """Scores are ``user_factors_ · item_factors_``; subclasses learn both."""

    user_factors_: np.ndarray
    item_factors_: np.ndarray

    def _similarity(self, items: np.ndarray) -> np.ndarray:
        return cosine(self.item_factors_, items)

    def _similarity_between(self, items: np.ndarray, others: np.ndarray) -> np.ndarray:
        return cosine(self.item_factors_, items, others)

    def _forget_users(self, users: np.ndarray) -> None:
        self.user_factors_ = self.user_factors_.copy()
        self.user_factors_[users] = 0.0

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors_ = arrays["user_factors"]
        self.item_factors_ = arrays["item_factors"]
