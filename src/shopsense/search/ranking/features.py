"""The learnt ranker's features: one row of ``FEATURES`` per candidate of a
query, from the retrievers' evidence, how the query's terms and letters meet
the title, brand and category, the item's popularity and price, and the word
lifts learnt from judgments.

The features read an index only through a ``RankingContext`` (the
catalogue, term counts, item vectors), so they can be computed for any index
and tested without an engine.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from rapidfuzz import fuzz, process, utils

from shopsense.search.analysis import terms
from shopsense.search.catalog import Catalog
from shopsense.search.query.plan import QueryPlan
from shopsense.search.query.retrieve import Candidates
from shopsense.search.ranking.associations import N_LIFT_FEATURES, TermAssociations
from shopsense.search.semantic import VectorIndex

BASE_FEATURES = (
    "bm25",
    "bm25_relative",
    "bm25_reciprocal_rank",
    "cosine",
    "cosine_relative",
    "fused",
    "fused_reciprocal_rank",
    "top5_centroid_cosine",
    "top20_centroid_cosine",
    "title_coverage",
    "title_exact_coverage",
    "title_idf_coverage",
    "query_terms",
    "title_terms",
    "title_share_matched",
    "phrase_in_title",
    "bigram_coverage",
    "first_term_in_title",
    "last_term_in_title",
    "last_term_early_in_title",
    "numbers_matched",
    "chars_token_set",
    "chars_partial",
    "joined_query_in_title",
    "brand_matched",
    "category_matched",
    "popularity",
    "price",
    "search_clicks",
    "word_lift_mean",
    "word_lift_least",
    "other_word_lift_mean",
    "missing_word_lift_sum",
)
# Features a tree model cannot put in context on its own: each is also given
# against the query's leading candidates (below their best, in their standard
# deviations, and their best), because "0.6 cosine" is strong for one query and
# weak for another.
IN_CONTEXT = tuple(
    n
    for n in BASE_FEATURES
    if n not in {"bm25_relative", "cosine_relative", "fused_reciprocal_rank", "query_terms"}
)
FEATURES = BASE_FEATURES + tuple(
    f"{n}_{suffix}" for suffix in ("below_best", "z", "best") for n in IN_CONTEXT
)
CONTEXT = 50  # leading candidates the per-query context is taken over
NUMBER = re.compile(r"^\d")


@dataclass(frozen=True)
class RankingContext:
    """What the features read of an index: its catalogue (columns and title
    terms), how many items hold an index term (``doc_freq``, for the terms'
    idf), and the item vectors (None for a lexical-only index)."""

    catalog: Catalog
    doc_freq: Callable[[str], int]
    vectors: VectorIndex | None


class TitleTerms:
    """Candidates' title terms as integer ids, so a query's term matches over
    all candidates are a few array operations instead of a loop per item."""

    def __init__(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        self.n = len(lengths)
        self.lengths = lengths
        self.ids = ids
        self.owner = np.repeat(np.arange(self.n), lengths)
        starts = np.cumsum(lengths) - lengths
        self.position = np.arange(len(ids)) - starts[self.owner]

    def present(self, term_ids: np.ndarray, within: int | None = None) -> np.ndarray:
        """(candidates × terms): which title has each term (in its first ``within``)."""
        out = np.zeros((self.n, len(term_ids)), bool)
        hit_token, hit_term = np.nonzero(self.ids[:, None] == term_ids[None, :])
        if within is not None:
            early = self.position[hit_token] < within
            hit_token, hit_term = hit_token[early], hit_term[early]
        out[self.owner[hit_token], hit_term] = True
        return out

    def bigrams_matched(self, pairs: np.ndarray) -> np.ndarray:
        """How many of the (distinct) id ``pairs`` occur as adjacent title terms."""
        out = np.zeros(self.n, np.int64)
        if len(self.ids) < 2 or not len(pairs):
            return out
        same = self.owner[:-1] == self.owner[1:]
        first, second = self.ids[:-1], self.ids[1:]
        for a, b in pairs:
            hits = np.unique(self.owner[:-1][same & (first == a) & (second == b)])
            out[hits] += 1
        return out


def ranking_features(
    context: RankingContext,
    associations: TermAssociations,
    plan: QueryPlan,
    vector: np.ndarray | None,
    found: Candidates,
) -> np.ndarray:
    """One row of ``FEATURES`` per candidate of ``found``; ``vector`` is the
    query's (None: no dense features beyond the retrieved cosines)."""
    catalog = context.catalog
    rows = found.rows
    n = len(rows)
    out = np.zeros((n, len(FEATURES)), np.float32)
    col = {name: i for i, name in enumerate(FEATURES)}
    bm25 = found.bm25
    out[:, col["bm25"]] = bm25
    out[:, col["bm25_relative"]] = bm25 / bm25.max() if n and bm25.max() > 0 else 0.0
    lex_rank = np.argsort(np.argsort(-bm25, kind="stable"), kind="stable") + 1
    out[:, col["bm25_reciprocal_rank"]] = np.where(bm25 > 0, 1.0 / lex_rank, 0.0)
    cosine = found.cosine.copy()
    if vector is not None and context.vectors is not None:
        vectors = context.vectors.vectors(rows)
        cosine = vectors @ vector
        # Pseudo-relevance: how alike an item is to the best few results,
        # which are mostly right; a store's relevant items come in groups.
        for top in (5, 20):
            centroid = vectors[:top].mean(axis=0)
            centroid /= np.linalg.norm(centroid) + 1e-12
            out[:, col[f"top{top}_centroid_cosine"]] = vectors @ centroid
    cosine = np.where(np.isnan(cosine), 0.0, cosine)
    out[:, col["cosine"]] = cosine
    out[:, col["cosine_relative"]] = cosine - (cosine.max() if n else 0.0)
    out[:, col["fused"]] = found.score
    out[:, col["fused_reciprocal_rank"]] = 1.0 / np.arange(1, n + 1)
    _term_features(context, associations, plan, rows, out, col)
    _character_features(plan, catalog.strings("title", rows), out, col)
    out[:, col["popularity"]] = np.log1p(catalog.popularity[rows])
    price = catalog.price[rows]
    out[:, col["price"]] = np.where(np.isfinite(price), np.log1p(np.maximum(price, 0)), -1.0)
    out[:, col["search_clicks"]] = np.log1p(catalog.search_clicks[rows])
    if n:
        _in_context(out, col)
    return out


