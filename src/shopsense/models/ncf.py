"""NCF (He et al., 2017): neural collaborative filtering, GMF and MLP side by side."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from shopsense.data.dataset import Dataset
from shopsense.models.factorization import cosine
from shopsense.models.neural import TorchRecommender
from shopsense.models.training import TrainingSettings

SCORE_USERS = 64  # users scored per forward pass (× every item)


def _net(n_users: int, n_items: int, factors: int, dropout: float):
    import torch
    from torch import nn

    class NCFNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.user_gmf = nn.Embedding(n_users, factors)
            self.item_gmf = nn.Embedding(n_items, factors)
            self.user_mlp = nn.Embedding(n_users, factors)
            self.item_mlp = nn.Embedding(n_items, factors)
            self.mlp = nn.Sequential(
                nn.Linear(2 * factors, factors),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(factors, factors // 2),
                nn.ReLU(),
            )
            self.out = nn.Linear(factors + factors // 2, 1)
            for emb in (self.user_gmf, self.item_gmf, self.user_mlp, self.item_mlp):
                nn.init.normal_(emb.weight, std=0.01)

        def forward(self, users, items):
            gmf = self.user_gmf(users) * self.item_gmf(items)
            mlp = self.mlp(torch.cat([self.user_mlp(users), self.item_mlp(items)], dim=-1))
            return self.out(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)

    return NCFNet()


class NCF(TorchRecommender):
    """Pointwise training: each interaction against ``n_negatives`` random items
    (binary cross-entropy). It has no fold-in: new users need a refit."""

    name = "ncf"
    training_defaults = TrainingSettings(epochs=30, batch_size=2048, patience=5)

    def __init__(
        self,
        factors: int = 32,
        dropout: float = 0.1,
        n_negatives: int = 4,
        **training: Any,
    ) -> None:
        self._keep_params(locals())

    def _build_net(self) -> None:
        self.net_ = _net(self.n_users_, self.n_items_, self.factors, self.dropout)

    def _forget_users(self, users: np.ndarray) -> None:
        import torch

        with torch.no_grad():
            for embedding in (self.net_.user_gmf, self.net_.user_mlp):
                embedding.weight[torch.as_tensor(users)] = 0.0

    def _build(self, dataset: Dataset) -> None:
        self._positives = self.user_items_.tocoo()
        self._build_net()

    def _batches(self, rng: np.random.Generator):
        import torch

        pos_users, pos_items = self._positives.row, self._positives.col
        k = self.n_negatives
        users = np.repeat(pos_users, k + 1)
        items = np.repeat(pos_items, k + 1)
        labels = np.tile(np.r_[1.0, np.zeros(k)], len(pos_users)).astype(np.float32)
        negatives = labels == 0
        items[negatives] = rng.integers(0, self.n_items_, int(negatives.sum()))
        order = rng.permutation(len(users))
        size = self.training.batch_size
        for start in range(0, len(order), size):
            take = order[start : start + size]
            yield tuple(
                torch.from_numpy(a[take]).to(self._device)
                for a in (users.astype(np.int64), items.astype(np.int64), labels)
            )

    def _batch_loss(self, batch):
        import torch.nn.functional as F

        users, items, labels = batch
        return F.binary_cross_entropy_with_logits(self.net_(users, items), labels)

    def _score(self, users: np.ndarray, history: sp.csr_matrix | None) -> np.ndarray:
        import torch

        out = np.empty((len(users), self.n_items_), np.float32)
        all_items = torch.arange(self.n_items_, device=self._device)
        with torch.no_grad():
            for start in range(0, len(users), SCORE_USERS):
                chunk = torch.as_tensor(users[start : start + SCORE_USERS], device=self._device)
                u = chunk.repeat_interleave(self.n_items_)
                i = all_items.repeat(len(chunk))
                out[start : start + len(chunk)] = self.net_(u, i).view(len(chunk), -1).cpu().numpy()
        return out

    def _similarity(self, items: np.ndarray) -> np.ndarray:
        return cosine(self.net_.item_gmf.weight.detach().cpu().numpy(), items)
