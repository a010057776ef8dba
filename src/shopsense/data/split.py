"""Train / validation / test splits of a dataset's interactions.

Splits hold out (user, item) *pairs*, placed by the pair's first interaction,
because models rank items the user has not had yet: a purchase of an item the
user viewed the day before is not a new item to find.

- ``loo``: leave-one-out, each user's newest pair is test, the one before it
  validation (users with 2 pairs get a test one only, with 1 none); train is
  every event before the held-out ones.
- ``temporal``: one global time line; the pairs first seen in the last 10% of
  it are test, the 10% before validation, and train is every event before.
- ``random``: each user's pairs shuffled and cut 8:1:1, rounding as RecBole
  does, so figures compare with its default protocol; train holds every
  event of the training pairs.

All are deterministic for a seed. Events without an item (searches) stay in
train (in temporal, only those before the validation period).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from shopsense.data.dataset import Dataset
from shopsense.data.sequences import Sequences
from shopsense.errors import ShopsenseError

SplitMethod = Literal["loo", "temporal", "random"]
SPLIT_METHODS: tuple[str, ...] = ("loo", "temporal", "random")
TRAIN, VALID, TEST = 0, 1, 2


@dataclass
class Split:
    """A dataset cut into parts; ``train`` is a :class:`Dataset` to fit on."""

    train: Dataset
    valid: pd.DataFrame
    test: pd.DataFrame
    method: str
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def _matrix(self, events: pd.DataFrame) -> sp.csr_matrix:
        n_users, n_items = self.train.n_users, self.train.n_items
        m = sp.csr_matrix(
            (np.ones(len(events), np.float32), (events["user"], events["item"])),
            shape=(n_users, n_items),
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    def history(self, on: str) -> sp.csr_matrix:
        """What users had done before the ``on`` part: train, plus valid for test."""
        key = f"history:{on}"
        if key not in self._cache:
            parts = [self.train.interactions] + ([self.valid] if on == "test" else [])
            self._cache[key] = self._matrix(pd.concat(parts, ignore_index=True))
        return self._cache[key]

    def sequences(self, on: str) -> Sequences:
        """What users had done before the ``on`` part, in time order (sequence models)."""
        key = f"sequences:{on}"
        if key not in self._cache:
            parts = [self.train.interactions] + ([self.valid] if on == "test" else [])
            events = pd.concat(parts, ignore_index=True)
            self._cache[key] = Sequences.from_events(events, self.train.n_users)
        return self._cache[key]

    def refit_data(self, keep_out: np.ndarray | None = None) -> Dataset:
        """Train plus the validation part: what a final model is refit on once
        validation has chosen its settings. The validation step is each user's
        newest before test, the most telling about it; test is still unseen.
        ``keep_out``: users whose validation steps stay out (held out for the
        checks of a model that trains on everyone else's)."""
        if keep_out is not None:
            return self._with_valid(self.valid[~self.valid["user"].isin(keep_out)])
        if "refit" not in self._cache:
            self._cache["refit"] = self._with_valid(self.valid)
        return self._cache["refit"]

    def _with_valid(self, valid: pd.DataFrame) -> Dataset:
        events = pd.concat([self.train.events, valid], ignore_index=True)
        return self.train.with_events(events[self.train.events.columns])

    def targets(self, on: str) -> sp.csr_matrix:
        """The items each user interacted with in the ``on`` part (valid or test)."""
        if on not in ("valid", "test"):
            raise ShopsenseError(f"evaluate on 'valid' or 'test', not {on!r}")
        key = f"targets:{on}"
        if key not in self._cache:
            self._cache[key] = self._matrix(self.valid if on == "valid" else self.test)
        return self._cache[key]


def _positions(users: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's position within its user's (contiguous) rows, and the user's count."""
    counts = np.bincount(users, minlength=n_users)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return np.arange(len(users)) - starts[users], counts[users]


def _loo_parts(pairs: pd.DataFrame, n_users: int) -> np.ndarray:
    pos, count = _positions(pairs["user"].to_numpy(), n_users)
    from_end = count - 1 - pos
    part = np.full(len(pairs), TRAIN, np.int8)
    part[(from_end == 0) & (count >= 2)] = TEST
    part[(from_end == 1) & (count >= 3)] = VALID
    return part


def _random_parts(
    pairs: pd.DataFrame, n_users: int, ratios: tuple[float, float, float], rng: np.random.Generator
) -> np.ndarray:
    """RecBole's per-user ratio split (``_calcu_split_ids``), vectorized."""
    users = pairs["user"].to_numpy()
    order = np.lexsort((rng.random(len(users)), users))
    pos, n = _positions(users[order], n_users)
    n = n.astype(float)
    cnt_valid = np.floor(ratios[1] * n)
    cnt_test = np.floor(ratios[2] * n)
    cnt_train = n - cnt_valid - cnt_test
    for cnt, ratio in ((cnt_test, ratios[2]), (cnt_valid, ratios[1])):
        bump = (cnt_train > 1) & (ratio * n > 0) & (ratio * n < 1)
        cnt[bump] += 1
        cnt_train[bump] -= 1
    shuffled = np.full(len(users), TRAIN, np.int8)
    shuffled[pos >= cnt_train] = VALID
    shuffled[pos >= cnt_train + cnt_valid] = TEST
    part = np.empty_like(shuffled)
    part[order] = shuffled
    return part


def _temporal_parts(pairs: pd.DataFrame, ratios: tuple[float, float, float]) -> np.ndarray:
    order = np.lexsort((pairs["row"].to_numpy(), pairs["timestamp"].to_numpy()))
    n = len(pairs)
    n_train = round(ratios[0] * n)
    n_valid = round(ratios[1] * n)
    part = np.empty(n, np.int8)
    part[order[:n_train]] = TRAIN
    part[order[n_train : n_train + n_valid]] = VALID
    part[order[n_train + n_valid :]] = TEST
    return part


def _train_rows(
    inter: pd.DataFrame, pairs: pd.DataFrame, part: np.ndarray, method: str, n_users: int
) -> np.ndarray:
    """Which interactions are training events, given the pairs' parts."""
    if method == "random":
        # Groups are numbered in order of first appearance, which is the order of ``pairs``.
        pair_of_row = inter.groupby(["user", "item"], sort=False).ngroup().to_numpy()
        return part[pair_of_row] == TRAIN
    held = part != TRAIN
    if method == "loo":
        # Each user's events before their first held-out pair (rows are in time order).
        cut = np.full(n_users, np.iinfo(np.int64).max)
        np.minimum.at(cut, pairs["user"].to_numpy()[held], pairs["row"].to_numpy()[held])
        return np.arange(len(inter)) < cut[inter["user"].to_numpy()]
    # temporal: everything strictly before the first held-out pair on the global time line
    if not held.any():
        return np.ones(len(inter), bool)
    key = np.lexsort((np.arange(len(inter)), inter["timestamp"].to_numpy()))
    rank = np.empty(len(inter), np.int64)
    rank[key] = np.arange(len(inter))
    return rank < rank[pairs["row"].to_numpy()[held]].min()


def split_dataset(
    dataset: Dataset,
    method: str = "loo",
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> Split:
    """Split ``dataset`` by ``method`` (see the module docstring)."""
    if method not in SPLIT_METHODS:
        raise ShopsenseError(f"unknown split {method!r}; choose one of {', '.join(SPLIT_METHODS)}")
    if len(ratios) != 3 or abs(sum(ratios) - 1.0) > 1e-6 or min(ratios) < 0:
        raise ShopsenseError(
            f"split ratios must be three non-negative numbers summing to 1, got {ratios}"
        )
    if method == "temporal" and dataset.time_is_order:
        raise ShopsenseError(
            f"dataset {dataset.name} has positions, not times: use --split loo or random"
        )
    inter = dataset.interactions
    if len(inter) == 0:
        raise ShopsenseError(f"dataset {dataset.name} has no interactions to split")
    first = ~inter.duplicated(["user", "item"]).to_numpy()
    pairs = inter[first].assign(row=np.flatnonzero(first)).reset_index(drop=True)
    if method == "loo":
        part = _loo_parts(pairs, dataset.n_users)
    elif method == "random":
        part = _random_parts(pairs, dataset.n_users, ratios, np.random.default_rng(seed))
    else:
        part = _temporal_parts(pairs, ratios)
    train_rows = _train_rows(inter, pairs, part, method, dataset.n_users)
    others = dataset.events[dataset.events["item"] < 0]
    if method == "temporal" and (part != TRAIN).any():
        cutoff = pairs["timestamp"].to_numpy()[part != TRAIN].min()
        others = others[others["timestamp"] < cutoff]
    train_events = pd.concat([inter[train_rows], others], ignore_index=True)
    pairs = pairs.drop(columns="row")
    return Split(
        train=dataset.with_events(train_events),
        valid=pairs[part == VALID].reset_index(drop=True),
        test=pairs[part == TEST].reset_index(drop=True),
        method=method,
    )
