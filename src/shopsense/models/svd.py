"""PureSVD (Cremonesi et al., 2010): a truncated SVD of the interaction matrix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd

from shopsense.data.dataset import Dataset
from shopsense.models.base import Recommender


class PureSVD(Recommender):
    """Item factors ``V`` from the top ``factors`` singular vectors of the
    user × item matrix; a user's scores are ``x_u V Vᵀ``, so fresh history counts."""

    name = "svd"

    def __init__(self, factors: int = 64, random_state: int = 0) -> None:
        self.factors = factors
        self.random_state = random_state

    @staticmethod
    def search_space(trial) -> dict:
        return {"factors": trial.suggest_int("factors", 8, 256, log=True)}

    def _fit(self, dataset: Dataset, progress: bool) -> None:
        k = max(1, min(self.factors, min(self.user_items_.shape) - 1))
        _, _, vt = randomized_svd(self.user_items_, k, random_state=self.random_state)
        self.item_factors_ = vt.T.astype(np.float32)

    def _score(self, users: np.ndarray, history: sp.csr_matrix | None) -> np.ndarray:
        return np.asarray(self._history(users, history) @ self.item_factors_) @ self.item_factors_.T

    def _similarity(self, items: np.ndarray) -> np.ndarray:
        return self.item_factors_[items] @ self.item_factors_.T

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_factors": self.item_factors_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.item_factors_ = arrays["item_factors"]
