"""ItemKNN: item-to-item cosine similarity with shrinkage, top-k neighbours kept."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

from shopsense.data.dataset import Dataset
from shopsense.models.neighbours import NeighbourModel, row_norms

BLOCK_ITEMS = 2048


class ItemKNN(NeighbourModel):
    """``sim(i, j) = x_i·x_j / (‖x_i‖‖x_j‖ + shrink)`` over binary user vectors;
    a user's score for ``j`` sums ``sim(i, j)`` over the items ``i`` they had.

    ``k`` neighbours per item are kept, so the similarity matrix stays sparse.
    """

    name = "itemknn"

    def _fit(self, dataset: Dataset, progress: bool) -> None:
        x = self.user_items_.T.tocsr().astype(np.float32)  # items × users
        norms = row_norms(x)
        n = x.shape[0]
        k = min(self.k, max(n - 1, 1))
        rows, cols, vals = [], [], []
        blocks = range(0, n, BLOCK_ITEMS)
        for start in tqdm(blocks, desc="itemknn", unit=" block", disable=not progress):
            stop = min(start + BLOCK_ITEMS, n)
            dots = (x[start:stop] @ x.T).toarray()
            sims = dots / (norms[start:stop, None] * norms[None, :] + self.shrink + 1e-12)
            sims[np.arange(stop - start), np.arange(start, stop)] = 0.0
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            top_vals = np.take_along_axis(sims, top, axis=1)
            keep = top_vals > 0
            rows.append(np.repeat(np.arange(start, stop), k)[keep.ravel()])
            cols.append(top[keep])
            vals.append(top_vals[keep])
        self.similarity_ = sp.csr_matrix(
            (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n, n),
        )

    def _score(self, users: np.ndarray, history: sp.csr_matrix | None) -> np.ndarray:
        return (self._history(users, history) @ self.similarity_).toarray()

    def _similarity(self, items: np.ndarray) -> np.ndarray:
        return self.similarity_[items].toarray()

    def _state(self) -> dict[str, np.ndarray]:
        s = self.similarity_
        return {
            "similarity.indptr": s.indptr.astype(np.int64),
            "similarity.indices": s.indices.astype(np.int32),
            "similarity.data": s.data.astype(np.float32),
        }

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.similarity_ = sp.csr_matrix(
            (arrays["similarity.data"], arrays["similarity.indices"], arrays["similarity.indptr"]),
            shape=(self.n_items_, self.n_items_),
        )
