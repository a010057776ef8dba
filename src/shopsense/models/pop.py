"""Popularity: the baseline every model must beat, and the cold-start fallback."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from shopsense.data.dataset import Dataset
from shopsense.models.base import Recommender


class ItemScores(Recommender):
    """Non-personalized models: one learnt score per item, the same for everyone."""

    item_scores_: np.ndarray

    def _score(self, users: np.ndarray, history: sp.csr_matrix | None) -> np.ndarray:
        return np.broadcast_to(self.item_scores_, (len(users), self.n_items_)).copy()

    def _similarity(self, items: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_scores_, (len(items), self.n_items_)).copy()

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_scores": self.item_scores_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_scores_ = arrays["item_scores"]


class Popularity(ItemScores):
    """Scores each item by its number of training interactions (as RecBole's Pop)."""

    name = "pop"

    def __init__(self) -> None:
        pass

    def _fit(self, dataset: Dataset, progress: bool) -> None:
        items = dataset.interactions["item"].to_numpy()
        self.item_scores_ = np.bincount(items, minlength=dataset.n_items).astype(np.float32)
