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
    """The rules in effect for one search (``in_effect``: the index's rules
    at its time, for its query as typed, on the page of its one category
    filter), found once for its list, its facets and its fallback."""

    in_effect: RulesInEffect

    @classmethod
    def of(
        cls,
        merchandising: Merchandising,
        catalog: Catalog,
        now: float,
        query: str,
        filters: Filters,
    ) -> ResultRules:
        category = filters.category[0] if len(filters.category) == 1 else None
        return cls(RulesInEffect(merchandising, catalog, now, query, category, filters))

    def ordered(
        self, rows: np.ndarray, score: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``rows`` (in the shopper's sort) as the rules order them, their
        scores, and the ids of the rules that changed them."""
        return self.in_effect.apply_scored(rows, score)

    def shown(self, rows: np.ndarray) -> np.ndarray:
        """Of ``rows`` (facets', the fallback's), those the rules leave shown."""
        return self.in_effect.shown_rows(rows)
