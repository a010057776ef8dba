"""BPR: Bayesian personalized ranking (Rendle et al., 2009), from the ``implicit`` library."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.cpu.bpr import BayesianPersonalizedRanking
from threadpoolctl import threadpool_limits

from shopsense.data.dataset import Dataset
from shopsense.models.factorization import FactorModel


class BPR(FactorModel):
    """Pairwise ranking factors learnt by SGD. It has no fold-in: fresh history
    is ignored and new users need a refit (or another model)."""

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.05,
        iterations: int = 300,
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "factors": trial.suggest_int("factors", 16, 128, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 1e-3, 0.1, log=True),
            "regularization": trial.suggest_float("regularization", 1e-4, 0.1, log=True),
            "iterations": trial.suggest_int("iterations", 50, 1000, log=True),
        }

    def _fit(self, dataset: Dataset, progress: bool) -> None:
        model = BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            random_state=self.random_state,
        )
        with threadpool_limits(1, "blas"):
            model.fit(self.user_items_, show_progress=progress)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)

    def _score(self, users: np.ndarray, history: sp.csr_matrix | None) -> np.ndarray:
        return self.user_factors_[users] @ self.item_factors_.T
