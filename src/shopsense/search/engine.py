"""The search engine: opens an index folder and answers queries with filters,
facets, sorting, typo tolerance, synonyms, highlighting, personalization,
query understanding, merchandising rules and autocomplete; applies catalogue
changes to it.

``SearchEngine`` is a facade over the stages, each in a module named for it:
a query is read for a price, brands, categories and attributes
(``query.understand``), its text planned once (``query.plan``), retrieved
by BM25 and by embedding similarity and fused (``query.retrieve``),
re-ranked by the learnt ranker when the index has one (``ranking.model``),
lifted where it has what was read as a boost, personalized
(``query.personalize``), then sorted, ordered by the merchandising rules
(``query.merchandise``), paged and highlighted (``query.present``). Facets
are counted over the first ``max_hits`` matches of the query (as
Meilisearch's ``maxTotalHits``) and ignore the filters (disjunctive).
Building is ``index.build`` and changes ``index.updates``; the engine holds
the lock that lets searches run while a change is embedded and wait only
while it is applied.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shopsense.concurrency import SharedLock
from shopsense.errors import ShopsenseError
from shopsense.features.text import CJK, jieba_tokenizer
from shopsense.lru import LRUCache
from shopsense.search.analysis import MAX_QUERY_CHARS
from shopsense.search.catalog import Catalog, Filters
from shopsense.search.index.build import (
    PROFILES_FILE,
    embed_items,
    encoder_tag,
    indexable,
    write_index,
)
from shopsense.search.index.settings import SearchSettings
from shopsense.search.index.updates import (
    add_items,
    encoded_with,
    item_vectors,
    rebuilt_suggester,
    remove_items,
    save_changes,
)
from shopsense.search.lexical import LexicalIndex
from shopsense.search.profiles import UserProfiles
from shopsense.search.query.fallback import fallback_rows
from shopsense.search.query.log import log_search
from shopsense.search.query.matching import relaxed_required
from shopsense.search.query.merchandise import ResultRules
from shopsense.search.query.neighbours import nearest_rows, similar_rows
from shopsense.search.query.personalize import personalize
from shopsense.search.query.plan import QueryPlan, plan_query
from shopsense.search.query.present import (
    MAX_PER_PAGE,
    SORTS,
    Hit,
    SearchResults,
    plain_hits,
    present,
)
from shopsense.search.query.retrieve import Candidates, browse, retrieve
from shopsense.search.query.understand import (
    QueryVocabulary,
    Understanding,
    boosted,
    ignored_kinds,
    understand,
)
from shopsense.search.ranking.features import RankingContext
from shopsense.search.ranking.model import Ranker
from shopsense.search.rules import Merchandising
from shopsense.search.semantic import QueryEncoder, VectorIndex
from shopsense.search.suggest import Suggester, Suggestion
from shopsense.search.typo import Vocabulary

__all__ = ["PROFILES_FILE", "Hit", "SearchEngine", "SearchResults", "build_index"]

PLAN_CACHE = 4096
# Whole anonymous results pages; a store's frequent queries repeat, and each
# costs retrieval, the ranker and facets.
RESULT_CACHE = 2048


class SearchEngine:
    """An opened index folder."""

    def __init__(self, folder: Path, semantic: bool = True) -> None:
        folder = Path(folder)
        if not (folder / "settings.json").is_file():
            raise ShopsenseError(f"{folder} is not a search index (no settings.json)")
        self.folder = folder
        self.settings = SearchSettings.load(folder)
        self.catalog = Catalog.load(folder)
        self.lexical = LexicalIndex(folder / "tantivy")
        self.vocabulary = Vocabulary.load(folder / "vocabulary.json")
        self.suggester = Suggester.load(folder / "suggest.json")
        self.profiles = UserProfiles.load(folder / PROFILES_FILE)
        vectors = folder / "vectors.faiss"
        self.vectors = VectorIndex.load(vectors) if semantic and vectors.is_file() else None
        self.encoder = (
            QueryEncoder(self.settings.model_path, self.settings.int8_queries)
            if self.vectors
            else None
        )
        ranker = folder / "ranker.txt"
        self.ranker = Ranker.load(ranker) if ranker.is_file() else None
        self.query_vocabulary = QueryVocabulary().fit(self.catalog)
        self.merchandising = Merchandising.load(folder)
        self.log_path: Path | None = None
        self._synonyms = self.settings.synonym_map()
        self._plans: LRUCache[str, QueryPlan] = LRUCache(PLAN_CACHE)
        self._results: LRUCache[tuple, SearchResults] = LRUCache(RESULT_CACHE)
        self._changes = SharedLock()  # searches share it; upserts and deletes hold it alone

    def warm(self) -> None:
        """Do now what a server's first queries would otherwise wait for: the
        traced encoder's first runs (TorchScript optimizes on them), jieba's
        dictionary where the catalogue has Chinese (most of a second), the
        ranker's title terms, the attribute columns that filters and boosts
        read."""
        if self.encoder is not None:
            for text in ("warm up", "warm up the query encoder"):
                self.encoder.encode(text)
        _ = self.catalog.attribute_columns
        if self.ranker is not None:
            _ = self.catalog.title_index
        if self.catalog.items["title"].str.contains(CJK.pattern).any():
            jieba_tokenizer()

    # ------------------------------------------------------------- stages
    def analyze(self, query: str) -> QueryPlan:
        """The query's plan, its last word completed unless the query ends with
        a space (search as you type); frequent queries are planned once (typo
        correction is the costly part), until the catalogue changes."""
        return self._plans.get(query, self._plan)

    def _plan(self, query: str) -> QueryPlan:
        typing = query == query.rstrip()
        plan = plan_query(
            query.strip(),
            self.vocabulary,
            self.lexical.doc_freq,
            self._synonyms,
            self.settings,
            prefix=typing,
            matching=self.lexical.matching,
        )
        plan.required = relaxed_required(plan.word_terms, self.settings, self.lexical.matching)
        return plan

    def encode(self, query: str) -> np.ndarray | None:
        """The query's vector; None without a semantic index or weight."""
        if self.encoder is None or self.settings.semantic_weight <= 0:
            return None
        return self.encoder.encode(query)

    def retrieve(
        self,
        plan: QueryPlan,
        query_vector: np.ndarray | None,
        filters: Filters,
        unfiltered: Candidates | None = None,
    ) -> Candidates:
        """Lexical and semantic candidates within ``filters``, fused (no vector:
        lexical only), read where they can be from the plan's ``unfiltered`` ones."""
        return retrieve(
            plan, query_vector, filters, self.settings, self.catalog, self.lexical, self.vectors,
            unfiltered,
        )  # fmt: skip

    def ranking_context(self) -> RankingContext:
        """What the ranker's features read of this index."""
        return RankingContext(self.catalog, self.lexical.doc_freq, self.vectors)

    # ------------------------------------------------------------- search
    def search(
        self,
        query: str = "",
        filters: Filters | dict[str, Any] | None = None,
        sort: str = "relevance",
        page: int = 1,
        per_page: int = 10,
        user_id: str | None = None,
        personalization: float | None = None,
        facets: bool = True,
        session: pd.DataFrame | None = None,
        understand: bool = True,
        ignore: Collection[str] = (),
    ) -> SearchResults:
        """One search: ``query`` (empty to browse), ``filters`` such as
        ``{"brand": ["Acme"], "price_max": 50}``, a sort of ``SORTS``, a page.
        With ``user_id``, results lean toward the categories and brands of the
        user's events in the index and of their live ``session`` (item_id,
        type, timestamp: what they did since), by ``personalization``
        (default: the index setting). ``understand`` reads the query for a
        price, brands, categories and attributes (``understood``), but the
        kinds in ``ignore``; the index's merchandising rules then order the
        result (``rules_applied``)."""
        started = time.perf_counter()
        if not isinstance(query, str):
            raise ShopsenseError("query must be text")
        if len(query) > MAX_QUERY_CHARS:
            raise ShopsenseError(f"query is longer than {MAX_QUERY_CHARS} characters")
        if sort not in SORTS:
            raise ShopsenseError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
        if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
            raise ShopsenseError(f"page must be ≥ 1 and per_page between 1 and {MAX_PER_PAGE}")
        filters = Filters.parse(filters)
        query = query.lstrip()  # a space at the end says the last word is whole
        ignored = ignored_kinds(ignore)
        now = time.time()

        def answer(_: object = None) -> SearchResults:
            understood = self.understanding(query, understand, ignored)
            return self._answer(
                understood, filters, sort, page, per_page, user_id, personalization, facets,
                session, now,
            )  # fmt: skip

        with self._changes.shared():
            if user_id is None:  # anonymous: the same request, the same page
                key = (query, repr(filters), sort, page, per_page, facets, understand, ignored)
                key += (self.ranker, repr(self.settings))  # either may be swapped in place
                key += (self._rules_in_window(now),)  # a window opening changes the page
                cached = key in self._results
                page_of = self._results.get(key, answer)
            else:
                cached, page_of = False, answer()
        results = replace(
            page_of,
            hits=list(page_of.hits),
            request_id=uuid.uuid4().hex,
            took_ms=round((time.perf_counter() - started) * 1000, 3),
            from_cache=cached,
        )
        if self.log_path is not None:
            log_search(self.log_path, results, user_id)
        return results

    def understanding(self, query: str, enabled: bool, ignore: Collection[str]) -> Understanding:
        """What ``query`` is read for, as the index's settings say (nothing when
        not ``enabled``), but the kinds in ``ignore``."""
        if not enabled:
            return Understanding(query, query)
        return understand(query, self.query_vocabulary, self.settings.understanding, ignore)

    def _rules_in_window(self, now: float) -> tuple[str, ...]:
        return tuple(r.id for r in self.merchandising.rules if r.in_window(now))

    def _answer(
        self,
        understood: Understanding,
        caller_filters: Filters,
        sort: str,
        page: int,
        per_page: int,
        user_id: str | None,
        personalization: float | None,
        facets: bool,
        session: pd.DataFrame | None,
        now: float,
    ) -> SearchResults:
        filters = understood.filters(caller_filters)
        plan = self.analyze(understood.text)
        rows, score, facet_rows = self._found(
            plan, understood, filters, user_id, personalization, sort, session, facets
        )
        fallback = np.empty(0, np.int64)
        if plan.text and not len(rows):
            fallback = fallback_rows(self.catalog, filters, per_page)
        rules = ResultRules.of(self.merchandising, self.catalog, now, understood.query, filters)
        return present(
            self.catalog, plan, rows, score, facet_rows, filters, sort, page, per_page, facets,
            fallback, understood, rules,
        )  # fmt: skip

    def _found(
        self,
        plan: QueryPlan,
        understood: Understanding,
        filters: Filters,
        user_id: str | None,
        personalization: float | None,
        sort: str,
        session: pd.DataFrame | None = None,
        facets: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows a plan matches within ``filters`` in relevance order, with
        their scores, and the rows its facets are counted over (``facets``
        False: only the matched rows, without the second retrieval that
        disjunctive facets need); a plan of no text (no query, or one read
        whole into filters: "under 50") browses the filters."""
        if not plan.text:
            rows, score = browse(self.catalog, filters)
            return rows, score, self.catalog.live_rows
        # A query of no words ("*", "((") matches nothing; its vector would be noise.
        vector = self.encode(plan.semantic_text) if plan.terms else None
        if filters.active() and facets:
            # Facet counts ignore the filters (disjunctive): over the result
            # set of the query without them, as the facets of another choice.
            everything = self.retrieve(plan, vector, Filters())
            found = self.retrieve(plan, vector, filters, everything)
            facet_rows = np.union1d(everything.rows, found.rows)
        else:
            found = self.retrieve(plan, vector, filters)
            facet_rows = found.rows
        rows, score = found.rows, found.score
        if self.ranker is not None and sort == "relevance" and len(rows):
            rows, score = self.ranker.rerank(
                self.ranking_context(), plan, vector, found, self.settings.rerank_depth
            )
        lift = self.settings.understanding.boost
        rows, score = boosted(rows, score, understood.boosts(), self.catalog, lift)
        strength = self.settings.personalization if personalization is None else personalization
        rows, score = personalize(
            rows, score, user_id, session, strength, self.profiles, self.catalog
        )
        return rows, score, facet_rows

    def ranked_ids(
        self, query: str, limit: int = 100, understand: bool = True, ignore: Collection[str] = ()
    ) -> list[str]:
        """Item ids of the best ``limit`` results by relevance (for evaluation),
        the query (as typed: its last word completed too) read as ``search``
        reads it; no rules, no personalization."""
        with self._changes.shared():
            understood = self.understanding(query.strip(), understand, ignored_kinds(ignore))
            plan = self.analyze(understood.text)
            found = self._found(
                plan, understood, understood.filters(), None, 0.0, "relevance", facets=False
            )
        return self.catalog.strings("item_id", found[0][:limit]).tolist()

    def similar_items(self, item_id: str, k: int = 10) -> list[Hit]:
        """The ``k`` live items nearest to ``item_id`` by their text's vectors
        (cosine as the score), best first: what is like an item no model has
        seen yet (added through the API since the last training). Empty for
        an unknown item or an index without vectors."""
        with self._changes.shared():
            if self.vectors is None:
                return []
            rows, scores = similar_rows(self.catalog, self.vectors, item_id, k)
            return plain_hits(self.catalog.items.iloc[rows], scores)

    def nearest_to(self, item_ids: list[str], candidates: list[str], k: int) -> list[Hit]:
        """Of the live ``candidates``, the ``k`` nearest by text to the mean of
        ``item_ids``' vectors (cosine as the score), best first; empty where
        the index has no vectors or none of either is in it."""
        with self._changes.shared():
            if self.vectors is None:
                return []
            rows, scores = nearest_rows(self.catalog, self.vectors, item_ids, candidates, k)
            return plain_hits(self.catalog.items.iloc[rows], scores)

    def suggest(self, prefix: str, k: int = 10) -> list[Suggestion]:
        if not isinstance(prefix, str) or len(prefix) > MAX_QUERY_CHARS:
            raise ShopsenseError(f"a prefix is text of at most {MAX_QUERY_CHARS} characters")
        with self._changes.shared():
            return self.suggester.suggest(prefix, k)

    # ------------------------------------------------------------- changes
    def embed(self, items: pd.DataFrame) -> dict[str, np.ndarray]:
        """The vectors ``upsert`` gives ``items`` (by item id; none without a
        semantic index), computed without holding the index: a service embeds
        a catalogue change before it is logged, so that every replica with the
        same encoder (``encoder_tag``) indexes the change without embedding it."""
        if self.vectors is None:
            return {}
        frame, _ = indexable(items)
        vectors = embed_items(frame, self.folder, self.settings, progress=False)
        return dict(zip(frame["item_id"], vectors, strict=True))

    @property
    def encoder_tag(self) -> str:
        """Which encoder made the item vectors (a fine-tune by its weights' hash)."""
        return encoder_tag(self.settings.model_path)

    def upsert(
        self,
        items: pd.DataFrame,
        progress: bool = False,
        vectors: dict[str, np.ndarray] | None = None,
    ) -> int:
        """Add or replace items without rebuilding the index; returns how many.
        ``vectors`` (from ``embed``, by item id) saves embedding them here."""
        items, texts = indexable(items)
        embedded = None
        if self.vectors is not None:  # before the lock: searches go on meanwhile
            embedded = item_vectors(items, vectors or {}, self.folder, self.settings, progress)
        with self._changes.exclusive():
            new_rows = add_items(
                self.catalog, self.lexical, self.vocabulary, self.vectors, items, texts, embedded
            )
            self._saved()
        return len(new_rows)

    def delete(self, item_ids: list[str]) -> int:
        with self._changes.exclusive():
            rows = remove_items(self.catalog, self.lexical, item_ids)
            if len(rows):
                self._saved()
        return len(rows)

    def use_merchandising(self, merchandising: Merchandising) -> None:
        """Order results by these rules and out-of-stock policy from now on
        (saving them is the caller's: a service's change log, ``shopsense rules``)."""
        with self._changes.exclusive():
            self.merchandising = merchandising
            self._results.clear()

    def erase_user(self, user_id: str) -> int:
        """Forget the user's profile, in memory and in the index folder; returns
        how many of their events the folder's profiles held."""
        with self._changes.exclusive():
            return self.profiles.erase(user_id, self.folder / PROFILES_FILE)

    def use_encoder(self, model_path: str | None, progress: bool = False) -> None:
        """Switch to another sentence encoder (e.g. one fine-tuned on this
        store's queries): every item is embedded again with it."""
        with self._changes.exclusive():
            self.settings.model_path = model_path
            self.vectors, self.encoder = encoded_with(
                self.catalog, self.folder, self.settings, progress
            )
            self._saved()
            self.settings.save(self.folder)

    def with_encoder(
        self, model_path: str, embedding_cache: Path, progress: bool = False
    ) -> SearchEngine:
        """A copy of this engine, in memory only, whose items and queries go
        through another encoder (its item vectors cached in ``embedding_cache``);
        the index on disk is untouched. The ranker's training reads its queries
        through encoders that did not learn from them."""
        view = copy.copy(self)
        view.settings = replace(
            self.settings, model_path=model_path, embedding_cache=str(embedding_cache)
        )
        view.vectors, view.encoder = encoded_with(
            view.catalog, view.folder, view.settings, progress
        )
        view._results = LRUCache(RESULT_CACHE)
        return view

    def clear_caches(self) -> None:
        """Forget query plans, result pages and query encodings (after a change
        to the index, or to time queries cold)."""
        self._plans.clear()
        self._results.clear()
        if self.encoder is not None:
            self.encoder.clear_cache()

    def _saved(self) -> None:
        """Every change to the index ends here: autocomplete rebuilt over the
        changed catalogue, the query plans made against the old vocabulary and
        the results of the old catalogue forgotten, the brands, categories and
        attribute values a query is read for found again, the parts written."""
        self.suggester = rebuilt_suggester(self.folder, self.catalog)
        self.query_vocabulary = QueryVocabulary().fit(self.catalog)
        self.clear_caches()
        save_changes(self.folder, self.catalog, self.vocabulary, self.suggester, self.vectors)


def build_index(
    items: pd.DataFrame,
    out: Path,
    events: pd.DataFrame | None = None,
    settings: SearchSettings | None = None,
    semantic: bool = True,
    progress: bool = False,
) -> SearchEngine:
    """Index a catalog into the new folder ``out`` and open it. ``events``
    (source ids: user_id, item_id, type, timestamp, query) give popularity,
    the query log for autocomplete and the profiles that personalize."""
    write_index(items, out, events, settings, semantic, progress)
    return SearchEngine(out, semantic=semantic)
