"""NMF: non-negative matrix factorization (scikit-learn) of the confidence matrix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import NMF as SklearnNMF

from shopsense.data.dataset import Dataset
from shopsense.models.factorization import FactorModel, confidence_matrix


class NMF(FactorModel):
    """``X ≈ W H`` with non-negative parts; fresh history is projected onto ``H``
    (scikit-learn's ``transform``), so new events count without a refit."""

    name = "nmf"

    def __init__(
        self,
        factors: int = 64,
        l2: float = 0.0,
        max_iter: int = 200,
        event_weights: dict | None = None,
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.l2 = l2
        self.max_iter = max_iter
        self.event_weights = event_weights
        self.random_state = random_state

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "factors": trial.suggest_int("factors", 8, 128, log=True),
            "l2": trial.suggest_float("l2", 1e-4, 1.0, log=True),
        }

    def _estimator(self) -> SklearnNMF:
        return SklearnNMF(
            n_components=self.factors,
            init="nndsvda",
            max_iter=self.max_iter,
            alpha_W=self.l2,
            alpha_H="same",
            l1_ratio=0.0,
            random_state=self.random_state,
        )

    def _fit(self, dataset: Dataset, progress: bool) -> None:
        x = confidence_matrix(dataset, self.event_weights)
        est = self._estimator()
        self.user_factors_ = est.fit_transform(x).astype(np.float32)
        self.item_factors_ = est.components_.T.astype(np.float32)

    def _score(self, users: np.ndarray, history: sp.csr_matrix | None) -> np.ndarray:
        if history is None:
            return self.user_factors_[users] @ self.item_factors_.T
        est = self._estimator()
        est.components_ = self.item_factors_.T.astype(np.float64)
        est.n_components_ = self.item_factors_.shape[1]
        est.n_features_in_ = self.n_items_
        w = est.transform(history.astype(np.float64))
        return w.astype(np.float32) @ self.item_factors_.T
