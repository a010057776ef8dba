"""Every registered model passes the shared contract; model-specific checks follow."""

import numpy as np
import pytest

from shopsense.errors import ShopsenseError
from shopsense.models.itemknn import ItemKNN
from shopsense.models.pop import Popularity
from shopsense.models.registry import create_model, model_names
from tests.recommender_contract import RecommenderContract
from tests.test_split import tiny


class TestPopularity(RecommenderContract):
    def make_model(self):
        return Popularity()


class TestItemKNN(RecommenderContract):
    def make_model(self):
        return ItemKNN(k=20, shrink=5.0)


def test_every_registered_model_has_a_contract_test():
    tested = {cls().make_model().name for cls in RecommenderContract.__subclasses__()}
    assert tested == set(model_names())


def test_popularity_counts_interactions():
    ds = tiny([(0, 1, "view", 1), (1, 1, "view", 2), (1, 1, "cart", 3), (0, 2, "view", 4)], 3, 4)
    model = Popularity().fit(ds)
    np.testing.assert_array_equal(model.item_counts_, [0, 3, 1, 0])
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
