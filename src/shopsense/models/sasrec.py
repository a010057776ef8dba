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

from shopsense.errors import ShopsenseError
from shopsense.models.neural import N_TYPES, NextItemRecommender


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
            # Position 0 is the most recent step, whatever the padded width.
            pos = torch.arange(length - 1, -1, -1, device=items.device)
            x = self.item_emb(items) * math.sqrt(hidden) + self.pos_emb(pos) + self.type_emb(types)
            x = self.dropout(x)
            # Each position sees itself and earlier real steps; padding sees only itself.
            pad = items == 0
            mask = self.causal[:length, :length].unsqueeze(0) | pad.unsqueeze(1)
            mask = mask & ~torch.eye(length, dtype=torch.bool, device=items.device)
            mask = mask.repeat_interleave(heads, dim=0)
            return self.norm(self.encoder(x, mask=mask))

    return SASRecNet()


class SASRec(NextItemRecommender):
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
        eval_every: int = 1,
        max_seconds: float | None = None,
        seed: int = 0,
        device: str = "cpu",
        text_init: bool = False,
        cache_dir: str | None = None,
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
        self.eval_every = eval_every
        self.max_seconds = max_seconds
        self.seed = seed
        self.device = device
        self.text_init = text_init
        self.cache_dir = cache_dir

    def _build_net(self) -> None:
        if self.hidden % self.heads:
            raise ShopsenseError("hidden must be a multiple of heads")
        self.net_ = _net(
            self.n_items_, self.hidden, self.layers, self.heads, self.max_len, self.dropout
        )
