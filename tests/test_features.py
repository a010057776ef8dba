"""Each feature extractor on its own."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from shopsense.errors import ShopsenseError
from shopsense.features import (
    BagOfWords,
    SentenceEmbedder,
    Tfidf,
    WordEmbeddings,
    calendar_features,
    item_texts,
    tokenize,
)
from shopsense.features.sentence import EmbeddingCache


def test_tokenize_english_and_chinese():
    assert tokenize("The Best Running Shoes, for Batteries!") == [
        "best",
        "running",
        "shoe",
        "battery",
    ]
    assert tokenize("华为手机") == ["华为", "手机"]
    assert tokenize("手机") == ["手机"]
    assert tokenize("5G 超薄手机 X100") == ["5g", "超薄", "手机", "x100"]
    assert tokenize(None) == [] and tokenize("") == []


def test_item_texts_join_fields():
    items = pd.DataFrame(
        {
            "title": ["Red shoe"],
            "brand": ["Acme"],
            "category": ["Shoes > Run"],
            "description": [None],
            "attributes": ['{"color": "red", "language": "en"}'],
        }
    )
    assert item_texts(items) == ["Red shoe Acme Shoes Run  red"]


def test_bag_of_words_and_tfidf_round_trip_their_state():
    texts = ["华为手机 blue", "小米手机 red", "red running shoes"]
    for cls in (BagOfWords, Tfidf):
        fitted = cls().fit(texts)
        doc, arrays = fitted.state()
        again = cls()
        again.set_state(doc, arrays)
        np.testing.assert_allclose(
            fitted.transform(texts).toarray(), again.transform(texts).toarray()
        )
    tfidf = Tfidf().fit(texts)
    m = tfidf.transform(["手机"]).toarray()[0]
    assert m[tfidf.vocabulary_["手机"]] == 1.0
    assert BagOfWords().fit(texts).transform(["red red"]).toarray()[0].max() == 2


def test_texts_without_words_are_a_clear_error():
    with pytest.raises(ShopsenseError, match="no words"):
        Tfidf().fit(["", "  ", "!!"])


def test_word_embeddings_are_deterministic_and_learn_context():
    texts = ["red running shoe", "blue running shoe", "red phone case", "blue phone case"] * 30
    a = WordEmbeddings(dim=16, seed=1).fit(texts)
    b = WordEmbeddings(dim=16, seed=1).fit(texts)
    np.testing.assert_array_equal(a.vectors_, b.vectors_)
    v = a.transform(["running shoe", "unknownword"])
    assert v.shape == (2, 16) and np.all(v[1] == 0) and np.any(v[0] != 0)


def test_sentence_embeddings_are_batched_and_cached(tmp_path):
    embedder = SentenceEmbedder(batch_size=2, cache_dir=tmp_path)
    texts = ["red running shoes", "blue phone", "red running shoes", "a kettle"]
    v = embedder.encode(texts)
    assert v.shape == (4, 384) and embedder.encoded_ == 3
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(v[0], v[2])
    assert float(v[0] @ v[1]) < float(v[0] @ embedder.encode(["running sneakers"])[0])
    again = SentenceEmbedder(cache_dir=tmp_path)
    np.testing.assert_allclose(again.encode(["blue phone"])[0], v[1], rtol=1e-6)
    assert again.encoded_ == 0
    assert len(EmbeddingCache(tmp_path).keys) == 4  # 3 texts, then "running sneakers"


def test_calendar_features_with_configurable_holidays():
    ts = [
        int(dt.datetime(2026, 11, 11, 20, tzinfo=dt.UTC).timestamp()),
        int(dt.datetime(2026, 11, 14, 1, tzinfo=dt.UTC).timestamp()),
    ]
    f = calendar_features(ts)
    assert f["hour"].tolist() == [20, 1] and f["weekday"].tolist() == [2, 5]
    assert f["is_weekend"].tolist() == [False, True]
    assert f["is_holiday"].tolist() == [True, False]
    local = calendar_features(ts, holidays=[dt.date(2026, 11, 12)], utc_offset_hours=8)
    assert local["hour"].tolist() == [4, 9] and local["is_holiday"].tolist() == [True, False]
