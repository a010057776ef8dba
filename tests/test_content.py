"""Content features in a recommender, and cold start for new items and new users."""

import atexit
import shutil
import tempfile

import numpy as np
import pandas as pd
import pytest

from shopsense.models.cold_start import ColdStart
from shopsense.models.content import ContentBased
from shopsense.models.registry import load_model
from tests.recommender_contract import RecommenderContract

EMBEDDING_CACHE = tempfile.mkdtemp(prefix="shopsense-embeddings-")
atexit.register(shutil.rmtree, EMBEDDING_CACHE, ignore_errors=True)


class TestContentTfidf(RecommenderContract):
    def make_model(self):
        return ContentBased(features="tfidf")


class TestContentWord2Vec(RecommenderContract):
    def make_model(self):
        return ContentBased(features="word2vec")


class TestContentSentence(RecommenderContract):
    def make_model(self):
        return ContentBased(features="sentence", cache_dir=EMBEDDING_CACHE)


def new_variant_of(store, item: int, new_id: str) -> pd.DataFrame:
    """A new catalog row that reads like an existing item (a new colour of it)."""
    row = store.items.iloc[[item]].copy()
    row["item_id"] = new_id
    row["title"] = row["title"].iloc[0] + " new colour"
    return row


@pytest.mark.parametrize("features", ["tfidf", "sentence"])
def test_new_item_is_similar_and_recommended(store, tmp_path, features):
    model = ContentBased(features=features, cache_dir=EMBEDDING_CACHE).fit(store)
    # A user with a clear favourite item: the new variant of it is for them.
    counts = store.user_item_matrix(binary=False)
    user = int(np.argmax(counts.max(axis=1).toarray().ravel()))
    favourite = int(counts[user].indices[np.argmax(counts[user].data)])
    (new,) = model.add_items(new_variant_of(store, favourite, "brand-new"))
    assert new == store.n_items
    similar, _ = model.similar_items(np.array([favourite]), k=3)
    assert new in similar[0]
    ids, _ = model.recommend(np.array([user]), k=10)
    assert new in ids[0]
    # Saved and loaded, the new item is still there.
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.n_items_ == store.n_items + 1
    np.testing.assert_array_equal(again.recommend(np.array([user]), k=10)[0], ids)


def test_chinese_text_matches_through_jieba(store):
    model = ContentBased(features="tfidf").fit(store)
    row = store.items.iloc[[0]].copy()
    row["item_id"], row["title"], row["description"] = "zh-1", "华星 超薄手机", ""
    row["brand"], row["category"], row["attributes"] = "", "", "{}"
    (new,) = model.add_items(row)
    similar, _ = model.similar_items(np.array([new]), k=1)
    # jieba splits 超薄手机 into 超薄 / 手机, so the catalog's Chinese phone is the nearest.
    assert "手机" in store.items["title"].iloc[similar[0][0]]


def test_cold_start_user_gets_popular_items_in_context(store):
    cold = ColdStart(context_weight=0.7).fit(store)
    plain, _ = cold.recommend(k=10)
    np.testing.assert_array_equal(plain, np.argsort(-cold.popularity_, kind="stable")[:10])
    category = store.items["category"].value_counts().index[0]
    top = category.split(" > ")[0]
    ids, _ = cold.recommend(k=5, category=top)  # any level of the category path
    assert all(store.items["category"].iloc[i].startswith(top) for i in ids)
    session = np.flatnonzero(store.items["category"].to_numpy() == category)[:2]
    ids, _ = cold.recommend(k=5, session_items=session)
    assert not set(ids) & set(session)
    assert all(store.items["category"].iloc[i] == category for i in ids[:3])
