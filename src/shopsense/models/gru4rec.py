"""GRU4Rec (Hidasi et al., 2016): a recurrent network over the user's steps."""

from __future__ import annotations

import math
from typing import Any

from shopsense.models.neural import N_TYPES, NextItemRecommender, with_fast_dropout


def _net(n_items: int, hidden: int, layers: int, dropout: float):
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    class GRU4RecNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=0)
            self.type_emb = nn.Embedding(N_TYPES + 1, hidden, padding_idx=0)
            self.gru = nn.GRU(
                hidden,
                hidden,
                num_layers=layers,
                batch_first=True,
                dropout=dropout if layers > 1 else 0.0,
            )
            self.dropout = nn.Dropout(dropout)
            nn.init.normal_(self.item_emb.weight, std=0.02)

        def forward(self, items, types):
            # Rows are right-aligned; a GRU must not read the padding, so each row is
            # shifted left, packed by its true length, run, and shifted back.
            width = items.shape[1]
            lengths = (items > 0).sum(dim=1).clamp(min=1)
            cols = torch.arange(width, device=items.device).unsqueeze(0)
            left = (cols + (width - lengths).unsqueeze(1)) % width
            x = self.item_emb(items) * math.sqrt(hidden) + self.type_emb(types)
            x = torch.gather(self.dropout(x), 1, left.unsqueeze(2).expand(-1, -1, hidden))
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = self.gru(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=width)
            right = (cols - (width - lengths).unsqueeze(1)) % width
            out = torch.gather(out, 1, right.unsqueeze(2).expand(-1, -1, hidden))
            return self.dropout(out)

    return with_fast_dropout(GRU4RecNet())


class GRU4Rec(NextItemRecommender):
    """Next-item prediction from a GRU's state after the last ``max_len`` steps.

    The defaults were chosen on validation (the dev protocol, as SASRec's) on
    ml-100k and the synthetic store: item embeddings from ALS and sampled
    softmax. Unlike SASRec, training on the validation steps lost there."""

    name = "gru4rec"

    def __init__(
        self,
        hidden: int = 64,
        layers: int = 1,
        max_len: int = 50,
        dropout: float = 0.2,
        loss: str = "sampled",
        n_negatives: int = 256,
        init: str = "als",
        cache_dir: str | None = None,
        **training: Any,
    ) -> None:
        self._keep_params(locals())

    def _build_net(self) -> None:
        self.net_ = _net(self.n_items_, self.hidden, self.layers, self.dropout)
