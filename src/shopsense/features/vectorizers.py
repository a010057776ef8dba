"""Bag-of-words and TF-IDF item vectors (scikit-learn), with the shared tokenizer.

Their learnt state is a vocabulary (JSON) and, for TF-IDF, an idf array, so a
model that uses them saves without pickle and vectorizes new items after load.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from shopsense.errors import ShopsenseError
from shopsense.features.text import tokenize


class BagOfWords:
    """Token counts per text (``binary`` caps them at 1)."""

    def __init__(
        self, min_df: int = 1, max_features: int | None = None, binary: bool = False
    ) -> None:
        self.min_df = min_df
        self.max_features = max_features
        self.binary = binary

    estimator: type[CountVectorizer] = CountVectorizer
    options: dict[str, Any] = {}  # noqa: RUF012 (read-only per class)

    def _vectorizer(self, vocabulary: dict[str, int] | None = None) -> CountVectorizer:
        return self.estimator(
            tokenizer=tokenize,
            lowercase=False,
            token_pattern=None,
            min_df=self.min_df if vocabulary is None else 1,
            max_features=self.max_features,
            binary=self.binary,
            vocabulary=vocabulary,
            **self.options,
        )

    def fit(self, texts: list[str]) -> BagOfWords:
        self.vectorizer_ = self._vectorizer()
        try:
            self.vectorizer_.fit(texts)
        except ValueError as e:
            if "empty vocabulary" not in str(e):
                raise
            raise ShopsenseError(
                "the texts hold no words to learn a vocabulary from "
                "(items without titles or descriptions need a model that does not read text)"
            ) from None
        return self

    def transform(self, texts: list[str]) -> sp.csr_matrix:
        return self.vectorizer_.transform(texts).tocsr().astype(np.float32)

    def fit_transform(self, texts: list[str]) -> sp.csr_matrix:
        return self.fit(texts).transform(texts)

    @property
    def vocabulary_(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.vectorizer_.vocabulary_.items()}

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able parameters and vocabulary, arrays) to save."""
        return {"vocabulary": self.vocabulary_}, {}

    def set_state(self, doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.vectorizer_ = self._vectorizer(doc["vocabulary"])
        self.vectorizer_.fit([""])  # a fixed vocabulary needs no data


class Tfidf(BagOfWords):
    """TF-IDF weights (sublinear tf, l2-normalized rows)."""

    estimator = TfidfVectorizer
    options = {"sublinear_tf": True}  # noqa: RUF012 (read-only per class)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"vocabulary": self.vocabulary_}, {"idf": self.vectorizer_.idf_.astype(np.float64)}

    def set_state(self, doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.vectorizer_ = self._vectorizer(doc["vocabulary"])
        self.vectorizer_.fit([" ".join(doc["vocabulary"])])
        self.vectorizer_.idf_ = arrays["idf"]
