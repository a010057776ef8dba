"""UserKNN: users who did what you did, by cosine similarity with shrinkage."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from shopsense.data.dataset import Dataset
from shopsense.models.neighbours import NeighbourModel, row_norms
from shopsense.ranking import top_k


class UserKNN(NeighbourModel):
    """A user's score for item ``j`` sums ``sim(u, v)`` over the ``k`` most similar
    users ``v`` who had ``j``; ``sim = x_u·x_v / (‖x_u‖‖x_v‖ + shrink)``.

    Neighbours are found from the history passed in, so fresh events count.
    """

    name = "userknn"

    def _fit(self, dataset: Dataset, progress: bool) -> None:
        x = self.user_items_
        self.user_norms_ = row_norms(x).astype(np.float32)

    def _score(self, users: np.ndarray, history: sp.csr_matrix | None) -> np.ndarray:
        x = self.user_items_
        history = self._history(users, history)
        dots = (history @ x.T).toarray()
        norms = row_norms(history).reshape(-1, 1)
        sims = dots / (norms * self.user_norms_[None, :] + self.shrink + 1e-12)
        sims[np.arange(len(users)), users] = 0.0  # a user is not their own neighbour
        k = min(self.k, x.shape[0])
        idx, vals = top_k(sims, k)
        rows = np.repeat(np.arange(len(users)), k)
        neighbours = sp.csr_matrix((vals.ravel(), (rows, idx.ravel())), shape=sims.shape)
        return (neighbours @ x).toarray()

    def _similarity(self, items: np.ndarray) -> np.ndarray:
        """Items by the cosine of their user vectors (the same users liked them)."""
        xt = self.user_items_.T.tocsr()
        norms = row_norms(xt)
        dots = (xt[items] @ xt.T).toarray()
        return dots / (norms[items, None] * norms[None, :] + self.shrink + 1e-12)

    def _forget_users(self, users: np.ndarray) -> None:
        self.user_norms_ = self.user_norms_.copy()
        self.user_norms_[users] = 0.0

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_norms": self.user_norms_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_norms_ = arrays["user_norms"]
