"""Item embeddings to start a neural model from, instead of noise.

A sequence model's item table starts random and spends its first epochs
learning what a neighbour model knows in seconds: which items go together.
``init`` starts it from that instead:

- ``"als"``: the item factors of :class:`~shopsense.models.als.ALS`, fitted
  with as many factors as the network is wide (seconds on a store's data);
- ``"itemknn"``: the leading eigenvectors of
  :class:`~shopsense.models.itemknn.ItemKNN`'s similarity (symmetrised),
  each scaled by the square root of its eigenvalue, so that dot products of
  the vectors approximate the neighbour model's similarities;
- ``"text"``: the titles' sentence embeddings, reduced by PCA, so items with
  few events start near textually similar ones;
- ``"random"``: the network's own initialisation.

Whatever the source, the vectors are scaled to the standard deviation of the
network's own initialisation (0.02), so the learning rate, the warm-up and
the sqrt(hidden) input scaling mean what they mean for a random start; their
geometry (directions and relative lengths) is the source's.
"""

from __future__ import annotations

import numpy as np

from shopsense.data.dataset import Dataset
from shopsense.errors import ShopsenseError

INITS = ("random", "als", "itemknn", "text")
INIT_STD = 0.02
"""The standard deviation of the networks' own item-embedding initialisation."""


def check_init(init: str) -> None:
    """A clear error for an ``init`` that is none of :data:`INITS`."""
    if init not in INITS:
        raise ShopsenseError(f"init must be one of {', '.join(INITS)}, not {init!r}")


def item_vectors(
    init: str, dataset: Dataset, width: int, seed: int, cache_dir: str | None = None
) -> np.ndarray | None:
    """``(n_items, ≤ width)`` float32 vectors from ``init`` to start the item
    embeddings from (None for ``"random"``), scaled to :data:`INIT_STD`."""
    check_init(init)
    if init == "random":
        return None
    if init == "als":
        vectors = als_vectors(dataset, width, seed)
    elif init == "itemknn":
        vectors = itemknn_vectors(dataset, width, seed)
    else:
        vectors = text_vectors(dataset, width, cache_dir)
    return (vectors * (INIT_STD / max(float(vectors.std()), 1e-12))).astype(np.float32)


def als_vectors(dataset: Dataset, width: int, seed: int) -> np.ndarray:
    """ALS item factors, ``width`` of them."""
    from shopsense.models.als import ALS

    return ALS(factors=width, random_state=seed).fit(dataset).item_factors_.astype(np.float64)


def itemknn_vectors(dataset: Dataset, width: int, seed: int) -> np.ndarray:
    """The top ``width`` eigenvectors of item-KNN's similarity, scaled by the
    square root of their (positive) eigenvalues."""
    import scipy.sparse.linalg as sla

    from shopsense.models.itemknn import ItemKNN

    similarity = ItemKNN().fit(dataset).similarity_.astype(np.float64)
    symmetric = (similarity + similarity.T) / 2
    n = symmetric.shape[0]
    k = min(width, n - 2)
    if k < 1:
        return np.zeros((n, width))
    start = np.random.default_rng(seed).random(n)
    values, vectors = sla.eigsh(symmetric, k=k, which="LA", v0=start)
    return vectors * np.sqrt(np.clip(values, 0.0, None))


def text_vectors(dataset: Dataset, width: int, cache_dir: str | None) -> np.ndarray:
    """The titles' sentence embeddings, centred and projected on their top
    ``width`` principal directions."""
    from shopsense.features.sentence import SentenceEmbedder

    titles = dataset.items["title"].fillna("").astype(str).tolist()
    vectors = SentenceEmbedder(cache_dir=cache_dir).encode(titles).astype(np.float64)
    vectors -= vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(vectors, full_matrices=False)
    return vectors @ vt[:width].T
