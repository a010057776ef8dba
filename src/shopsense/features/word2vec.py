"""Word embeddings trained on the catalog's own text (gensim Word2Vec); an item's
vector is the mean of its tokens' vectors."""

from __future__ import annotations

import numpy as np

from shopsense.features.text import tokenize


class WordEmbeddings:
    """Word2Vec over tokenized item texts; deterministic with ``workers=1``."""

    def __init__(
        self, dim: int = 64, window: int = 5, min_count: int = 1, epochs: int = 20, seed: int = 0
    ) -> None:
        self.dim = dim
        self.window = window
        self.min_count = min_count
        self.epochs = epochs
        self.seed = seed

    def fit(self, texts: list[str]) -> WordEmbeddings:
        from gensim.models import Word2Vec

        sentences = [tokenize(t) for t in texts]
        model = Word2Vec(
            sentences=[s for s in sentences if s],
            vector_size=self.dim,
            window=self.window,
            min_count=self.min_count,
            epochs=self.epochs,
            seed=self.seed,
            workers=1,
        )
        self.words_ = list(model.wv.index_to_key)
        self.vectors_ = np.asarray(model.wv.vectors, dtype=np.float32)
        self._index = {w: i for i, w in enumerate(self.words_)}
        return self

    def word_vector(self, word: str) -> np.ndarray | None:
        i = self._index.get(word)
        return None if i is None else self.vectors_[i]

    def transform(self, texts: list[str]) -> np.ndarray:
        """Mean word vector per text (zeros when no token is known)."""
        out = np.zeros((len(texts), self.vectors_.shape[1]), np.float32)
        for row, text in enumerate(texts):
            ids = [self._index[t] for t in tokenize(text) if t in self._index]
            if ids:
                out[row] = self.vectors_[ids].mean(axis=0)
        return out

    def set_state(self, words: list[str], vectors: np.ndarray) -> None:
        self.words_, self.vectors_ = list(words), vectors
        self._index = {w: i for i, w in enumerate(self.words_)}
