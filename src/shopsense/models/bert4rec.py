"""BERT4Rec (Sun et al., 2019): a bidirectional transformer trained to fill in
masked steps; to recommend, a mask is put after the last step."""

from __future__ import annotations

import math

import numpy as np

from shopsense.models.neural import N_TYPES, SequenceRecommender


def _net(n_items: int, hidden: int, layers: int, heads: int, max_len: int, dropout: float):
    import torch
    from torch import nn

    class BERT4RecNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # 0 is padding, 1..n the items, n + 1 the mask token.
            self.item_emb = nn.Embedding(n_items + 2, hidden, padding_idx=0)
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
            nn.init.normal_(self.item_emb.weight, std=0.02)

        def forward(self, items, types):
            length = items.shape[1]
            # Position 0 is the most recent step, whatever the padded width.
            pos = torch.arange(length - 1, -1, -1, device=items.device)
            x = self.item_emb(items) * math.sqrt(hidden) + self.pos_emb(pos) + self.type_emb(types)
            pad = items == 0
            # Padding is never attended to, except by itself (no empty rows).
            mask = pad.unsqueeze(1) & ~torch.eye(length, dtype=torch.bool, device=items.device)
            mask = mask.repeat_interleave(heads, dim=0)
            return self.norm(self.encoder(self.dropout(x), mask=mask))

    return BERT4RecNet()


class BERT4Rec(SequenceRecommender):
    """Masked-item training with ``mask_prob`` of the steps hidden per sequence."""

    name = "bert4rec"

    def __init__(
        self,
        hidden: int = 64,
        layers: int = 2,
        heads: int = 2,
        max_len: int = 50,
        dropout: float = 0.2,
        mask_prob: float = 0.2,
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
        self.mask_prob = mask_prob
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
        self.net_ = _net(
            self.n_items_, self.hidden, self.layers, self.heads, self.max_len, self.dropout
        )

    def _batches(self, rng: np.random.Generator):
        import torch

        mask_id = self.n_items_ + 1
        for items, types in self._length_batches(rng, 1, self.max_len):
            real = items > 0
            masked = real & (rng.random(items.shape) < self.mask_prob)
            # Every sequence masks at least its last step, the one recommendation predicts.
            masked[:, -1] |= real[:, -1]
            inputs = np.where(masked, mask_id, items)
            input_types = np.where(masked, 0, types)
            yield tuple(
                torch.from_numpy(a).to(self._device) for a in (inputs, input_types, items, masked)
            )

    def _batch_loss(self, batch):
        import torch.nn.functional as F

        inputs, types, targets, masked = batch
        hidden = self.net_(inputs, types)[masked]
        logits = hidden @ self.net_.item_emb.weight[1:-1].T
        return F.cross_entropy(logits, targets[masked] - 1)

    def _infer(self, items, types):
        import torch

        mask = torch.full(
            (items.shape[0], 1), self.n_items_ + 1, dtype=items.dtype, device=items.device
        )
        keep = slice(1, None) if items.shape[1] >= self.max_len else slice(None)
        items = torch.cat([items[:, keep], mask], dim=1)
        types = torch.cat([types[:, keep], torch.zeros_like(mask)], dim=1)
        return self.net_(items, types)[:, -1] @ self.net_.item_emb.weight[1:-1].T

    def item_embeddings(self) -> np.ndarray:
        return self.net_.item_emb.weight[1:-1].detach().cpu().numpy()
