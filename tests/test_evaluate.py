"""The full-ranking harness, with scorers whose right answers are known."""

import numpy as np
import pytest

from shopsense.data.split import split_dataset
from shopsense.errors import ShopsenseError
from shopsense.evaluation.evaluate import evaluate


class Oracle:
    """Scores each user's held-out items highest: every metric must be perfect."""

    def __init__(self, split, on="test"):
        self.targets = split.targets(on)

    def score(self, users, user_items=None):
        return self.targets[users].toarray() + 0.01 * np.random.default_rng(0).random(
            (len(users), self.targets.shape[1])
        )


class Constant:
    def __init__(self, scores):
        self.scores = np.asarray(scores, np.float32)

    def score(self, users, user_items=None):
        return np.broadcast_to(self.scores, (len(users), len(self.scores))).copy()


def test_oracle_is_perfect_on_leave_one_out(store):
    split = split_dataset(store, "loo")
    r = evaluate(Oracle(split), split, ks=(1, 10))
    assert r["Hit@1"] == 1.0 and r["NDCG@10"] == 1.0 and r["MRR@10"] == 1.0
    assert r["Accuracy"] == 1.0
    assert r["mode"] == "full ranking"
    assert r["users"] == split.targets("test").getnnz(axis=1).astype(bool).sum()


def test_history_is_excluded_from_the_ranking(store):
    split = split_dataset(store, "loo")
    oracle = Oracle(split)

    class HistoryFirst:
        """History scored above the targets: only exclusion lets the targets win."""

        def score(self, users, user_items=None):
            return user_items.toarray() * 100.0 + oracle.score(users)

    r = evaluate(HistoryFirst(), split, ks=(1,))
    assert r["Hit@1"] == 1.0


def test_popularity_baseline_and_coverage(store):
    split = split_dataset(store, "loo")
    counts = np.bincount(split.train.interactions["item"], minlength=store.n_items)
    r = evaluate(Constant(counts), split, ks=(10,))
    assert 0 <= r["NDCG@10"] <= 1
    # A constant ranking recommends few distinct items.
    assert r["Coverage@10"] < 0.2
    assert r["AvgPop@10"] > counts.mean()


def test_sampled_mode_is_labelled_and_easier(store):
    split = split_dataset(store, "loo")
    counts = np.bincount(split.train.interactions["item"], minlength=store.n_items)
    full = evaluate(Constant(counts), split, ks=(10,))
    sampled = evaluate(Constant(counts), split, ks=(10,), mode="sampled")
    assert "SAMPLED" in sampled["mode"]
    assert sampled["Hit@10"] >= full["Hit@10"]


def test_bad_arguments(store):
    split = split_dataset(store, "loo")
    with pytest.raises(ShopsenseError):
        evaluate(Constant(np.zeros(store.n_items)), split, ks=(10,), mode="nope")
    with pytest.raises(ShopsenseError):
        evaluate(Constant(np.zeros(store.n_items)), split, ks=(10_000,))
    with pytest.raises(ShopsenseError):
        evaluate(Constant(np.zeros(store.n_items)), split, on="train")
