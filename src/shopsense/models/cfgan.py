"""CFGAN (Chae et al., 2018): a generative adversarial recommender.

The generator turns a user's history vector into a vector of scores over the
whole catalog; the discriminator tells real history vectors from generated
ones, both conditioned on the history. Zero reconstruction (ZR) pulls the
generator's output down on sampled items the user never had, and partial
masking (PM) shows the discriminator those items too. The generator's output
is the recommendation score, evaluated like every other model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from shopsense.data.dataset import Dataset
from shopsense.models.neural import TorchRecommender, adamw
from shopsense.models.training import TrainingSettings


def _nets(n_items: int, hidden: int, dropout: float):
    from torch import nn

    class CFGANNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.generator = nn.Sequential(
                nn.Linear(n_items, hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Linear(hidden, n_items),
                nn.Sigmoid(),
            )
            self.discriminator = nn.Sequential(
                nn.Linear(2 * n_items, hidden),
                nn.ReLU(),
                nn.Linear(hidden, 1),
            )

    return CFGANNet()


class CFGAN(TorchRecommender):
    """Generator and discriminator trained in turns; ``zr_ratio`` and ``pm_ratio``
    are the shares of unseen items sampled for ZR and PM, ``zr_weight`` ZR's weight."""

    name = "cfgan"
    training_defaults = TrainingSettings(epochs=100, batch_size=64, learning_rate=1e-4)

    def __init__(
        self,
        hidden: int = 256,
        dropout: float = 0.2,
        zr_ratio: float = 0.5,
        pm_ratio: float = 0.5,
        zr_weight: float = 0.1,
        **training: Any,
    ) -> None:
        self._keep_params(locals())

    def _build_net(self) -> None:
        self.net_ = _nets(self.n_items_, self.hidden, self.dropout)

    def _build(self, dataset: Dataset) -> None:
        self._build_net()

    def _make_optimizers(self) -> list[Any]:
        self._g_opt, self._d_opt = (
            adamw(part.parameters(), self.training.learning_rate, self.weight_decay_)
            for part in (self.net_.generator, self.net_.discriminator)
        )
        return [self._g_opt, self._d_opt]

    def _batches(self, rng: np.random.Generator):
        import torch

        x = self.user_items_
        users = np.flatnonzero(np.diff(x.indptr) > 0)
        users = users[rng.permutation(len(users))]
        size = self.training.batch_size
        for start in range(0, len(users), size):
            real = x[users[start : start + size]].toarray().astype(np.float32)
            unseen = real == 0
            zr = unseen & (rng.random(real.shape) < self.zr_ratio)
            pm = unseen & (rng.random(real.shape) < self.pm_ratio)
            yield tuple(
                torch.from_numpy(a.astype(np.float32)).to(self._device) for a in (real, zr, pm)
            )

    def _train_step(self, batch) -> float:
        import torch
        import torch.nn.functional as F

        real, zr, pm = batch
        d = self.net_.discriminator
        fake = self.net_.generator(real)
        # Discriminator: real histories against generated ones, masked to the
        # user's items plus the partially-masked unseen ones.
        shown = fake * (real + pm)
        d_real = d(torch.cat([real, real], dim=1))
        d_fake = d(torch.cat([shown.detach(), real], dim=1))
        d_loss = F.binary_cross_entropy_with_logits(
            d_real, torch.ones_like(d_real)
        ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
        self._d_opt.zero_grad()
        d_loss.backward()
        self._d_opt.step()
        # Generator: fool the discriminator, and keep sampled unseen items near zero.
        g_fake = d(torch.cat([shown, real], dim=1))
        zr_penalty = ((fake * zr) ** 2).sum(dim=1).mean()
        g_loss = (
            F.binary_cross_entropy_with_logits(g_fake, torch.ones_like(g_fake))
            + self.zr_weight * zr_penalty
        )
        self._g_opt.zero_grad()
        g_loss.backward()
        self._g_opt.step()
        self._update_average()
        return float(g_loss.detach())

    def _score(self, users: np.ndarray, history: sp.csr_matrix | None) -> np.ndarray:
        import torch

        rows = self._history(users, history).toarray().astype(np.float32)
        with torch.no_grad():
            return self.net_.generator(torch.from_numpy(rows).to(self._device)).cpu().numpy()

    def _similarity(self, items: np.ndarray) -> np.ndarray:
        """Items by the generator's response to a history of that one item."""
        import torch

        probe = np.zeros((len(items), self.n_items_), np.float32)
        probe[np.arange(len(items)), items] = 1.0
        with torch.no_grad():
            return self.net_.generator(torch.from_numpy(probe).to(self._device)).cpu().numpy()
