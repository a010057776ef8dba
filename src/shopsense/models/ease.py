"""EASE (Steck, 2019): a closed-form item-item linear model, strong on dense data."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from shopsense.data.dataset import Dataset
from shopsense.errors import ShopsenseError
from shopsense.models.base import Recommender


class EASE(Recommender):
    """``B = I - P / diag(P)`` with ``P = (XᵀX + λI)⁻¹`` and a zero diagonal;
    scores are ``x_u B``. Memory grows with items², hence ``max_items``."""

    name = "ease"

    def __init__(self, l2: float = 500.0, max_items: int = 50_000) -> None:
        self.l2 = l2
        self.max_items = max_items

    @staticmethod
    def search_space(trial) -> dict:
        return {"l2": trial.suggest_float("l2", 1.0, 5000.0, log=True)}

    def _fit(self, dataset: Dataset, progress: bool) -> None:
        n = dataset.n_items
        if n > self.max_items:
            raise ShopsenseError(
                f"ease builds a dense {n:,} × {n:,} matrix; this catalog has more than "
                f"max_items={self.max_items:,} items (raise it if memory allows)"
            )
        x = self.user_items_
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices(n)] += self.l2
        p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices(n)] = 0.0
        self.weights_ = b.astype(np.float32)

    def _score(self, users: np.ndarray, history: sp.csr_matrix | None) -> np.ndarray:
        return np.asarray(self._history(users, history) @ self.weights_)

    def _similarity(self, items: np.ndarray) -> np.ndarray:
        return self.weights_[items]

    def _state(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.weights_ = arrays["weights"]
