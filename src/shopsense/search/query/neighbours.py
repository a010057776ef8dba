"""Items near items by their text's vectors, with no query: what is like an
item no model has seen yet (added through the API since the last training).
The score is the cosine; deleted items are never returned."""

from __future__ import annotations

import numpy as np

from shopsense.search.catalog import Catalog
from shopsense.search.semantic import VectorIndex


def similar_rows(
    catalog: Catalog, vectors: VectorIndex, item_id: str, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` live rows nearest to ``item_id``'s vector, best first, with
    their cosines; none for an unknown item or one without a vector."""
    row = catalog.row_of.get(item_id)
    if row is None or row >= vectors.size:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    allowed = np.zeros(catalog.n_rows, bool)
    allowed[catalog.live_rows] = True
    allowed[row] = False
    return vectors.search(vectors.vectors(np.array([row]))[0], k, allowed)


def nearest_rows(
    catalog: Catalog, vectors: VectorIndex, item_ids: list[str], candidates: list[str], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Of the live ``candidates``, the ``k`` rows nearest to the mean of
    ``item_ids``' vectors, best first, with their cosines; none where neither
    list has an item with a vector."""
    row_of, size = catalog.row_of, vectors.size
    rows = np.array([row_of[i] for i in item_ids if row_of.get(i, size) < size], np.int64)
    pool = np.array([row_of[i] for i in candidates if row_of.get(i, size) < size], np.int64)
    pool = pool[~catalog.deleted[pool]] if len(pool) else pool
    if not len(rows) or not len(pool):
        return np.empty(0, np.int64), np.empty(0, np.float32)
    query = vectors.vectors(rows).mean(axis=0)
    query /= max(float(np.linalg.norm(query)), 1e-12)
    scores = vectors.vectors(pool) @ query
    best = np.argsort(-scores, kind="stable")[:k]
    return pool[best], scores[best]
