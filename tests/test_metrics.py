"""Metric values checked against cases computed by hand."""

import math

import numpy as np
import pytest

from shopsense.evaluation.metrics import ranking_metrics


def test_single_user_hand_computed():
    # Ranked list: hit at ranks 2 and 4; the user has 3 targets.
    hits = np.array([[False, True, False, True, False]])
    m = ranking_metrics(hits, np.array([3]), ks=(1, 3, 5))
    assert m["Hit@1"][0] == 0 and m["Accuracy"][0] == 0
    assert m["Precision@3"][0] == pytest.approx(1 / 3)
    assert m["Recall@3"][0] == pytest.approx(1 / 3)
    assert m["Recall@5"][0] == pytest.approx(2 / 3)
    assert m["Precision@5"][0] == pytest.approx(2 / 5)
    p, r = 2 / 5, 2 / 3
    assert m["F1@5"][0] == pytest.approx(2 * p * r / (p + r))
    assert m["MRR@5"][0] == pytest.approx(1 / 2)
    assert m["MRR@1"][0] == 0
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)  # min(K=5, 3 targets) = 3 ideal hits
    assert m["NDCG@5"][0] == pytest.approx(dcg / idcg)
    # RecBole's MAP: precision at each hit, summed, over min(K, targets).
    assert m["MAP@5"][0] == pytest.approx((1 / 2 + 2 / 4) / 3)
    # At K=3 the ideal DCG only has room for min(3, 3) = 3 hits.
    assert m["NDCG@3"][0] == pytest.approx((1 / math.log2(3)) / idcg)


def test_ideal_dcg_uses_min_of_k_and_targets():
    hits = np.array([[True, True, False]])
    m = ranking_metrics(hits, np.array([10]), ks=(2,))
    assert m["NDCG@2"][0] == pytest.approx(1.0)
    assert m["Recall@2"][0] == pytest.approx(0.2)


def test_several_users_and_top1_accuracy():
    hits = np.array([[True, False], [False, False], [False, True]])
    m = ranking_metrics(hits, np.array([1, 1, 1]), ks=(1, 2))
    np.testing.assert_allclose(m["Accuracy"], [1, 0, 0])
    np.testing.assert_allclose(m["Hit@2"], [1, 0, 1])
    np.testing.assert_allclose(m["MRR@2"], [1, 0, 0.5])
    np.testing.assert_allclose(m["NDCG@2"], [1, 0, 1 / math.log2(3)])


def test_rejects_users_without_targets_and_short_lists():
    with pytest.raises(ValueError):
        ranking_metrics(np.array([[True]]), np.array([0]), ks=(1,))
    with pytest.raises(ValueError):
        ranking_metrics(np.array([[True]]), np.array([1]), ks=(5,))
