"""The learnt ranker: a LightGBM LambdaRank model re-orders the first
``rerank_depth`` retrieved candidates of a query by its ``FEATURES``.

The model is saved in LightGBM's text format and its word lifts as JSON
beside it: loading either parses numbers, it runs no code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from shopsense.errors import ShopsenseError
from shopsense.search.query.plan import QueryPlan
from shopsense.search.query.retrieve import Candidates
from shopsense.search.ranking.associations import TermAssociations
from shopsense.search.ranking.features import FEATURES, RankingContext, ranking_features

if TYPE_CHECKING:
    import lightgbm


class Ranker:
    """A trained model (``booster``) and the word lifts its features read."""

    def __init__(self, booster: lightgbm.Booster, associations: TermAssociations) -> None:
        self.booster = booster
        self.associations = associations

    def features(
        self,
        context: RankingContext,
        plan: QueryPlan,
        vector: np.ndarray | None,
        found: Candidates,
    ) -> np.ndarray:
        """One row of ``FEATURES`` per candidate, with this ranker's word lifts."""
        return ranking_features(context, self.associations, plan, vector, found)

    def rerank(
        self,
        context: RankingContext,
        plan: QueryPlan,
        vector: np.ndarray | None,
        found: Candidates,
        depth: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The first ``depth`` candidates in the model's order, then the rest
        in theirs, scored below the model's lowest."""
        depth = min(depth, len(found.rows))
        head = found.head(depth)
        scores = self.booster.predict(self.features(context, plan, vector, head), num_threads=1)
        order = np.argsort(-scores, kind="stable")
        tail_rows = found.rows[depth:]
        tail_scores = scores.min() - 1.0 + found.score[depth:] if len(tail_rows) else []
        return (
            np.concatenate([head.rows[order], tail_rows]),
            np.concatenate([scores[order], tail_scores]),
        )

    def save(self, path: Path) -> None:
        """The model at ``path`` and its word lifts beside it (``words_path``),
        written first, so whoever finds the model finds lifts next to it."""
        self.associations.save(words_path(path))
        self.booster.save_model(str(path))

    @classmethod
    def load(cls, path: Path) -> Ranker:
        # LightGBM is imported here, not at the top: an index without a ranker
        # (and the CLI's start) need not load it.
        import lightgbm

        try:
            booster = lightgbm.Booster(model_file=str(path))
        except lightgbm.basic.LightGBMError as e:
            raise ShopsenseError(f"{path} is not a LightGBM model: {e}") from None
        retrain = "retrain it with `shopsense train-ranker`"
        if booster.num_feature() != len(FEATURES):
            raise ShopsenseError(
                f"{path} was trained on {booster.num_feature()} features and this version "
                f"computes {len(FEATURES)}: {retrain}"
            )
        if not words_path(path).is_file():
            raise ShopsenseError(f"{path} has no word lifts beside it: {retrain}")
        return cls(booster, TermAssociations.load(words_path(path)))


def words_path(path: Path) -> Path:
    """Where a ranker saved at ``path`` keeps its word lifts: ranker.txt -> ranker-words.json."""
    return path.with_name(f"{path.stem}-words.json")
