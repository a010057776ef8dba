"""Content-based recommendations from item text and attributes.

Items are vectors from one of the feature extractors; a user's profile is the
behaviour-weighted sum of the vectors of items they had. New items added after
training get a vector from their text alone (``add_items``), so they can be
recommended and found as similar items before anyone has touched them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from shopsense.data.dataset import Dataset
from shopsense.data.schema import DEFAULT_EVENT_WEIGHTS
from shopsense.errors import ShopsenseError
from shopsense.features.sentence import SentenceEmbedder
from shopsense.features.text import item_texts
from shopsense.features.vectorizers import BagOfWords, Tfidf
from shopsense.features.word2vec import WordEmbeddings
from shopsense.models.base import Recommender, rows_emptied
from shopsense.models.factorization import confidence_matrix

FEATURES = ("tfidf", "bow", "word2vec", "sentence")


class ContentBased(Recommender):
    """Cosine between a user's profile and each item's text vector."""

    name = "content"

    def __init__(
        self,
        features: str = "tfidf",
        event_weights: dict | None = None,
        cache_dir: str | None = None,
    ) -> None:
        self.features = features
        self.event_weights = event_weights
        self.cache_dir = cache_dir

    @staticmethod
    def search_space(trial: Any) -> dict:
        return {"features": trial.suggest_categorical("features", ["tfidf", "bow", "word2vec"])}

    def _extractor(self):
        if self.features not in FEATURES:
            raise ShopsenseError(f"features must be one of {FEATURES}, not {self.features!r}")
        return {
            "tfidf": Tfidf,
            "bow": lambda: BagOfWords(binary=True),
            "word2vec": WordEmbeddings,
            "sentence": lambda: SentenceEmbedder(cache_dir=self.cache_dir),
        }[self.features]()

    def _vectorize(self, texts: list[str]) -> sp.csr_matrix | np.ndarray:
        if self.features == "sentence":
            return self.extractor_.encode(texts)
        return normalize(self.extractor_.transform(texts))

    def _fit(self, dataset: Dataset, progress: bool) -> None:
        texts = item_texts(dataset.items)
        self.extractor_ = self._extractor()
        if self.features != "sentence":
            self.extractor_.fit(texts)
        self.item_vectors_ = self._vectorize(texts)
        weights = {**DEFAULT_EVENT_WEIGHTS, **(self.event_weights or {})}
        self.confidence_ = confidence_matrix(dataset, weights)

    def _profiles(self, users: np.ndarray, history: sp.csr_matrix | None):
        rows = self.confidence_[users] if history is None else history
        rows = sp.csr_matrix(rows)
        rows.data = np.log1p(rows.data)  # many views of one item should not drown the rest
        return rows @ self.item_vectors_

    def _score(self, users: np.ndarray, history: sp.csr_matrix | None) -> np.ndarray:
        profiles = self._profiles(users, history)
        scores = profiles @ self.item_vectors_.T
        return scores.toarray() if sp.issparse(scores) else np.asarray(scores)

    def _forget_users(self, users: np.ndarray) -> None:
        self.confidence_ = rows_emptied(self.confidence_, users)

    def _similarity(self, items: np.ndarray) -> np.ndarray:
        sims = self.item_vectors_[items] @ self.item_vectors_.T
        return sims.toarray() if sp.issparse(sims) else np.asarray(sims)

    def add_items(self, items: pd.DataFrame) -> np.ndarray:
        """Append new catalog rows (cold-start items); returns their dense ids."""
        self._check_fitted()
        vectors = self._vectorize(item_texts(items))
        stack = sp.vstack if sp.issparse(self.item_vectors_) else np.vstack
        self.item_vectors_ = stack([self.item_vectors_, vectors])
        if sp.issparse(self.item_vectors_):
            self.item_vectors_ = sp.csr_matrix(self.item_vectors_)
        start, self.n_items_ = self.n_items_, self.n_items_ + len(items)
        for name in ("user_items_", "confidence_"):
            m = getattr(self, name)
            setattr(
                self,
                name,
                sp.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], self.n_items_)),
            )
        return np.arange(start, self.n_items_)

    # ------------------------------------------------------------------ storage
    def _json_state(self) -> dict[str, Any]:
        if self.features in ("tfidf", "bow"):
            return self.extractor_.state()[0]
        if self.features == "word2vec":
            return {"words": self.extractor_.words_}
        return {}

    def _state(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        if sp.issparse(self.item_vectors_):
            v = self.item_vectors_
            arrays |= {
                "items.indptr": v.indptr.astype(np.int64),
                "items.indices": v.indices.astype(np.int32),
                "items.data": v.data.astype(np.float32),
                "items.shape": np.array(v.shape, np.int64),
            }
        else:
            arrays["items.dense"] = np.asarray(self.item_vectors_, np.float32)
        c = self.confidence_
        arrays |= {
            "confidence.indptr": c.indptr.astype(np.int64),
            "confidence.indices": c.indices.astype(np.int32),
            "confidence.data": c.data.astype(np.float32),
        }
        if self.features == "tfidf":
            arrays |= self.extractor_.state()[1]
        if self.features == "word2vec":
            arrays["word_vectors"] = self.extractor_.vectors_
        return arrays

    def _set_json_state(self, state: dict[str, Any]) -> None:
        self._json = state

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.extractor_ = self._extractor()
        if self.features in ("tfidf", "bow"):
            self.extractor_.set_state(self._json, arrays)
        elif self.features == "word2vec":
            self.extractor_.set_state(self._json["words"], arrays["word_vectors"])
        if "items.dense" in arrays:
            self.item_vectors_ = arrays["items.dense"]
        else:
            self.item_vectors_ = sp.csr_matrix(
                (arrays["items.data"], arrays["items.indices"], arrays["items.indptr"]),
                shape=tuple(arrays["items.shape"]),
            )
        self.confidence_ = sp.csr_matrix(
            (arrays["confidence.data"], arrays["confidence.indices"], arrays["confidence.indptr"]),
            shape=(self.n_users_, self.n_items_),
        )
