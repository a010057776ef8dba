"""Every registered model passes the shared contract; model-specific checks follow."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from shopsense.errors import ShopsenseError
from shopsense.models.als import ALS
from shopsense.models.bpr import BPR
from shopsense.models.ease import EASE
from shopsense.models.itemknn import ItemKNN
from shopsense.models.nmf import NMF
from shopsense.models.pop import Popularity
from shopsense.models.registry import create_model, model_names
from shopsense.models.svd import PureSVD
from shopsense.models.trending import Trending
from shopsense.models.userknn import UserKNN
from tests.recommender_contract import RecommenderContract
from tests.test_split import tiny


class TestPopularity(RecommenderContract):
    def make_model(self):
        return Popularity()


class TestItemKNN(RecommenderContract):
    def make_model(self):
        return ItemKNN(k=20, shrink=5.0)


class TestTrending(RecommenderContract):
    def make_model(self):
        return Trending(half_life_days=3.0)


class TestUserKNN(RecommenderContract):
    def make_model(self):
        return UserKNN(k=20)


class TestEASE(RecommenderContract):
    def make_model(self):
        return EASE(l2=50.0)


class TestPureSVD(RecommenderContract):
    def make_model(self):
        return PureSVD(factors=16)


class TestNMF(RecommenderContract):
    def make_model(self):
        return NMF(factors=8)


class TestALS(RecommenderContract):
    def make_model(self):
        return ALS(factors=16, iterations=5)


class TestBPR(RecommenderContract):
    def make_model(self):
        return BPR(factors=16, iterations=20)


def test_every_registered_model_has_a_contract_test():
    import tests.test_content
    import tests.test_hybrid
    import tests.test_neural  # noqa: F401 (their contract classes register as subclasses)

    tested = {cls().make_model().name for cls in RecommenderContract.__subclasses__()}
    assert tested == set(model_names())


def test_popularity_counts_interactions():
    ds = tiny([(0, 1, "view", 1), (1, 1, "view", 2), (1, 1, "cart", 3), (0, 2, "view", 4)], 3, 4)
    model = Popularity().fit(ds)
    np.testing.assert_array_equal(model.item_scores_, [0, 3, 1, 0])
    ids, _ = model.recommend(np.array([2]), k=2)
    assert ids[0].tolist() == [1, 2]


def test_itemknn_cosine_with_shrinkage_by_hand():
    # Users × items: u0 {0,1}, u1 {0,1}, u2 {0,2}
    ds = tiny(
        [
            (0, 0, "view", 1),
            (0, 1, "view", 2),
            (1, 0, "view", 3),
            (1, 1, "view", 4),
            (2, 0, "view", 5),
            (2, 2, "view", 6),
        ],
        3,
        3,
    )
    model = ItemKNN(k=2, shrink=1.0).fit(ds)
    sim = model.similarity_.toarray()
    # items 0,1 share 2 users; |0| = sqrt(3), |1| = sqrt(2)
    assert sim[0, 1] == pytest.approx(2 / (np.sqrt(3) * np.sqrt(2) + 1.0), rel=1e-5)
    assert sim[1, 2] == 0.0 and sim[0, 0] == 0.0
    scores = model.score(np.array([2]))
    # user 2 has items 0 and 2: item 1 scores sim(0,1) + sim(2,1)
    assert scores[0, 1] == pytest.approx(sim[0, 1] + sim[2, 1], rel=1e-5)


def test_itemknn_keeps_k_neighbours(store):
    model = ItemKNN(k=5).fit(store)
    assert np.diff(model.similarity_.indptr).max() <= 5


def test_unknown_model_and_bad_parameters():
    with pytest.raises(ShopsenseError, match="unknown model"):
        create_model("nope")
    with pytest.raises(ShopsenseError, match="bad parameters"):
        create_model("itemknn", neighbours=3)


def test_trending_prefers_recent_events():
    ds = tiny([(0, 0, "view", 0), (0, 0, "view", 1), (1, 1, "view", 30 * 86_400)], 2, 3)
    scores = Trending(half_life_days=1.0).fit(ds).item_scores_
    assert scores[1] > scores[0] > scores[2] == 0


def test_behaviour_weights_add_up_in_the_confidence_matrix():
    from shopsense.models.factorization import confidence_matrix

    ds = tiny(
        [(0, 0, "view", 1), (0, 0, "view", 2), (0, 0, "purchase", 3), (0, 1, "cart", 4)], 1, 2
    )
    m = confidence_matrix(ds, {"purchase": 10.0}).toarray()
    np.testing.assert_allclose(m, [[1 + 1 + 10, 4]])


def test_ease_is_refused_above_its_item_limit(store):
    with pytest.raises(ShopsenseError, match="max_items"):
        EASE(max_items=10).fit(store)


def test_als_folds_in_a_new_users_events_without_refit(store):
    model = ALS(factors=16, iterations=10).fit(store)
    # A user's own events, folded in, give scores close to the trained user's.
    user = int(np.argmax(np.diff(store.user_item_matrix().indptr)))
    from shopsense.models.factorization import confidence_matrix

    row = confidence_matrix(store, None)[[user]]
    folded = model.score(np.array([user]), user_items=row)[0]
    trained = model.score(np.array([user]))[0]
    assert np.corrcoef(folded, trained)[0, 1] > 0.95
    # Events on one category shift the recommendations to it.
    category = store.items["category"].to_numpy()
    counts = np.bincount(store.interactions["item"], minlength=store.n_items)
    target = pd.Series(category).value_counts().index[0]  # the largest category
    in_target = np.flatnonzero(category == target)
    items = in_target[np.argsort(-counts[in_target])[:5]]
    fresh = sp.csr_matrix(
        (np.ones(len(items)), (np.zeros(len(items), int), items)), shape=(1, store.n_items)
    )
    ids, _ = model.recommend(np.array([user]), k=5, user_items=fresh)
    assert np.mean(category[ids[0]] == target) >= 0.6


def test_als_folds_in_a_history_as_implicit_solves_it(store):
    """ALS's NumPy fold-in gives implicit's ``recalculate_user`` factors."""
    from threadpoolctl import threadpool_limits

    model = ALS(factors=16, iterations=3).fit(store)
    history = model.user_items_[:40]
    with threadpool_limits(1, "blas"):
        reference = model._implicit()
        reference.item_factors = model.item_factors_
        expected = reference.recalculate_user(
            np.arange(40), sp.csr_matrix(history, dtype=np.float32)
        )
    np.testing.assert_allclose(model.fold_in(history), expected, atol=1e-4)
    assert not model.fold_in(sp.csr_matrix((1, model.n_items_), dtype=np.float32)).any()
