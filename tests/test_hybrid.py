"""Hybrids: a blend of normalized scores, and a LightGBM LambdaRank re-ranker."""

import numpy as np
import pytest

from shopsense.data.split import split_dataset
from shopsense.errors import ShopsenseError
from shopsense.evaluation.evaluate import evaluate
from shopsense.models.blend import Blend
from shopsense.models.composite import normalized
from shopsense.models.rerank import Rerank
from tests.recommender_contract import RecommenderContract

SMALL = {"itemknn": {"k": 30}, "pop": {}}


class TestBlend(RecommenderContract):
    def make_model(self):
        return Blend(models=SMALL, weights={"itemknn": 1.0, "pop": 0.3})


class TestRerank(RecommenderContract):
    def make_model(self):
        return Rerank(candidates=SMALL, n_candidates=20, n_estimators=20)


def test_blend_with_one_model_ranks_like_it(store):
    alone = Blend(models={"itemknn": {}}).fit(store)
    from shopsense.models.itemknn import ItemKNN

    users = np.arange(20)
    np.testing.assert_array_equal(
        alone.recommend(users, k=10)[0], ItemKNN().fit(store).recommend(users, k=10)[0]
    )


def test_blend_rejects_weights_for_absent_models(store):
    with pytest.raises(ShopsenseError, match="not in the blend"):
        Blend(models={"pop": {}}, weights={"ease": 1.0}).fit(store)


@pytest.mark.parametrize("how", ["minmax", "zscore", "rank"])
def test_normalization_keeps_each_users_order(how):
    scores = np.array([[3.0, 1.0, 2.0, -np.inf], [10.0, 30.0, 20.0, 0.0]])
    out = normalized(scores, how)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(np.argsort(-out[:, :3], axis=1), [[0, 2, 1], [1, 2, 0]])


def test_rerank_learns_to_beat_its_weakest_candidate(store):
    split = split_dataset(store, "loo")
    rerank = Rerank(candidates={"itemknn": {}, "pop": {}}, n_estimators=50).fit(split.train)
    from shopsense.models.pop import Popularity

    pop = evaluate(Popularity().fit(split.train), split, ks=(10,))
    ranked = evaluate(rerank, split, ks=(10,))
    assert ranked["NDCG@10"] > 2 * pop["NDCG@10"]
    # Only candidates get a ranker score; everything else sits far below.
    scores = rerank.score(np.array([0]))
    assert (scores[0] > -1e5).sum() <= 2 * rerank.n_candidates


def test_rerank_calendar_statistics_by_hand():
    import datetime as dt

    from shopsense.models.rerank import ItemStats
    from tests.test_split import tiny

    def ts(day, hour):
        return int(dt.datetime(2026, 11, day, hour, tzinfo=dt.UTC).timestamp())

    # Nov 11 (a holiday, Wednesday) 20:00 and Nov 14 (Saturday) 08:00 and 21:00.
    ds = tiny(
        [(0, 0, "view", ts(11, 20)), (0, 1, "view", ts(14, 8)), (1, 0, "view", ts(14, 21))], 2, 3
    )
    ds.items["price"], ds.items["category"] = [1.0, 2.0, None], ["a > b", "a > c", None]
    stats = ItemStats.of(ds)
    np.testing.assert_allclose(stats.hour_share[0], [0, 0, 0, 1])  # both evenings
    np.testing.assert_allclose(stats.hour_share[1], [0, 1, 0, 0])
    np.testing.assert_allclose(stats.weekend_share[:2], [0.5, 1.0])
    np.testing.assert_allclose(stats.holiday_share[:2], [0.5, 0.0])
    assert stats.user_context.tolist() == [[1, 1, 0], [3, 1, 0]]  # latest event of each user
    assert stats.hour_share[2].sum() == 0  # no events, no shares