def exact_terms(plan: QueryPlan) -> list[str]:
    """The query's own terms, as read: a misspelt word's correction and a
    partial last word's completion, not the typed word, which no title has
    (``QueryPlan.read_terms``)."""
    return plan.read_terms


@lru_cache(maxsize=1 << 16)
def label_terms(label: str) -> frozenset[str]:
    """Terms of a brand or category name; a catalogue has few, and each is
    met again on many queries' candidates."""
    return frozenset(terms(label))


def _term_features(
    context: RankingContext,
    associations: TermAssociations,
    plan: QueryPlan,
    rows: np.ndarray,
    out: np.ndarray,
    col: dict[str, int],
) -> None:
    """How the query's terms meet each candidate's title, brand and category."""
    catalog = context.catalog
    index = catalog.title_index
    table = TitleTerms(*index.gather(rows))
    exact = exact_terms(plan)
    others = plan.other_terms
    all_terms = set(exact) | set(others)
    every = table.present(index.ids_of(exact + others))
    present = every[:, : len(exact)]
    out[:, col["query_terms"]] = len(exact)
    out[:, col["title_terms"]] = table.lengths
    lifts = col["word_lift_mean"]
    out[:, lifts : lifts + N_LIFT_FEATURES] = associations.features(
        exact, table.ids, table.owner, table.n, index
    )
    matched_all = every.sum(axis=1)
    distinct = index.distinct[rows]
    out[:, col["title_share_matched"]] = matched_all / np.maximum(distinct, 1)
    if all_terms:
        out[:, col["title_coverage"]] = matched_all / len(all_terms)
    if exact:
        n_docs = max(catalog.n_rows, 1)
        idf = np.array([np.log1p(n_docs / (1 + context.doc_freq(t))) for t in exact])
        idf_total = idf.sum()
        out[:, col["title_exact_coverage"]] = present.mean(axis=1)
        if idf_total:
            out[:, col["title_idf_coverage"]] = present @ idf / idf_total
        out[:, col["first_term_in_title"]] = present[:, 0]
        out[:, col["last_term_in_title"]] = present[:, -1]
        out[:, col["last_term_early_in_title"]] = table.present(index.ids_of(exact[-1:]), within=4)[
            :, 0
        ]
        phrase = " ".join(exact)
        joined = catalog.strings("title_terms", rows)
        out[:, col["phrase_in_title"]] = [phrase in j for j in joined]
        bigrams = sorted(set(itertools.pairwise(exact)))
        if bigrams:
            pairs = index.ids_of([w for pair in bigrams for w in pair]).reshape(-1, 2)
            out[:, col["bigram_coverage"]] = table.bigrams_matched(pairs) / len(bigrams)
        numbers = [i for i, t in enumerate(exact) if NUMBER.match(t)]
        if numbers:
            out[:, col["numbers_matched"]] = present[:, numbers].mean(axis=1)
    for name, column in (("brand_matched", "brand"), ("category_matched", "category")):
        labels = catalog.strings(column, rows)
        matched = {
            label: bool(label) and bool(all_terms & label_terms(label)) for label in set(labels)
        }
        out[:, col[name]] = [matched[label] for label in labels]


def _character_features(
    plan: QueryPlan, titles: np.ndarray, out: np.ndarray, col: dict[str, int]
) -> None:
    """Letter-level likeness of the query as read and the title, which terms
    miss: "deckover" against "Deck Over", "2x4" against "2 in. x 4 in."."""
    if not len(titles):
        return
    processed = [utils.default_process(t) for t in titles]
    query = utils.default_process(plan.read_text)
    for name, scorer in (
        ("chars_token_set", fuzz.token_set_ratio),
        ("chars_partial", fuzz.partial_ratio),
    ):
        out[:, col[name]] = (
            process.cdist([query], processed, scorer=scorer, dtype=np.float32)[0] / 100.0
        )
    joined = query.replace(" ", "")
    if joined:
        out[:, col["joined_query_in_title"]] = [joined in t.replace(" ", "") for t in processed]


def _in_context(out: np.ndarray, col: dict[str, int]) -> None:
    """The ``IN_CONTEXT`` features against the first ``CONTEXT`` candidates
    (fused order): below their best, in their standard deviations, their best."""
    k = len(IN_CONTEXT)
    base = out[:, [col[n] for n in IN_CONTEXT]]
    lead = base[:CONTEXT]
    best = lead.max(axis=0)
    start = col[f"{IN_CONTEXT[0]}_below_best"]
    out[:, start : start + k] = base - best
    out[:, start + k : start + 2 * k] = (base - lead.mean(axis=0)) / (lead.std(axis=0) + 1e-6)
    out[:, start + 2 * k : start + 3 * k] = best
