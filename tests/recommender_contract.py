"""The behaviour every recommender must have. A model's test class inherits
``RecommenderContract`` and supplies only ``make_model``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from shopsense.errors import NotFittedError, ShopsenseError
from shopsense.models.base import Recommender
from shopsense.models.registry import create_model, load_model


class RecommenderContract:
    def make_model(self) -> Recommender:
        raise NotImplementedError

    @pytest.fixture()
    def fitted(self, store):
        return self.make_model().fit(store)

    def test_fit_returns_self_with_learnt_state(self, store):
        model = self.make_model()
        assert model.fit(store) is model
        assert model.n_items_ == store.n_items and model.n_users_ == store.n_users

    def test_unfitted_model_says_so(self):
        with pytest.raises(NotFittedError):
            self.make_model().recommend(np.array([0]), k=5)

    def test_recommend_is_batched_and_sorted(self, fitted, store):
        users = np.arange(min(20, store.n_users))
        ids, scores = fitted.recommend(users, k=7)
        assert ids.shape == (len(users), 7) and scores.shape == (len(users), 7)
        assert np.all(np.diff(scores, axis=1) <= 0)
        assert ids.min() >= 0 and ids.max() < store.n_items
        for row in ids:
            assert len(set(row)) == 7

    def test_batch_equals_one_by_one(self, fitted):
        users = np.array([3, 1, 4])
        ids, _ = fitted.recommend(users, k=5)
        for i, u in enumerate(users):
            single, _ = fitted.recommend(np.array([u]), k=5)
            np.testing.assert_array_equal(single[0], ids[i])

    def test_seen_items_are_excluded_unless_asked(self, fitted, store):
        seen = store.user_item_matrix()
        users = np.flatnonzero(np.diff(seen.indptr) > 0)[:10]
        ids, _ = fitted.recommend(users, k=10)
        for row, u in zip(ids, users, strict=True):
            assert not set(row) & set(seen[u].indices)
        kept, _ = fitted.recommend(users, k=store.n_items, exclude_seen=False)
        assert set(seen[users[0]].indices) <= set(kept[0])

    def test_fresh_history_can_be_passed(self, fitted, store):
        history = sp.csr_matrix(([1.0], ([0], [5])), shape=(1, store.n_items))
        ids, _ = fitted.recommend(np.array([0]), k=5, user_items=history)
        assert 5 not in ids[0]

    def test_score_shape_and_determinism(self, fitted, store):
        a = fitted.score(np.array([0, 1]))
        b = fitted.score(np.array([0, 1]))
        assert a.shape == (2, store.n_items) and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)

    def test_similar_items_never_returns_the_item(self, fitted):
        ids, _scores = fitted.similar_items(np.array([0, 1, 2]), k=5)
        assert ids.shape == (3, 5)
        for item, row in zip((0, 1, 2), ids, strict=True):
            assert item not in row

    def test_similarity_between_agrees_with_similar_scores(self, fitted):
        items, others = np.array([0, 3]), np.array([5, 1, 2])
        np.testing.assert_allclose(
            fitted.similarity_between(items, others),
            fitted.similar_scores(items)[:, others],
            rtol=1e-5,
            atol=1e-6,
        )

    def test_out_of_range_ids_are_clear_errors(self, fitted, store):
        with pytest.raises(ShopsenseError):
            fitted.recommend(np.array([store.n_users]), k=5)
        with pytest.raises(ShopsenseError):
            fitted.similar_items(np.array([-1]))

    def test_save_and_load_round_trip(self, fitted, tmp_path):
        fitted.save(tmp_path / "m")
        again = load_model(tmp_path / "m")
        assert type(again) is type(fitted) and again.get_params() == fitted.get_params()
        users = np.arange(10)
        np.testing.assert_array_equal(
            fitted.recommend(users, k=10)[0], again.recommend(users, k=10)[0]
        )
        np.testing.assert_allclose(fitted.score(users), again.score(users), rtol=1e-6)

    def test_saved_files_need_no_pickle(self, fitted, tmp_path):
        fitted.save(tmp_path / "m")
        names = sorted(p.name for p in (tmp_path / "m").iterdir())
        assert names == ["arrays.safetensors", "model.json"]
        assert b"pickle" not in (tmp_path / "m" / "model.json").read_bytes()

    def test_registry_creates_it_by_name(self):
        model = self.make_model()
        again = create_model(model.name, **model.get_params())
        assert type(again) is type(model)

    def test_forgotten_users_keep_nothing_of_their_own(self, fitted, store, tmp_path):
        """Two erased users are indistinguishable, in memory and once saved:
        nothing learnt of either one alone is left."""
        active = np.flatnonzero(np.diff(store.user_item_matrix().indptr) >= 3)
        gone = active[:2]
        fitted.forget_users(gone)
        fitted.save(tmp_path / "m")
        for model in (fitted, load_model(tmp_path / "m")):
            assert model.user_items_[gone].nnz == 0
            first, second = model.score(gone)
            np.testing.assert_allclose(first, second, rtol=1e-5, atol=1e-6)
