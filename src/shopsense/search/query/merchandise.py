"""Merchandising a result set: the index's rules (``search.rules``) in effect
for one search, applied where the set is final, after the shopper's sort and
before paging, so a pin holds its place on every page and a hidden item
leaves the hits, the ``total`` and the facets alike."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shopsense.search.catalog import Catalog, Filters
from shopsense.search.rules import Merchandising, RulesInEffect


@dataclass(frozen=True)
class ResultRules:
    """The rules of ``merchandising`` at ``now`` for a search of ``query``
    (as typed) on the page of ``category`` (the search's one category
    filter; None for none or several)."""

    merchandising: Merchandising
    now: float
    query: str
    category: str | None

    @classmethod
    def of(
        cls, merchandising: Merchandising, now: float, query: str, filters: Filters
    ) -> ResultRules:
        category = filters.category[0] if len(filters.category) == 1 else None
        return cls(merchandising, now, query, category)

    def on(self, catalog: Catalog) -> RulesInEffect:
        """These rules over ``catalog``'s rows."""
        return RulesInEffect(self.merchandising, catalog, self.now, self.query, self.category)

    def ordered(
        self, rows: np.ndarray, score: np.ndarray, catalog: Catalog
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``rows`` (in the shopper's sort) as the rules order them, their
        scores, and the ids of the rules that changed them."""
        return self.on(catalog).apply_scored(rows, score)

    def shown(self, rows: np.ndarray, catalog: Catalog) -> np.ndarray:
        """Of ``rows`` (facets', the fallback's), those the rules leave shown."""
        return self.on(catalog).shown_rows(rows)
