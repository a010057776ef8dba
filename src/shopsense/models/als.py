"""ALS for implicit feedback (Hu, Koren & Volinsky, 2008), from the ``implicit`` library."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from shopsense.data.dataset import Dataset
from shopsense.models.factorization import FactorModel, confidence_matrix


class ALS(FactorModel):
    """Weighted matrix factorization with confidence ``1 + alpha · weight``.

    With fresh history, a user's factors are solved again from it (implicit's
    ``recalculate_user``), so new or changed users need no full refit.
    """

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 2.0,
        iterations: int = 15,
        event_weights: dict | None = None,
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.event_weights = event_weights
        self.random_state = random_state

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "factors": trial.suggest_int("factors", 8, 256, log=True),
            "regularization": trial.suggest_float("regularization", 1e-3, 10.0, log=True),
            "alpha": trial.suggest_float("alpha", 0.1, 50.0, log=True),
            "iterations": trial.suggest_int("iterations", 5, 30),
        }

    def _implicit(self) -> AlternatingLeastSquares:
        return AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            random_state=self.random_state,
        )

    def _fit(self, dataset: Dataset, progress: bool) -> None:
        with threadpool_limits(1, "blas"):  # implicit runs its own threads
            model = self._implicit()
            model.fit(confidence_matrix(dataset, self.event_weights), show_progress=progress)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)

    def fold_in(self, user_items: sp.csr_matrix) -> np.ndarray:
        """Factors of users (one row of events each) solved against the item
        factors: implicit's least squares in its Cholesky form, as its
        ``recalculate_user`` solves it, in NumPy with the Gram matrix kept.
        ``recalculate_user`` computes the Gram matrix again and starts a
        thread pool at each call, which cost a served request 20 ms."""
        user_items = sp.csr_matrix(user_items, dtype=np.float32)
        items = self.item_factors_
        base = self._gram() + self.regularization * np.eye(items.shape[1], dtype=np.float32)
        factors = np.zeros((user_items.shape[0], items.shape[1]), np.float32)
        for user in range(user_items.shape[0]):
            start, end = user_items.indptr[user], user_items.indptr[user + 1]
            if start == end:
                continue
            rows = items[user_items.indices[start:end]]
            confidence = self.alpha * user_items.data[start:end]
            gram = base + (rows.T * (confidence - 1.0)) @ rows
            factors[user] = np.linalg.solve(gram, rows.T @ confidence)
        return factors

    def _gram(self) -> np.ndarray:
        """YᵀY of the item factors, kept until they change."""
        if getattr(self, "_item_gram_of", None) is not self.item_factors_:
            self._item_gram_of = self.item_factors_
            self._item_gram = self.item_factors_.T @ self.item_factors_
        return self._item_gram

    def _score(self, users: np.ndarray, history: sp.csr_matrix | None) -> np.ndarray:
        factors = self.user_factors_[users] if history is None else self.fold_in(history)
        return factors @ self.item_factors_.T
