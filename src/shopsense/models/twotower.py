"""Two towers: items from their side features, users from the items they had.

The item tower embeds the leaf and top-level category, brand, price bucket,
the title's sentence embedding and (optionally) the item id; a new item with
no events gets a vector from its features alone (``add_items``), so it can be
retrieved at once. The user tower pools the vectors of the user's items, so
fresh history needs no refit. ``item_embeddings`` exports every item vector
for approximate nearest-neighbour retrieval.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from shopsense.data.dataset import Dataset
from shopsense.data.schema import CATEGORY_SEP
from shopsense.features.sentence import DIM as TEXT_DIM
from shopsense.features.sentence import SentenceEmbedder
from shopsense.models.neural import TorchRecommender
from shopsense.models.training import TrainingSettings

PRICE_BUCKETS = 10
FEATURES = ("leaf", "top", "brand", "price")


def _net(sizes: dict[str, int], n_ids: int, dim: int, text: bool, dropout: float):
    import torch
    import torch.nn.functional as F
    from torch import nn

    class TwoTowerNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tables = nn.ModuleDict({k: nn.Embedding(sizes[k] + 1, dim) for k in FEATURES})
            self.ids = nn.Embedding(n_ids, dim) if n_ids else None
            self.text = nn.Linear(TEXT_DIM, dim) if text else None
            self.item_mlp = nn.Sequential(
                nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim)
            )
            self.user_mlp = nn.Sequential(
                nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim)
            )

        def items(self, codes, text_vectors):
            x = sum(self.tables[k](codes[:, i]) for i, k in enumerate(FEATURES))
            if self.text is not None:
                x = x + self.text(text_vectors)
            if self.ids is not None:
                n = codes.shape[0]
                known = torch.arange(n, device=codes.device) < self.ids.num_embeddings
                ids = torch.zeros(n, x.shape[1], device=codes.device)
                ids[known] = self.ids.weight[: int(known.sum())]
                x = x + ids
            return F.normalize(self.item_mlp(x), dim=-1)

        def users(self, history, item_vectors):
            """``history``: (batch, length) item ids, -1 for padding."""
            valid = (history >= 0).unsqueeze(-1).float()
            pooled = (item_vectors[history.clamp(min=0)] * valid).sum(1)
            pooled = pooled / valid.sum(1).clamp(min=1.0)
            return F.normalize(self.user_mlp(pooled), dim=-1)

    return TwoTowerNet()


class TwoTower(TorchRecommender):
    """Softmax over all item vectors of ``cos(user, item) / temperature``."""

    name = "twotower"
    training_defaults = TrainingSettings(epochs=50, batch_size=256, patience=5)

    def __init__(
        self,
        dim: int = 64,
        text: bool = True,
        use_ids: bool = True,
        max_history: int = 50,
        temperature: float = 0.05,
        dropout: float = 0.1,
        cache_dir: str | None = None,
        **training: Any,
    ) -> None:
        self._keep_params(locals())

    # ------------------------------------------------------------------ features
    def _fit_vocab(self, items: pd.DataFrame) -> None:
        category = items["category"].fillna("").astype(str)
        price = pd.to_numeric(items["price"], errors="coerce").dropna().to_numpy(float)
        self.vocab_ = {
            "leaf": sorted(set(category) - {""}),
            "top": sorted({c.split(CATEGORY_SEP)[0] for c in category} - {""}),
            "brand": sorted(set(items["brand"].dropna().astype(str))),
            "price": np.quantile(price, np.linspace(0, 1, PRICE_BUCKETS + 1)[1:-1]).tolist()
            if len(price)
            else [],
        }

    def _codes(self, items: pd.DataFrame) -> np.ndarray:
        """Feature codes per item; 0 is unknown (a value not seen in training)."""
        category = items["category"].fillna("").astype(str)
        columns = {
            "leaf": category,
            "top": category.str.split(CATEGORY_SEP).str[0],
            "brand": items["brand"].fillna("").astype(str),
        }
        codes = np.zeros((len(items), len(FEATURES)), np.int64)
        for i, name in enumerate(FEATURES[:3]):
            index = {v: j + 1 for j, v in enumerate(self.vocab_[name])}
            codes[:, i] = columns[name].map(lambda v, idx=index: idx.get(v, 0)).to_numpy()
        price = pd.to_numeric(items["price"], errors="coerce").to_numpy(float)
        bucket = np.searchsorted(np.asarray(self.vocab_["price"]), price) + 1
        codes[:, 3] = np.where(np.isnan(price), 0, bucket)
        return codes

    def _text(self, items: pd.DataFrame) -> np.ndarray:
        if not self.text:
            return np.zeros((len(items), TEXT_DIM), np.float32)
        titles = items["title"].fillna("").astype(str).tolist()
        return SentenceEmbedder(cache_dir=self.cache_dir).encode(titles)

    def _sizes(self) -> dict[str, int]:
        return {
            "leaf": len(self.vocab_["leaf"]),
            "top": len(self.vocab_["top"]),
            "brand": len(self.vocab_["brand"]),
            "price": PRICE_BUCKETS,
        }

    # ------------------------------------------------------------------ training
    def _build_net(self) -> None:
        n_ids = self.n_id_items_ if self.use_ids else 0
        self.net_ = _net(self._sizes(), n_ids, self.dim, self.text, self.dropout)

    def _build(self, dataset: Dataset) -> None:
        self._fit_vocab(dataset.items)
        self.codes_ = self._codes(dataset.items)
        self.text_vectors_ = self._text(dataset.items)
        self.n_id_items_ = dataset.n_items
        self._build_net()

    def _item_vectors(self):
        import torch

        return self.net_.items(
            torch.from_numpy(self.codes_).to(self._device),
            torch.from_numpy(self.text_vectors_).to(self._device),
        )

    def _histories(self, rows: sp.csr_matrix, rng: np.random.Generator | None = None):
        """Padded item ids (-1 = none), the ``max_history`` last (or random) per row."""
        out = np.full((rows.shape[0], self.max_history), -1, np.int64)
        for r in range(rows.shape[0]):
            items = rows.indices[rows.indptr[r] : rows.indptr[r + 1]]
            if len(items) > self.max_history:
                items = (
                    rng.choice(items, self.max_history, replace=False)
                    if rng is not None
                    else items[-self.max_history :]
                )
            out[r, : len(items)] = items
        return out

    def _batches(self, rng: np.random.Generator):
        import torch

        x = self.user_items_
        users = np.flatnonzero(np.diff(x.indptr) >= 2)
        users = users[rng.permutation(len(users))]
        size = self.training.batch_size
        for start in range(0, len(users), size):
            batch = users[start : start + size]
            rows = x[batch]
            # One held-out item per user is the target; the others are the history.
            pick = rows.indptr[:-1] + (rng.random(len(batch)) * np.diff(rows.indptr)).astype(int)
            targets = rows.indices[pick]
            keep = np.ones(len(rows.indices), bool)
            keep[pick] = False
            history = sp.csr_matrix(
                (
                    rows.data[keep],
                    rows.indices[keep],
                    np.r_[0, np.cumsum(np.diff(rows.indptr) - 1)],
                ),
                shape=rows.shape,
            )
            yield (
                torch.from_numpy(self._histories(history, rng)).to(self._device),
                torch.from_numpy(targets.astype(np.int64)).to(self._device),
            )

    def _batch_loss(self, batch):
        import torch.nn.functional as F

        history, targets = batch
        items = self._item_vectors()
        users = self.net_.users(history, items)
        logits = users @ items.T / self.temperature
        # The user's other items are positives too: they are not negatives here.
        rows = history.clamp(min=0)
        mask = (history >= 0) & (rows != targets.unsqueeze(1))
        logits = logits.scatter(1, rows, logits.gather(1, rows).masked_fill(mask, float("-inf")))
        return F.cross_entropy(logits, targets)

    # ------------------------------------------------------------------ scoring
    def _score(self, users: np.ndarray, history: sp.csr_matrix | None) -> np.ndarray:
        import torch

        rows = self._history(users, history)
        with torch.no_grad():
            items = self._item_vectors()
            vectors = self.net_.users(
                torch.from_numpy(self._histories(sp.csr_matrix(rows))).to(self._device), items
            )
            return (vectors @ items.T).cpu().numpy()

    def item_embeddings(self) -> np.ndarray:
        """Every item's vector (unit length), for nearest-neighbour retrieval."""
        import torch

        with torch.no_grad():
            return self._item_vectors().cpu().numpy()

    def _similarity(self, items: np.ndarray) -> np.ndarray:
        emb = self.item_embeddings()
        return emb[items] @ emb.T

    def add_items(self, items: pd.DataFrame) -> np.ndarray:
        """Append new catalog rows (cold-start items); returns their dense ids."""
        self._check_fitted()
        self.codes_ = np.vstack([self.codes_, self._codes(items)])
        self.text_vectors_ = np.vstack([self.text_vectors_, self._text(items)])
        start, self.n_items_ = self.n_items_, self.n_items_ + len(items)
        m = self.user_items_
        self.user_items_ = sp.csr_matrix(
            (m.data, m.indices, m.indptr), shape=(m.shape[0], self.n_items_)
        )
        return np.arange(start, self.n_items_)

    # ------------------------------------------------------------------ storage
    def _json_state(self) -> dict[str, Any]:
        return {**super()._json_state(), "vocab": self.vocab_, "n_id_items": self.n_id_items_}

    def _set_json_state(self, state: dict[str, Any]) -> None:
        super()._set_json_state(state)
        self.vocab_, self.n_id_items_ = state["vocab"], state["n_id_items"]

    def _state(self) -> dict[str, np.ndarray]:
        return {**super()._state(), "codes": self.codes_, "text": self.text_vectors_}

    def _restore_extra(self, arrays: dict[str, np.ndarray]) -> None:
        self.codes_, self.text_vectors_ = arrays["codes"], arrays["text"]
