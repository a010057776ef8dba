"""SASRec (Kang & McAuley, 2018): causal self-attention over a user's steps.

Trained on every position of each sequence at once (the causal mask keeps
each position from seeing later ones), with either full softmax
cross-entropy over the catalog or, for catalogs too large for it, sampled
softmax with the logQ correction for popularity-sampled negatives. The
behaviour of each step (view, cart, ...) is an input embedding, so a cart
weighs differently from a view. ``init`` starts the item embeddings from
ALS, item-KNN or title vectors instead of noise
(:mod:`~shopsense.models.warm_start`). How it trains (epochs, learning rate,
budget, ...) is the shared :class:`~shopsense.models.training.TrainingSettings`.
"""

from __future__ import annotations

from typing import Any

from shopsense.data.dataset import Dataset
from shopsense.errors import ShopsenseError
from shopsense.models.neural import NextItemRecommender, transformer_net
from shopsense.models.training import TrainingSettings

SPARSE_DROPOUT = 0.5
DENSE_DROPOUT = 0.2
SPARSE_WEIGHT_DECAY = 0.3


class SASRec(NextItemRecommender):
    """Next-item prediction from the last ``max_len`` steps.

    The defaults are the settings the benchmarks chose on validation (the dev
    protocol: each user's test step removed, so the real one is never seen)
    on Amazon Beauty, ml-100k and the synthetic store: batch 256, learning
    rate 2e-3 with an EMA of the weights, sampled softmax, item embeddings
    from ALS, ``train_on_valid`` and a patience of 20 passes (on a 2,000-user
    sample one pass is noisy).

    ``dropout="auto"`` (learnt as ``dropout_``) picks by how long histories
    are: 0.5 where users have fewer steps on average than ``max_len`` (short,
    sparse histories such as Amazon's overfit without it), 0.2 where they
    fill the window (ml-100k, as the SASRec paper found on MovieLens); a
    number sets it outright. ``weight_decay="auto"`` follows the same rule:
    0.3 for short histories, none where they fill the window; the training
    report says which was used."""

    name = "sasrec"
    training_defaults = TrainingSettings(
        batch_size=256,
        learning_rate=2e-3,
        ema_decay=0.99,
        patience=20,
        valid_users=2000,
        train_on_valid=True,
        weight_decay="auto",
    )

    def __init__(
        self,
        hidden: int = 64,
        layers: int = 2,
        heads: int = 2,
        max_len: int = 50,
        dropout: float | str = "auto",
        loss: str = "sampled",
        n_negatives: int = 256,
        init: str = "als",
        cache_dir: str | None = None,
        **training: Any,
    ) -> None:
        self._keep_params(locals())

    def _build(self, dataset: Dataset) -> None:
        self.dropout_ = self._dropout_for(dataset)
        super()._build(dataset)

    def _dropout_for(self, dataset: Dataset) -> float:
        if self.dropout != "auto":
            if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float):
                raise ShopsenseError(f"dropout must be a number or 'auto', not {self.dropout!r}")
            return float(self.dropout)
        return SPARSE_DROPOUT if self._short_histories(dataset) else DENSE_DROPOUT

    def _weight_decay_for(self, dataset: Dataset) -> float:
        if self.training.weight_decay != "auto":
            return super()._weight_decay_for(dataset)
        return SPARSE_WEIGHT_DECAY if self._short_histories(dataset) else 0.0

    def _short_histories(self, dataset: Dataset) -> bool:
        """Whether users have fewer steps on average than ``max_len``."""
        users = dataset.interactions["user"].nunique()
        return len(dataset.interactions) / max(users, 1) < self.max_len

    def _json_state(self) -> dict[str, Any]:
        return {**super()._json_state(), "dropout": self.dropout_}

    def _set_json_state(self, state: dict[str, Any]) -> None:
        super()._set_json_state(state)
        self.dropout_ = state.get("dropout", self.dropout)

    def _build_net(self) -> None:
        if self.hidden % self.heads:
            raise ShopsenseError("hidden must be a multiple of heads")
        self.net_ = transformer_net(
            self.n_items_ + 1,
            self.hidden,
            self.layers,
            self.heads,
            self.max_len,
            self.dropout_,
            True,
        )
