"""SASRec (Kang & McAuley, 2018): causal self-attention over a user's steps.

Trained on every position of each sequence at once (the causal mask keeps
each position from seeing later ones), with either full softmax
cross-entropy over the catalog or, for catalogs too large for it, sampled
softmax with the logQ correction for popularity-sampled negatives. The
behaviour of each step (view, cart, ...) is an input embedding, so a cart
weighs differently from a view.
"""

from __future__ import annotations

import math

import numpy as np

from shopsense.data.dataset import Dataset
from shopsense.errors import ShopsenseError
from shopsense.models.neural import N_TYPES, SequenceRecommender


def _net(n_items: int, hidden: int, layers: int, heads: int, max_len: int, dropout: float):
    import torch
    from torch import nn

    class SASRecNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=0)
            self.type_emb = nn.Embedding(N_TYPES + 1, hidden, padding_idx=0)
            self.pos_emb = nn.Embedding(max_len, hidden)
            layer = nn.TransformerEncoderLayer(
                hidden,
                heads,
                dim_feedforward=hidden * 4,
                dropout=dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(hidden)
            self.dropout = nn.Dropout(dropout)
            causal = torch.triu(torch.ones(max_len, max_len, dtype=torch.bool), diagonal=1)
            self.register_buffer("causal", causal, persistent=False)
            nn.init.normal_(self.item_emb.weight, std=0.02)

        def forward(self, items, types):
            length = items.shape[1]
            pos = torch.arange(length, device=items.device)
            x = self.item_emb(items) * math.sqrt(hidden) + self.pos_emb(pos) + self.type_emb(types)
            x = self.dropout(x)
            # Each position sees itself and earlier real steps; padding sees only itself.
            pad = items == 0
            mask = self.causal[:length, :length].unsqueeze(0) | pad.unsqueeze(1)
            mask = mask & ~torch.eye(length, dtype=torch.bool, device=items.device)
            mask = mask.repeat_interleave(heads, dim=0)
            return self.norm(self.encoder(x, mask=mask))

    return SASRecNet()


class SASRec(SequenceRecommender):
    """Next-item prediction from the last ``max_len`` steps."""

    name = "sasrec"

    def __init__(
        self,
        hidden: int = 64,
        layers: int = 2,
        heads: int = 2,
        max_len: int = 50,
        dropout: float = 0.3,
        loss: str = "ce",
        n_negatives: int = 256,
        epochs: int = 200,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        patience: int = 10,
        max_seconds: float | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        self.hidden = hidden
        self.layers = layers
        self.heads = heads
        self.max_len = max_len
        self.dropout = dropout
        self.loss = loss
        self.n_negatives = n_negatives
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.patience = patience
        self.max_seconds = max_seconds
        self.seed = seed
        self.device = device

    def _build_net(self) -> None:
        if self.loss not in ("ce", "sampled"):
            raise ShopsenseError(f"loss must be 'ce' or 'sampled', not {self.loss!r}")
        if self.hidden % self.heads:
            raise ShopsenseError("hidden must be a multiple of heads")
        self.net_ = _net(
            self.n_items_, self.hidden, self.layers, self.heads, self.max_len, self.dropout
        )

    def _build(self, dataset: Dataset) -> None:
        super()._build(dataset)
        counts = np.bincount(self.sequences_.items, minlength=self.n_items_) + 1.0
        self._sampling = counts / counts.sum()

    def _batches(self, rng: np.random.Generator):
        import torch

        lengths = np.diff(self.sequences_.indptr)
        users = np.flatnonzero(lengths >= 2)
        users = users[rng.permutation(len(users))]
        for start in range(0, len(users), self.batch_size):
            rows = self.sequences_.rows(users[start : start + self.batch_size])
            items, types = rows.padded(self.max_len + 1)
            yield (
                torch.from_numpy(items).to(self._device),
                torch.from_numpy(types).to(self._device),
                rng,
            )

    def _batch_loss(self, batch):
        import torch
        import torch.nn.functional as F

        items, types, rng = batch
        inputs, targets = items[:, :-1], items[:, 1:]
        hidden = self.net_(inputs, types[:, :-1])
        valid = (targets > 0) & (inputs > 0)
        h = hidden[valid]
        target = targets[valid] - 1
        weights = self.net_.item_emb.weight[1:]
        if self.loss == "ce":
            return F.cross_entropy(h @ weights.T, target)
        # Sampled softmax: the positive against popularity-sampled negatives, each
        # logit corrected by -log q so the estimate is unbiased for the full softmax.
        negatives = torch.from_numpy(
            rng.choice(self.n_items_, size=self.n_negatives, p=self._sampling)
        ).to(h.device)
        log_q = torch.log(torch.as_tensor(self._sampling, dtype=h.dtype, device=h.device))
        pos = (h * weights[target]).sum(-1, keepdim=True) - log_q[target].unsqueeze(1)
        neg = h @ weights[negatives].T - log_q[negatives].unsqueeze(0)
        neg = neg.masked_fill(negatives.unsqueeze(0) == target.unsqueeze(1), float("-inf"))
        logits = torch.cat([pos, neg], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(target), dtype=torch.long, device=h.device))

    def _infer(self, items, types):
        hidden = self.net_(items, types)[:, -1]
        return hidden @ self.net_.item_emb.weight[1:].T
