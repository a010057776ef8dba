"""BERT4Rec (Sun et al., 2019): a bidirectional transformer trained to fill in
masked steps; to recommend, a mask is put after the last step."""

from __future__ import annotations

from typing import Any

import numpy as np

from shopsense.models.neural import SequenceRecommender, transformer_net


class BERT4Rec(SequenceRecommender):
    """Masked-item training with ``mask_prob`` of the steps hidden per sequence.

    Item embeddings start from ALS by default: the one change that won on
    validation (the dev protocol, as SASRec's) on ml-100k and held level on
    the synthetic store."""

    name = "bert4rec"

    def __init__(
        self,
        hidden: int = 64,
        layers: int = 2,
        heads: int = 2,
        max_len: int = 50,
        dropout: float = 0.2,
        mask_prob: float = 0.2,
        init: str = "als",
        cache_dir: str | None = None,
        **training: Any,
    ) -> None:
        self._keep_params(locals())

    def _build_net(self) -> None:
        self.net_ = transformer_net(
            self.n_items_ + 2,
            self.hidden,
            self.layers,
            self.heads,
            self.max_len,
            self.dropout,
            False,
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
