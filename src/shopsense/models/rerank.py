"""Hybrid (b): a LightGBM LambdaRank re-ranker over the union of several
models' candidates.

``fit`` holds out part of each user's items, as the task it will face does
(``holdout="loo"``: the newest item, for next-item recommendation;
``"random"``: a random 10%, for "what else will they like"), fits the candidate
models on the rest, and trains the ranker to put the held-out item first
among the candidates; then it refits the candidate models on all the data.
Features: each model's normalized score and rank, item popularity, recency and
price, how much of the user's history shares the item's category (leaf and
top level), the user's history length, and calendar context: how often the
item is bought at the hour, on the kind of day (weekend, holiday) of the
user's latest event. The ranker is saved as LightGBM's
text model inside ``model.json``: loading it runs no code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from shopsense.data.dataset import Dataset
from shopsense.data.schema import CATEGORY_SEP
from shopsense.data.split import split_dataset
from shopsense.errors import ShopsenseError
from shopsense.features.calendar import calendar_features
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
from shopsense.ranking import top_k

NOT_CANDIDATE = -1e6
BATCH = 1024


@dataclass
class ItemStats:
    """Per-item facts the ranker uses, each item's category codes, and the
    calendar: when each item's events happen (share per 6-hour bucket, on
    weekends, on holidays) and each user's request context (the bucket,
    weekend and holiday flags of their latest event)."""

    popularity: np.ndarray
    recency: np.ndarray
    price: np.ndarray
    leaf: np.ndarray
    top: np.ndarray
    hour_share: np.ndarray
    weekend_share: np.ndarray
    holiday_share: np.ndarray
    user_context: np.ndarray

    @classmethod
    def of(cls, dataset: Dataset) -> ItemStats:
        inter = dataset.interactions
        n = dataset.n_items
        counts = np.bincount(inter["item"], minlength=n).astype(np.float32)
        last = np.full(n, np.nan)
        if len(inter):
            latest = inter.groupby("item")["timestamp"].max()
            last[latest.index.to_numpy()] = latest.to_numpy()
            now = inter["timestamp"].max()
            unit = 1.0 if dataset.time_is_order else 86_400.0
            recency = np.where(np.isnan(last), -1.0, (now - last) / unit)
        else:
            recency = np.full(n, -1.0)
        price = pd.to_numeric(dataset.items["price"], errors="coerce").to_numpy(float)
        with np.errstate(invalid="ignore"):
            price = np.where(np.isnan(price) | (price < 0), -1.0, np.log1p(price))
        category = dataset.items["category"].fillna("").astype(str)
        leaf = pd.factorize(category)[0]
        top = pd.factorize(category.str.split(CATEGORY_SEP).str[0])[0]
        return cls(
            np.log1p(counts),
            recency.astype(np.float32),
            np.nan_to_num(price, nan=-1.0).astype(np.float32),
            leaf.astype(np.int32),
            top.astype(np.int32),
            *_calendar(dataset),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"stats.{k}": v for k, v in self.__dict__.items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ItemStats:
        return cls(**{k[len("stats.") :]: v for k, v in arrays.items() if k.startswith("stats.")})


def _calendar(dataset: Dataset) -> tuple[np.ndarray, ...]:
    """Calendar statistics of items and users (zeros when times are only positions)."""
    inter, n_items, n_users = dataset.interactions, dataset.n_items, dataset.n_users
    hour_share = np.zeros((n_items, 4), np.float32)
    weekend, holiday = np.zeros(n_items, np.float32), np.zeros(n_items, np.float32)
    context = np.zeros((n_users, 3), np.int64)
    if dataset.time_is_order or not len(inter):
        return hour_share, weekend, holiday, context
    cal = calendar_features(inter["timestamp"].to_numpy())
    bucket = cal["hour"].to_numpy() // 6
    items = inter["item"].to_numpy()
    counts = np.maximum(np.bincount(items, minlength=n_items), 1).astype(np.float32)
    np.add.at(hour_share, (items, bucket), 1.0)
    hour_share /= counts[:, None]
    is_weekend = cal["is_weekend"].to_numpy().astype(float)
    is_holiday = cal["is_holiday"].to_numpy().astype(float)
    weekend = (np.bincount(items, weights=is_weekend, minlength=n_items) / counts).astype(
        np.float32
    )
    holiday = (np.bincount(items, weights=is_holiday, minlength=n_items) / counts).astype(
        np.float32
    )
    users = inter["user"].to_numpy()  # interactions are sorted by user, then time
    last = np.flatnonzero(np.r_[users[1:] != users[:-1], True])
    context[users[last]] = np.column_stack([bucket[last], is_weekend[last], is_holiday[last]])
    return hour_share, weekend, holiday, context


def _calendar_match(stats: ItemStats, users: np.ndarray, cols: np.ndarray) -> list[np.ndarray]:
    """How well each item's usual time fits the user's request time."""
    ctx = stats.user_context[users]
    weekend = stats.weekend_share[cols]
    return [
        stats.hour_share[cols, ctx[:, 0]],
        np.where(ctx[:, 1] == 1, weekend, 1.0 - weekend).astype(np.float32),
        stats.holiday_share[cols] * ctx[:, 2],
    ]


def _category_share(
    history: sp.csr_matrix, codes: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """For each (user row, item col): the share of the user's history in the item's category."""
    n_codes = int(codes.max()) + 1 if len(codes) else 1
    onehot = sp.csr_matrix(
        (np.ones(len(codes)), (np.arange(len(codes)), codes)), shape=(len(codes), n_codes)
    )
    per_user = np.asarray((history @ onehot).todense())
    totals = np.maximum(per_user.sum(axis=1, keepdims=True), 1.0)
    return (per_user / totals)[rows, codes[cols]].astype(np.float32)


class Rerank(Recommender):
    """LambdaRank over the top ``n_candidates`` of each model in ``candidates``."""

    name = "rerank"

    def __init__(
        self,
        candidates: dict[str, dict] | None = None,
        n_candidates: int = 50,
        holdout: str = "loo",
        n_estimators: int = 100,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        max_train_users: int = 5000,
        seed: int = 0,
    ) -> None:
        self.candidates = candidates
        self.n_candidates = n_candidates
        self.holdout = holdout
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.max_train_users = max_train_users
        self.seed = seed

    def _spec(self) -> dict[str, dict]:
        return self.candidates or {"itemknn": {}, "als": {}, "content": {}, "trending": {}}

    @staticmethod
    def search_space(trial: Any) -> dict:
        return {
            "n_candidates": trial.suggest_int("n_candidates", 20, 200, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 7, 63, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        }

    # ------------------------------------------------------------------ features
    def _features(
        self,
        parts: dict[str, Recommender],
        stats: ItemStats,
        users: np.ndarray,
        history: sp.csr_matrix,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, cols, features) of every (user, candidate item) pair."""
        b, n = history.shape
        seen = history.toarray() > 0
        n_cand = min(self.n_candidates, n)
        candidate = np.zeros((b, n), bool)
        per_model = []
        for scores in part_scores(parts, users, history).values():
            scores = np.where(seen, -np.inf, scores)
            top, _ = top_k(scores, n_cand)
            rank = np.full((b, n), n_cand + 1, np.float32)
            np.put_along_axis(rank, top, np.arange(1, n_cand + 1, dtype=np.float32)[None, :], 1)
            np.put_along_axis(candidate, top, True, axis=1)
            per_model.append((normalized(scores, "minmax"), rank))
        candidate &= ~seen
        rows, cols = np.nonzero(candidate)
        columns = [f[rows, cols] for pair in per_model for f in pair]
        columns += [
            stats.popularity[cols],
            stats.recency[cols],
            stats.price[cols],
            _category_share(history, stats.leaf, rows, cols),
            _category_share(history, stats.top, rows, cols),
            np.log1p(np.asarray(history.sum(axis=1)).ravel())[rows],
            *_calendar_match(stats, users[rows], cols),
        ]
        return rows, cols, np.column_stack(columns).astype(np.float32)

    # ------------------------------------------------------------------ fitting
    def _fit(self, dataset: Dataset, progress: bool) -> None:
        import lightgbm

        if self.holdout not in ("loo", "random"):
            raise ShopsenseError(f"holdout must be 'loo' or 'random', not {self.holdout!r}")
        inner = split_dataset(dataset, self.holdout, seed=self.seed)
        parts = build_parts(self._spec())
        fit_parts(parts, inner.train, progress)
        stats = ItemStats.of(inner.train)
        targets, history = inner.targets("valid"), inner.history("valid")
        users = np.flatnonzero(np.diff(targets.indptr) > 0)
        if len(users) == 0:
            raise ShopsenseError("rerank needs users with at least 3 items to learn from")
        rng = np.random.default_rng(self.seed)
        if len(users) > self.max_train_users:
            users = np.sort(rng.choice(users, self.max_train_users, replace=False))
        features, labels, groups = [], [], []
        for start in range(0, len(users), BATCH):
            batch = users[start : start + BATCH]
            rows, cols, x = self._features(parts, stats, batch, history[batch])
            y = np.asarray(targets[batch][rows, cols]).ravel() > 0
            sizes = np.bincount(rows, minlength=len(batch))
            positives = np.bincount(rows, weights=y, minlength=len(batch)) > 0
            keep = positives[rows]  # groups without the held-out item teach nothing
            features.append(x[keep])
            labels.append(y[keep].astype(int))
            groups.append(sizes[positives])
        x, y = np.concatenate(features), np.concatenate(labels)
        if not y.any():
            raise ShopsenseError("no held-out item was among the candidates: raise n_candidates")
        ranker = lightgbm.LGBMRanker(
            objective="lambdarank",
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            random_state=self.seed,
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )
        ranker.fit(x, y, group=np.concatenate(groups))
        self.booster_ = ranker.booster_
        self.parts_ = build_parts(self._spec())
        fit_parts(self.parts_, dataset, progress)
        self.stats_ = ItemStats.of(dataset)

    # ------------------------------------------------------------------ scoring
    def _score(self, users: np.ndarray, history: sp.csr_matrix | None) -> np.ndarray:
        history = self._history(users, history)
        rows, cols, x = self._features(self.parts_, self.stats_, users, history)
        out = np.full(history.shape, NOT_CANDIDATE, np.float32)
        if len(rows):
            out[rows, cols] = self.booster_.predict(x)
        return out

    def _similarity(self, items: np.ndarray) -> np.ndarray:
        return next(iter(self.parts_.values())).similar_scores(items)

    # ------------------------------------------------------------------ storage
    def _json_state(self) -> dict[str, Any]:
        return {"parts": parts_json(self.parts_), "booster": self.booster_.model_to_string()}

    def _state(self) -> dict[str, np.ndarray]:
        return {**parts_arrays(self.parts_), **self.stats_.arrays()}

    def _forget_users(self, users: np.ndarray) -> None:
        forget_in_parts(self.parts_, self, users)
        self.stats_.user_context = self.stats_.user_context.copy()
        self.stats_.user_context[users] = 0

    def _set_json_state(self, state: dict[str, Any]) -> None:
        import lightgbm

        self._parts_json = state["parts"]
        self.booster_ = lightgbm.Booster(model_str=state["booster"])

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.parts_ = build_parts(self._spec())
        restore_parts(
            self.parts_,
            self,
            self._parts_json,
            {k: v for k, v in arrays.items() if not k.startswith("stats.")},
        )
        self.stats_ = ItemStats.from_arrays(arrays)
