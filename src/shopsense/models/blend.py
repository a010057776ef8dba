"""Hybrid (a): a weighted blend of any registered models' normalized scores."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from shopsense.data.dataset import Dataset
from shopsense.errors import ShopsenseError
from shopsense.models.base import Recommender
from shopsense.models.composite import (
    build_parts,
    fit_parts,
    forget_in_parts,
    normalized,
    part_scores,
    parts_arrays,
    parts_json,
    restore_parts,
)


class Blend(Recommender):
    """``Σ weight_m · normalize(score_m)``; ``models`` maps names to parameters,
    ``weights`` names to weights (1 for a model not named)."""

    name = "blend"

    def __init__(
        self,
        models: dict[str, dict] | None = None,
        weights: dict[str, float] | None = None,
        normalize: str = "minmax",
    ) -> None:
        self.models = models
        self.weights = weights
        self.normalize = normalize

    def _spec(self) -> dict[str, dict]:
        return self.models or {"itemknn": {}, "content": {}, "trending": {}}

    def _weights(self) -> dict[str, float]:
        spec = self._spec()
        default = {"itemknn": 1.0, "content": 0.5, "trending": 0.2} if self.models is None else {}
        weights = self.weights or default
        unknown = set(weights) - set(spec)
        if unknown:
            raise ShopsenseError(f"weights name models not in the blend: {sorted(unknown)}")
        return {name: float(weights.get(name, 1.0)) for name in spec}

    @staticmethod
    def search_space(trial: Any) -> dict:
        return {
            "weights": {
                "itemknn": 1.0,
                "content": trial.suggest_float("content", 0.0, 2.0),
                "trending": trial.suggest_float("trending", 0.0, 1.0),
            }
        }

    def _fit(self, dataset: Dataset, progress: bool) -> None:
        self._weights()
        self.parts_ = build_parts(self._spec())
        fit_parts(self.parts_, dataset, progress)

    def _score(self, users: np.ndarray, history: sp.csr_matrix | None) -> np.ndarray:
        weights = self._weights()
        total = np.zeros((len(users), self.n_items_), np.float32)
        for name, scores in part_scores(self.parts_, users, history).items():
            total += weights[name] * normalized(scores, self.normalize)
        return total

    def _similarity(self, items: np.ndarray) -> np.ndarray:
        weights = self._weights()
        return sum(
            weights[n] * normalized(m.similar_scores(items), self.normalize)
            for n, m in self.parts_.items()
        )

    def _json_state(self) -> dict[str, Any]:
        return parts_json(self.parts_)

    def _state(self) -> dict[str, np.ndarray]:
        return parts_arrays(self.parts_)

    def _forget_users(self, users: np.ndarray) -> None:
        forget_in_parts(self.parts_, self, users)

    def _set_json_state(self, state: dict[str, Any]) -> None:
        self._parts_json = state

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.parts_ = build_parts(self._spec())
        restore_parts(self.parts_, self, self._parts_json, arrays)
