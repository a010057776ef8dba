"""Recommendations for a new or anonymous user: what is popular now, pulled
towards the category of the current session when it is known."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from shopsense.data.dataset import Dataset
from shopsense.data.schema import CATEGORY_SEP
from shopsense.models.trending import Trending
from shopsense.ranking import top_k


class ColdStart:
    """``(1 - context_weight) · popularity + context_weight · [item in category]``,
    popularity being the time-decayed trending score scaled to [0, 1]."""

    def __init__(self, half_life_days: float = 7.0, context_weight: float = 0.7) -> None:
        self.half_life_days = half_life_days
        self.context_weight = context_weight

    def fit(self, dataset: Dataset) -> ColdStart:
        scores = Trending(half_life_days=self.half_life_days).fit(dataset).item_scores_
        self.popularity_ = scores / max(float(scores.max()), 1e-12)
        self.categories_ = dataset.items["category"].fillna("").astype(str).to_numpy()
        return self

    def session_category(self, items: Iterable[int]) -> str | None:
        """The most frequent category among the session's items (None if none)."""
        cats = [self.categories_[i] for i in items if self.categories_[i]]
        if not cats:
            return None
        values, counts = np.unique(cats, return_counts=True)
        return str(values[np.argmax(counts)])

    def scores(self, category: str | None = None) -> np.ndarray:
        if not category:
            return self.popularity_.copy()
        cats = self.categories_
        match = (cats == category) | np.char.startswith(cats.astype(str), category + CATEGORY_SEP)
        w = self.context_weight
        return (1 - w) * self.popularity_ + w * match

    def recommend(
        self,
        k: int = 10,
        category: str | None = None,
        session_items: Iterable[int] = (),
        exclude: Iterable[int] = (),
    ):
        """Top-``k`` item ids and scores; ``session_items`` give the category if not named."""
        session_items = list(session_items)
        category = category or self.session_category(session_items)
        scores = self.scores(category)
        blocked = [*session_items, *exclude]
        if blocked:
            scores[np.asarray(blocked, dtype=int)] = -np.inf
        ids, values = top_k(scores[None, :], k)
        return ids[0], values[0]
