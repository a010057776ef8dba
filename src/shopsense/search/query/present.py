"""Presenting results: the sort a shopper chose, the merchandising rules,
the page, each hit's fields and highlighted title, and the facets.

A sort other than relevance is stable over the relevance order, so items
equal on price (or without one, which go last) keep their relevance order.
"""

from __future__ import annotations

import html
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from shopsense.search.analysis import segment, stem
from shopsense.search.catalog import Catalog, Filters
from shopsense.search.query.merchandise import ResultRules
from shopsense.search.query.plan import QueryPlan
from shopsense.search.query.understand import Understanding

SORTS = ("relevance", "price_asc", "price_desc", "popularity", "newest")
MAX_PER_PAGE = 100
HIGHLIGHT = re.compile(r"[\u3400-\u9fff]+|[^\W_]+", re.UNICODE)


@dataclass
class Hit:
    item_id: str
    title: str
    brand: str
    category: str
    price: float | None
    score: float
    highlight: str


@dataclass
class SearchResults:
    query: str
    hits: list[Hit]
    total: int
    page: int
    per_page: int
    facets: dict[str, list[dict[str, Any]]]
    did_you_mean: str | None
    request_id: str
    took_ms: float
    from_cache: bool = False  # answered from the cache of anonymous searches
    # A query that matched nothing: popular items to show apart, never as hits.
    fallback: list[Hit] = field(default_factory=list)
    # What the query was read for (its filters and boosts) and the text matched.
    understood: Understanding | None = None
    rules_applied: list[str] = field(default_factory=list)  # ids of the rules that changed it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def present(
    catalog: Catalog,
    plan: QueryPlan,
    rows: np.ndarray,
    score: np.ndarray,
    facet_rows: np.ndarray,
    filters: Filters,
    sort: str,
    page: int,
    per_page: int,
    facets: bool,
    fallback: np.ndarray,
    understood: Understanding,
    rules: ResultRules,
) -> SearchResults:
    """The page of ``rows`` (relevance order, with their scores) in ``sort``
    and then as the ``rules`` order them, with the facets counted over
    ``facet_rows`` and the ``fallback`` rows (popularity their score), less
    what the rules hide; the request id and timing are the caller's to fill
    in."""
    if sort != "relevance":
        rows, score = sorted_by(rows, score, sort_key(catalog, sort, rows))
    rows, score, applied = rules.ordered(rows, score)
    fallback = rules.shown(fallback)
    start = (page - 1) * per_page
    shown = rows[start : start + per_page]
    return SearchResults(
        query=understood.query.strip(),
        hits=page_hits(catalog, shown, score[start : start + per_page], plan),
        total=len(rows),
        page=page,
        per_page=per_page,
        facets=catalog.facets(rules.shown(facet_rows), filters) if facets else {},
        did_you_mean=plan.did_you_mean,
        request_id="",
        took_ms=0.0,
        fallback=page_hits(catalog, fallback, catalog.popularity[fallback], plan),
        understood=understood,
        rules_applied=applied,
    )


def sort_key(catalog: Catalog, sort: str, rows: np.ndarray) -> np.ndarray:
    """Ascending key for a sort; items without the value go last."""
    c = catalog
    if sort in ("price_asc", "price_desc"):
        price = c.price[rows]
        key = price if sort == "price_asc" else -price
        return np.where(np.isfinite(key), key, np.inf)
    if sort == "popularity":
        return -c.popularity[rows]
    return np.where(np.isfinite(c.created[rows]), -c.created[rows], np.inf)


def sorted_by(
    rows: np.ndarray, score: np.ndarray, key: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` and their scores in ascending ``key``, ties in their order."""
    order = np.argsort(key, kind="stable")
    return rows[order], score[order]


def page_hits(catalog: Catalog, rows: np.ndarray, scores: np.ndarray, plan: QueryPlan) -> list[Hit]:
    """The shown ``rows`` as hits, their titles highlighted by the plan's terms."""
    if not len(rows):
        return []  # most searches have no fallback: no columns to read
    c = catalog
    columns = {n: c.strings(n, rows) for n in ("item_id", "title", "brand", "category")}
    out = []
    for i, row in enumerate(rows.tolist()):
        price = float(c.price[row])
        title = columns["title"][i]
        out.append(
            Hit(
                item_id=str(columns["item_id"][i]),
                title=title,
                brand=columns["brand"][i],
                category=columns["category"][i],
                price=price if np.isfinite(price) else None,
                score=round(float(scores[i]), 6),
                highlight=highlight(title, plan.highlight),
            )
        )
    return out


def plain_hits(found: pd.DataFrame, scores: np.ndarray) -> list[Hit]:
    """Catalogue rows as hits without a query: the title unhighlighted, the score unrounded."""
    return [
        Hit(str(i.item_id), str(i.title), str(i.brand), str(i.category),
            None if pd.isna(i.price) else float(i.price), float(score), str(i.title))
        for i, score in zip(found.itertuples(), scores, strict=True)
    ]  # fmt: skip


def highlight(title: str, terms: set[str]) -> str:
    """The title, HTML-escaped, with words matching ``terms`` in ``<em>``."""
    out, last = [], 0
    for m in HIGHLIGHT.finditer(title):
        out.append(html.escape(title[last : m.start()]))
        for text, term in _highlight_parts(m.group()):
            out.append(f"<em>{text}</em>" if term in terms else text)
        last = m.end()
    out.append(html.escape(title[last:]))
    return "".join(out)


@lru_cache(maxsize=1 << 16)
def _highlight_parts(word: str) -> tuple[tuple[str, str], ...]:
    """A title word as (escaped text, index term) parts, a Chinese run cut into
    its words. Cached: every shown title is highlighted, and titles share words."""
    parts = segment(word).split() if not word.isascii() else [word]
    return tuple((html.escape(part), stem(part.lower())) for part in parts)
