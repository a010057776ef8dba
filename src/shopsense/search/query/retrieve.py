"""Retrieval: a plan's lexical (BM25) and semantic (embedding) candidates,
each within the filters, fused into one list.

Filters are applied inside both retrievers, so a selective filter still gets
the best matches within it rather than what is left of the unfiltered best.
Only what matches the query is retrieved (``query.matching``): lexically,
enough of its words; semantically, a cosine of at least its floor, lower
where the words matched something (``semantic_floor``). An encoder that
reads no Chinese (the shipped MiniLM: it puts any two Chinese texts near,
and on the synthetic store most of a Chinese noun's neighbours above the
threshold are of another category) matches no Chinese query; its words do. A
query of no terms has no candidates.

A search with filters also retrieves without them (its facets count over
that); where the unfiltered lexical matches are all there (fewer than
``max_hits``), the filtered ones are those of them within the filters, in
the same order, and tantivy is not asked again. The semantic side is always
searched within the filters: the unfiltered one is approximate (HNSW) where
the filtered one scans a brand's few thousand rows exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shopsense.features.text import CJK
from shopsense.search.catalog import Catalog, Filters
from shopsense.search.index.settings import SearchSettings
from shopsense.search.lexical import LexicalIndex
from shopsense.search.query.fusion import fuse
from shopsense.search.query.matching import semantic_floor
from shopsense.search.query.plan import QueryPlan
from shopsense.search.semantic import VectorIndex


@dataclass
class LexicalMatches:
    """The lexical retriever's matches, best BM25 first."""

    rows: np.ndarray
    scores: np.ndarray
    complete: bool  # fewer than ``max_hits``: every match within the filters is here
    found_by_words: bool  # some item of the whole catalogue has enough of the words

    def within(self, catalog: Catalog, filters: Filters) -> LexicalMatches:
        """Those of a complete unfiltered list within ``filters``: what a search
        with them finds."""
        keep = catalog.mask(self.rows, filters)
        return LexicalMatches(self.rows[keep], self.scores[keep], True, self.found_by_words)


NO_MATCHES = LexicalMatches(np.empty(0, np.int64), np.empty(0, np.float32), True, False)


@dataclass
class Candidates:
    """Retrieved rows in fused order with each retriever's evidence."""

    rows: np.ndarray
    score: np.ndarray
    bm25: np.ndarray
    cosine: np.ndarray
    lexical: LexicalMatches

    def head(self, depth: int) -> Candidates:
        """The first ``depth`` candidates (what the ranker re-orders)."""
        return Candidates(
            self.rows[:depth],
            self.score[:depth],
            self.bm25[:depth],
            self.cosine[:depth],
            self.lexical,
        )


def retrieve(
    plan: QueryPlan,
    query_vector: np.ndarray | None,
    filters: Filters,
    settings: SearchSettings,
    catalog: Catalog,
    lexical: LexicalIndex,
    vectors: VectorIndex | None,
    unfiltered: Candidates | None = None,
) -> Candidates:
    """Lexical and semantic candidates within ``filters``, fused (no vector:
    lexical only); ``unfiltered``, the plan's candidates without filters, saves
    the lexical search where its matches are complete."""
    s = settings
    lists, list_weights, floors = [], [], []
    matches = NO_MATCHES
    if plan.terms:
        if unfiltered is not None and unfiltered.lexical.complete:
            matches = unfiltered.lexical.within(catalog, filters)
        else:
            matches = lexical_matches(plan, filters, s, catalog, lexical)
        lists.append((matches.rows, matches.scores))
        list_weights.append(1.0 - s.semantic_weight)
        floors.append(None)
    sem_rows, sem_scores = np.empty(0, np.int64), np.empty(0, np.float32)
    reads = s.semantic_reads_chinese or not CJK.search(plan.text)
    if query_vector is not None and vectors is not None and s.semantic_weight > 0 and reads:
        allowed = None
        if filters.active() or catalog.deleted.any():
            allowed = np.zeros(catalog.n_rows, bool)
            live = catalog.live_rows
            allowed[live[catalog.mask(live, filters)]] = True
        sem_rows, sem_scores = vectors.search(query_vector, s.semantic_k, allowed)
        keep = sem_scores >= semantic_floor(matches.found_by_words, s)
        sem_rows, sem_scores = sem_rows[keep], sem_scores[keep]
        lists.append((sem_rows, sem_scores))
        list_weights.append(s.semantic_weight)
        floors.append(s.semantic_min_score)  # no credit below it (``fusion``)
    rows, score = fuse(lists, list_weights, s.fusion, s.rrf_k, floors)
    bm25 = _lookup(rows, matches.rows, matches.scores)
    cosine = _lookup(rows, sem_rows, sem_scores, missing=np.nan)
    return Candidates(rows, score, bm25, cosine, matches)


def lexical_matches(
    plan: QueryPlan,
    filters: Filters,
    settings: SearchSettings,
    catalog: Catalog,
    lexical: LexicalIndex,
) -> LexicalMatches:
    """The live items with enough of the plan's words within ``filters``, by BM25."""
    text_query = lexical.text_query(plan.terms, settings.title_boost)
    match = lexical.match_query(plan.word_terms, plan.required)
    rows, scores = lexical.search(text_query, filters, settings.max_hits, match)
    complete = len(rows) < settings.max_hits
    # Over the whole catalogue, as the relaxing (``semantic_floor``).
    found_by_words = bool(
        lexical.matching(plan.word_terms, plan.required) if filters.active() else len(rows)
    )
    live = ~catalog.deleted[rows]
    return LexicalMatches(rows[live], scores[live], complete, found_by_words)


def browse(catalog: Catalog, filters: Filters) -> tuple[np.ndarray, np.ndarray]:
    """What an empty query shows: the live items within ``filters``, most
    popular first (popularity as the score)."""
    live = catalog.live_rows
    rows = live[catalog.mask(live, filters)]
    score = catalog.popularity[rows]
    order = np.argsort(-score, kind="stable")
    return rows[order], score[order]


def _lookup(
    rows: np.ndarray, keys: np.ndarray, values: np.ndarray, missing: float = 0.0
) -> np.ndarray:
    """``values`` of ``rows`` by ``keys`` (``missing`` for a row not among them)."""
    out = np.full(len(rows), missing, np.float64)
    if len(keys):
        order = np.argsort(keys)
        pos = np.minimum(np.searchsorted(keys[order], rows), len(keys) - 1)
        found = keys[order][pos] == rows
        out[found] = values[order][pos][found]
    return out
