"""What a query that matches nothing offers instead: the most popular items
within its filters (of the whole store, when the filters leave none). They
are never hits: a response carries them apart (``fallback``), for a store to
show under "no results for …", so a zero-result page stays one and can be
counted."""

from __future__ import annotations

import numpy as np

from shopsense.search.catalog import Catalog, Filters
from shopsense.search.query.retrieve import browse


def fallback_rows(catalog: Catalog, filters: Filters, n: int) -> np.ndarray:
    """The ``n`` most popular live rows within ``filters``, or of the store."""
    rows, _ = browse(catalog, filters)
    if not len(rows) and filters.active():
        rows, _ = browse(catalog, Filters())
    return rows[:n]
