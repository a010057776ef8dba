"""What the neighbourhood models share: ``k`` neighbours, cosine shrinkage."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from shopsense.models.base import Recommender


def row_norms(m: sp.csr_matrix) -> np.ndarray:
    """Euclidean norm of each row of a sparse matrix."""
    return np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel()).astype(np.float32)


class NeighbourModel(Recommender):
    """Cosine similarity ``x·y / (‖x‖‖y‖ + shrink)``, ``k`` neighbours kept."""

    def __init__(self, k: int = 100, shrink: float = 10.0) -> None:
        self.k = k
        self.shrink = shrink

    @staticmethod
    def search_space(trial: Any) -> dict:
        return {
            "k": trial.suggest_int("k", 10, 500, log=True),
            "shrink": trial.suggest_float("shrink", 0.0, 100.0),
        }
