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
class Candidates:
    """Retrieved rows in fused order with each retriever's evidence."""

    rows: np.ndarray
    score: np.ndarray
    bm25: np.ndarray
    cosine: np.ndarray
    lexical_matches: int

    def head(self, depth: int) -> Candidates:
        """The first ``depth`` candidates (what the ranker re-orders)."""
        return Candidates(
            self.rows[:depth],
            self.score[:depth],
            self.bm25[:depth],
            self.cosine[:depth],
            self.lexical_matches,
        )


def retrieve(
    plan: QueryPlan,
    query_vector: np.ndarray | None,
    filters: Filters,
    settings: SearchSettings,
    catalog: Catalog,
    lexical: LexicalIndex,
    vectors: VectorIndex | None,
) -> Candidates:
    """Lexical and semantic candidates within ``filters``, fused (no vector: lexical only)."""
    s = settings
    lists, list_weights, floors = [], [], []
    lex_rows, lex_scores = np.empty(0, np.int64), np.empty(0, np.float32)
    found_by_words = False
    if plan.terms:
        text_query = lexical.text_query(plan.terms, s.title_boost)
        match = lexical.match_query(plan.word_terms, plan.required)
        lex_rows, lex_scores = lexical.search(text_query, filters, s.max_hits, match)
        # Over the whole catalogue, as the relaxing (``semantic_floor``).
        found_by_words = bool(
            lexical.matching(plan.word_terms, plan.required) if filters.active() else len(lex_rows)
        )
        live = ~catalog.deleted[lex_rows]
        lex_rows, lex_scores = lex_rows[live], lex_scores[live]
        lists.append((lex_rows, lex_scores))
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
        keep = sem_scores >= semantic_floor(found_by_words, s)
        sem_rows, sem_scores = sem_rows[keep], sem_scores[keep]
        lists.append((sem_rows, sem_scores))
        list_weights.append(s.semantic_weight)
        floors.append(s.semantic_min_score)  # no credit below it (``fusion``)
    rows, score = fuse(lists, list_weights, s.fusion, s.rrf_k, floors)
    bm25 = _lookup(rows, lex_rows, lex_scores)
    cosine = _lookup(rows, sem_rows, sem_scores, missing=np.nan)
    return Candidates(rows, score, bm25, cosine, len(lex_rows))


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
