"""Trending: popularity that fades with age, the store's "hot right now" shelf."""

from __future__ import annotations

import numpy as np

from shopsense.data.dataset import Dataset
from shopsense.data.schema import DEFAULT_EVENT_WEIGHTS, EVENT_TYPES
from shopsense.models.pop import ItemScores

DAY = 86_400.0


class Trending(ItemScores):
    """Each event adds its behaviour weight times ``0.5 ** (age / half_life)``,
    its age counted from the newest event in the training data."""

    name = "trending"

    def __init__(self, half_life_days: float = 7.0, event_weights: dict | None = None) -> None:
        self.half_life_days = half_life_days
        self.event_weights = event_weights

    @staticmethod
    def search_space(trial) -> dict:
        return {"half_life_days": trial.suggest_float("half_life_days", 0.5, 60.0, log=True)}

    def _fit(self, dataset: Dataset, progress: bool) -> None:
        ev = dataset.interactions
        weights = {**DEFAULT_EVENT_WEIGHTS, **(self.event_weights or {})}
        table = np.array([weights.get(t, 0.0) for t in EVENT_TYPES])
        ts = ev["timestamp"].to_numpy(dtype=float)
        age = (ts.max() - ts) if len(ts) else ts
        unit = 1.0 if dataset.time_is_order else DAY
        decay = 0.5 ** (age / (self.half_life_days * unit))
        w = table[ev["type"].cat.codes.to_numpy()] * decay
        self.item_scores_ = np.bincount(
            ev["item"].to_numpy(), weights=w, minlength=dataset.n_items
        ).astype(np.float32)
