"""The search engine: builds an index folder from a catalog, opens it, and
answers queries with filters, facets, sorting, typo tolerance, synonyms,
highlighting, personalization and autocomplete.

A query is analysed once (terms, typo corrections, synonyms), retrieved by
BM25 and by embedding similarity, fused, optionally re-ranked by a learnt
ranker, optionally personalized, then filtered, faceted, sorted and paged.
Filters are applied inside both retrievers, so a selective filter still gets
the best matches within it; facets are counted over the first ``max_hits``
matches of the query (as Meilisearch's ``maxTotalHits``).
"""

from __future__ import annotations

import copy
import html
import itertools
import json
import re
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shopsense.concurrency import SharedLock
from shopsense.data.schema import DEFAULT_EVENT_WEIGHTS, SEARCH_ACTIONS
from shopsense.errors import ShopsenseError
from shopsense.features.text import CJK, jieba_tokenizer
from shopsense.lru import LRUCache
from shopsense.search.analysis import (
    ANALYSIS_VERSION,
    MAX_QUERY_CHARS,
    UNITS,
    segment,
    stem,
    tokens,
    words,
)
from shopsense.search.catalog import Catalog, Filters, canonical_catalog, title_terms
from shopsense.search.fusion import FUSION_METHODS, fuse
from shopsense.search.lexical import LexicalIndex, indexed_texts
from shopsense.search.profiles import UserProfiles
from shopsense.search.semantic import QueryEncoder, VectorIndex, item_embedding_text
from shopsense.search.suggest import Suggester, Suggestion
from shopsense.search.typo import Vocabulary

SORTS = ("relevance", "price_asc", "price_desc", "popularity", "newest")
MAX_PER_PAGE = 100
PLAN_CACHE = 4096
# Whole anonymous results pages; a store's frequent queries repeat, and each
# costs retrieval, the ranker and facets.
RESULT_CACHE = 2048
PROFILES_FILE = "profiles.parquet"
HIGHLIGHT = re.compile(r"[\u3400-\u9fff]+|[^\W_]+", re.UNICODE)


@dataclass
class SearchSettings:
    """Ranking and tolerance knobs, saved with the index (``settings.json``)."""

    title_boost: float = 2.0
    fusion: str = "convex"
    semantic_weight: float = 0.3
    rrf_k: float = 60.0
    semantic_min_score: float = 0.2
    max_hits: int = 1000
    semantic_k: int = 100
    rerank_depth: int = 200
    typo_weight: float = 0.6
    synonym_weight: float = 0.8
    one_typo: int = 4
    two_typos: int = 8
    personalization: float = 0.3
    hnsw_above: int = 20_000
    int8_queries: bool = True
    model_path: str | None = None
    embedding_cache: str | None = None
    synonyms: list[list[str]] = field(default_factory=list)

    def check(self) -> None:
        if self.fusion not in FUSION_METHODS:
            raise ShopsenseError(f"fusion must be one of {', '.join(FUSION_METHODS)}")
        if not 0.0 <= self.semantic_weight <= 1.0:
            raise ShopsenseError("semantic_weight must be between 0 and 1")
        if self.max_hits < 1 or self.semantic_k < 0:
            raise ShopsenseError("max_hits must be positive and semantic_k not negative")

    def save(self, folder: Path) -> None:
        """``settings.json``, with the text analysis version the index was built by."""
        data = asdict(self) | {"analysis": ANALYSIS_VERSION}
        (folder / "settings.json").write_text(json.dumps(data, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> SearchSettings:
        data = json.loads((folder / "settings.json").read_text(encoding="utf-8"))
        if data.pop("analysis", None) != ANALYSIS_VERSION:
            raise ShopsenseError(
                f"{folder} was indexed by a shopsense version that analysed text "
                "differently: build it again with `shopsense index`"
            )
        return cls(**data)

    def synonym_map(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for group in self.synonyms:
            for word in group:
                out.setdefault(word.lower(), []).extend(w for w in group if w != word)
        return out


def load_synonyms(path: Path) -> list[list[str]]:
    """Synonym groups from JSON (a list of lists) or text (one comma-separated group a line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ShopsenseError(f"cannot read synonyms {path}: {e.strerror}") from None
    if path.suffix == ".json":
        try:
            groups = json.loads(text)
        except json.JSONDecodeError as e:
            raise ShopsenseError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups):
            raise ShopsenseError(f"{path} must hold a list of synonym lists")
    else:
        groups = [line.split(",") for line in text.splitlines() if line.strip()]
    groups = [[str(w).strip().lower() for w in g if str(w).strip()] for g in groups]
    return [g for g in groups if len(g) > 1]


@dataclass
class QueryPlan:
    """A query after analysis: weighted index terms and what was corrected."""

    text: str
    words: list[str]
    terms: list[tuple[str, float]]
    corrections: dict[str, str]
    highlight: set[str]

    @property
    def did_you_mean(self) -> str | None:
        if not self.corrections:
            return None
        return " ".join(self.corrections.get(w, w) for w in self.words)

    @property
    def semantic_text(self) -> str:
        """What the encoder reads: the query as corrected, since a misspelt word
        is split into word pieces that carry little of its meaning."""
        return self.did_you_mean or self.text


@dataclass
class Candidates:
    """Retrieved rows in fused order with each retriever's evidence."""

    rows: np.ndarray
    score: np.ndarray
    bm25: np.ndarray
    cosine: np.ndarray
    lexical_matches: int


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        self.ranker = None
        if (folder / "ranker.txt").is_file():
            from shopsense.search.ranker import Ranker

            self.ranker = Ranker.load(folder / "ranker.txt")
        self.log_path: Path | None = None
        self._synonyms = self.settings.synonym_map()
        self._plans: LRUCache[str, QueryPlan] = LRUCache(PLAN_CACHE)
        self._results: LRUCache[tuple, SearchResults] = LRUCache(RESULT_CACHE)
        self._changes = SharedLock()  # searches share it; upserts and deletes hold it alone

    def warm(self) -> None:
        """Do now what a server's first queries would otherwise wait for: the
        traced encoder's first runs (TorchScript optimizes on them), jieba's
        dictionary where the catalogue has Chinese (most of a second), the
        ranker's title terms."""
        if self.encoder is not None:
            for text in ("warm up", "warm up the query encoder"):
                self.encoder.encode(text)
        if self.ranker is not None:
            _ = self.catalog.title_index
        if self.catalog.items["title"].str.contains(CJK.pattern).any():
            jieba_tokenizer()

    # ------------------------------------------------------------- analysis
    def analyze(self, query: str) -> QueryPlan:
        """The query's plan; frequent queries are planned once (typo correction
        is the costly part), until the catalogue changes."""
        return self._plans.get(query, self._analyze)

    def _analyze(self, query: str) -> QueryPlan:
        s = self.settings
        plan_words = words(query)
        weights: dict[str, float] = {}
        corrections: dict[str, str] = {}

        def add(term: str, weight: float) -> None:
            weights[term] = max(weights.get(term, 0.0), weight)

        for word in plan_words:
            term = stem(word)
            add(term, 1.0)
            if word not in self.vocabulary and self.lexical.doc_freq(term) == 0:
                found = self.vocabulary.corrections(word)
                for fixed, edits in found:
                    add(stem(fixed), s.typo_weight / edits)
                parts = self.vocabulary.split(word)
                for part in parts or ():
                    add(stem(part), s.synonym_weight)
                if found or parts:
                    corrections[word] = found[0][0] if found else " ".join(parts)
            for synonym in self._synonyms.get(word, []):
                for w in words(synonym):
                    add(stem(w), s.synonym_weight)
        # Two words the catalogue writes as one: "closet maid" -> "closetmaid";
        # but not a measure's unit and the next word ("36 in door" is no "indoor").
        for i, (first, second) in enumerate(itertools.pairwise(plan_words)):
            if i and plan_words[i - 1][-1].isdigit() and first in UNITS:
                continue
            if first.isalpha() and second.isalpha() and first + second in self.vocabulary:
                add(stem(first + second), s.synonym_weight)
        return QueryPlan(query, plan_words, list(weights.items()), corrections, set(weights))

    # ------------------------------------------------------------- retrieval
    def retrieve(
        self, plan: QueryPlan, query_vector: np.ndarray | None, filters: Filters
    ) -> Candidates:
        """Lexical and semantic candidates within ``filters``, fused (no vector: lexical only)."""
        s = self.settings
        lists, list_weights = [], []
        lex_rows, lex_scores = np.empty(0, np.int64), np.empty(0, np.float32)
        if plan.terms:
            text_query = self.lexical.text_query(plan.terms, s.title_boost)
            lex_rows, lex_scores = self.lexical.search(text_query, filters, s.max_hits)
            live = ~self.catalog.deleted[lex_rows]
            lex_rows, lex_scores = lex_rows[live], lex_scores[live]
            lists.append((lex_rows, lex_scores))
            list_weights.append(1.0 - s.semantic_weight)
        sem_rows, sem_scores = np.empty(0, np.int64), np.empty(0, np.float32)
        if query_vector is not None and s.semantic_weight > 0:
            allowed = None
            if filters.active() or self.catalog.deleted.any():
                allowed = np.zeros(self.catalog.n_rows, bool)
                live = self.catalog.live_rows
                allowed[live[self.catalog.mask(live, filters)]] = True
            sem_rows, sem_scores = self.vectors.search(query_vector, s.semantic_k, allowed)
            keep = sem_scores >= s.semantic_min_score
            sem_rows, sem_scores = sem_rows[keep], sem_scores[keep]
            lists.append((sem_rows, sem_scores))
            list_weights.append(s.semantic_weight)
        rows, score = fuse(lists, list_weights, s.fusion, s.rrf_k)
        bm25 = _lookup(rows, lex_rows, lex_scores)
        cosine = _lookup(rows, sem_rows, sem_scores, missing=np.nan)
        return Candidates(rows, score, bm25, cosine, len(lex_rows))

    def encode(self, query: str) -> np.ndarray | None:
        if self.encoder is None or self.settings.semantic_weight <= 0:
            return None
        return self.encoder.encode(query)

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
    ) -> SearchResults:
        """One search: ``query`` (empty to browse), ``filters`` such as
        ``{"brand": ["Acme"], "price_max": 50}``, a sort of ``SORTS``, a page.
        With ``user_id``, results lean toward the categories and brands of the
        user's events in the index and of their live ``session`` (item_id,
        type, timestamp: what they did since), by ``personalization``
        (default: the index setting)."""
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
        query = query.strip()

        def answer(_: object = None) -> SearchResults:
            return self._answer(
                query, filters, sort, page, per_page, user_id, personalization, facets, session
            )

        with self._changes.shared():
            if user_id is None:  # anonymous: the same request, the same page
                key = (query, repr(filters), sort, page, per_page, facets)
                key += (self.ranker, repr(self.settings))  # either may be swapped in place
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
            self._log(results, user_id)
        return results

    def _answer(
        self,
        query: str,
        filters: Filters,
        sort: str,
        page: int,
        per_page: int,
        user_id: str | None,
        personalization: float | None,
        facets: bool,
        session: pd.DataFrame | None,
    ) -> SearchResults:
        plan = self.analyze(query)
        if query:
            found = self._query(plan, filters, user_id, personalization, sort, session)
            rows, score, facet_rows = found
        else:
            live = self.catalog.live_rows
            rows = live[self.catalog.mask(live, filters)]
            score = self.catalog.popularity[rows]
            rows, score = _sorted(rows, score, self._sort_key("popularity", rows))
            facet_rows = live
        if sort != "relevance":
            rows, score = _sorted(rows, score, self._sort_key(sort, rows))
        start = (page - 1) * per_page
        shown = rows[start : start + per_page]
        hits = self._hits(shown, score[start : start + per_page], plan)
        return SearchResults(
            query=query,
            hits=hits,
            total=len(rows),
            page=page,
            per_page=per_page,
            facets=self.catalog.facets(facet_rows, filters) if facets else {},
            did_you_mean=plan.did_you_mean,
            request_id="",
            took_ms=0.0,
        )

    def similar_items(self, item_id: str, k: int = 10) -> list[Hit]:
        """The ``k`` live items nearest to ``item_id`` by their text's vectors
        (cosine as the score), best first: what is like an item no model has
        seen yet (added through the API since the last training). Empty for
        an unknown item or an index without vectors."""
        with self._changes.shared():
            row = self.catalog.row_of.get(item_id)
            if row is None or self.vectors is None or row >= self.vectors.size:
                return []
            allowed = np.zeros(self.catalog.n_rows, bool)
            allowed[self.catalog.live_rows] = True
            allowed[row] = False
            rows, scores = self.vectors.search(self.vectors.vectors(np.array([row]))[0], k, allowed)
            return self._plain_hits(self.catalog.items.iloc[rows], scores)

    def nearest_to(self, item_ids: list[str], candidates: list[str], k: int) -> list[Hit]:
        """Of the live ``candidates``, the ``k`` nearest by text to the mean of
        ``item_ids``' vectors (cosine as the score), best first; empty where
        the index has no vectors or none of either is in it."""
        with self._changes.shared():
            if self.vectors is None:
                return []
            row_of, size = self.catalog.row_of, self.vectors.size
            rows = np.array([row_of[i] for i in item_ids if row_of.get(i, size) < size], np.int64)
            pool = np.array([row_of[i] for i in candidates if row_of.get(i, size) < size], np.int64)
            pool = pool[~self.catalog.deleted[pool]] if len(pool) else pool
            if not len(rows) or not len(pool):
                return []
            query = self.vectors.vectors(rows).mean(axis=0)
            query /= max(float(np.linalg.norm(query)), 1e-12)
            scores = self.vectors.vectors(pool) @ query
            best = np.argsort(-scores, kind="stable")[:k]
            found = self.catalog.items.iloc[pool[best]]
            return self._plain_hits(found, scores[best])

    def _plain_hits(self, found: pd.DataFrame, scores: np.ndarray) -> list[Hit]:
        return [
            Hit(str(i.item_id), str(i.title), str(i.brand), str(i.category),
                None if pd.isna(i.price) else float(i.price), float(score), str(i.title))
            for i, score in zip(found.itertuples(), scores, strict=True)
        ]  # fmt: skip

    def ranked_ids(self, query: str, limit: int = 100) -> list[str]:
        """Item ids of the best ``limit`` results by relevance (for evaluation)."""
        with self._changes.shared():
            plan = self.analyze(query.strip())
            rows, _, _ = self._query(plan, Filters(), None, 0.0, "relevance")
        return self.catalog.strings("item_id", rows[:limit]).tolist()

    def _query(
        self,
        plan: QueryPlan,
        filters: Filters,
        user_id: str | None,
        personalization: float | None,
        sort: str,
        session: pd.DataFrame | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # A query of no words ("*", "((") matches nothing; its vector would be noise.
        vector = self.encode(plan.semantic_text) if plan.terms else None
        found = self.retrieve(plan, vector, filters)
        facet_rows = found.rows
        if filters.active():
            # Facet counts ignore the filters (disjunctive); the lexical matches
            # suffice for them, so the unfiltered pass skips the vector search.
            everything = self.retrieve(plan, None, Filters())
            facet_rows = np.union1d(everything.rows, found.rows)
        rows, score = found.rows, found.score
        if self.ranker is not None and sort == "relevance" and len(rows):
            rows, score = self.ranker.rerank(self, plan, vector, found)
        strength = self.settings.personalization if personalization is None else personalization
        known = user_id is not None and (user_id in self.profiles or session is not None)
        if known and strength > 0 and len(rows):
            affinity = self.profiles.affinity(user_id, self.catalog, rows, session)
            span = score.max() - score.min()
            base = (score - score.min()) / span if span > 0 else np.ones(len(score))
            top = affinity.max()
            score = base + strength * (affinity / top if top > 0 else affinity)
            order = np.argsort(-score, kind="stable")
            rows, score = rows[order], score[order]
        return rows, score, facet_rows

    def _sort_key(self, sort: str, rows: np.ndarray) -> np.ndarray:
        """Ascending key for a sort; items without the value go last."""
        c = self.catalog
        if sort in ("price_asc", "price_desc"):
            price = c.price[rows]
            key = price if sort == "price_asc" else -price
            return np.where(np.isfinite(key), key, np.inf)
        if sort == "popularity":
            return -c.popularity[rows]
        return np.where(np.isfinite(c.created[rows]), -c.created[rows], np.inf)

    def _hits(self, rows: np.ndarray, scores: np.ndarray, plan: QueryPlan) -> list[Hit]:
        c = self.catalog
        columns = {n: c.strings(n, rows) for n in ("item_id", "title", "brand", "category")}
        hits = []
        for i, row in enumerate(rows.tolist()):
            price = float(c.price[row])
            title = columns["title"][i]
            hits.append(
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
        return hits

    def _log(self, results: SearchResults, user_id: str | None) -> None:
        """A ``search`` event with what was shown, so later clicks can name it."""
        event = {
            "user_id": user_id,
            "item_id": None,
            "type": "search",
            "timestamp": int(time.time()),
            "query": results.query,
            "context": json.dumps(
                {"request_id": results.request_id, "shown": [h.item_id for h in results.hits]}
            ),
        }
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event, ensure_ascii=False) + "\n")

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
        frame, _ = _indexable(items)
        vectors = _embed(frame, self.folder, self.settings, progress=False)
        return dict(zip(frame["item_id"], vectors, strict=True))

    @property
    def encoder_tag(self) -> str:
        """Which encoder made the item vectors (a fine-tune by its weights' hash)."""
        return _encoder_tag(self.settings.model_path)

    def upsert(
        self,
        items: pd.DataFrame,
        progress: bool = False,
        vectors: dict[str, np.ndarray] | None = None,
    ) -> int:
        """Add or replace items without rebuilding the index; returns how many.
        ``vectors`` (from ``embed``, by item id) saves embedding them here."""
        items, texts = _indexable(items)
        known = vectors or {}
        embedded = None
        if self.vectors is not None:  # before the lock: searches go on meanwhile
            if all(i in known for i in items["item_id"]):
                embedded = np.stack([known[i] for i in items["item_id"]]) if len(items) else None
            else:
                embedded = _embed(items, self.folder, self.settings, progress)
        with self._changes.exclusive():
            new_rows, old_rows = self.catalog.append(items)
            if len(old_rows):
                self.lexical.delete(old_rows)
            self.lexical.add(self.catalog, new_rows, texts)
            if embedded is not None:
                self.vectors.add(embedded)
            self.vocabulary.update(_vocabulary_documents(texts))
            self._refresh_suggestions()
            self._save()
        return len(new_rows)

    def use_encoder(self, model_path: str | None, progress: bool = False) -> None:
        """Switch to another sentence encoder (e.g. one fine-tuned on this
        store's queries): every item is embedded again with it."""
        with self._changes.exclusive():
            self.settings.model_path = model_path
            self.vectors, self.encoder = self._encoded_with(self.settings, progress)
            self._save()
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
        view.vectors, view.encoder = view._encoded_with(view.settings, progress)
        view._results = LRUCache(RESULT_CACHE)
        return view

    def _encoded_with(
        self, settings: SearchSettings, progress: bool
    ) -> tuple[VectorIndex, QueryEncoder]:
        """Every item embedded by ``settings``' model, and that model's query encoder."""
        vectors = VectorIndex.create(self.catalog.n_rows, settings.hnsw_above)
        vectors.add(_embed(self.catalog.items, self.folder, settings, progress))
        return vectors, QueryEncoder(settings.model_path, settings.int8_queries)

    def delete(self, item_ids: list[str]) -> int:
        with self._changes.exclusive():
            rows = self.catalog.delete([str(i) for i in item_ids])
            if len(rows):
                self.lexical.delete(rows)
                self._refresh_suggestions()
                self._save()
        return len(rows)

    def erase_user(self, user_id: str) -> int:
        """Forget the user's profile, in memory and in the index folder; returns
        how many of their events the folder's profiles held."""
        with self._changes.exclusive():
            return self.profiles.erase(user_id, self.folder / PROFILES_FILE)

    def _refresh_suggestions(self) -> None:
        queries = json.loads((self.folder / "queries.json").read_text(encoding="utf-8"))
        self.suggester = _suggester(self.catalog, queries)

    def clear_caches(self) -> None:
        """Forget query plans, result pages and query encodings (after a change
        to the index, or to time queries cold)."""
        self._plans.clear()
        self._results.clear()
        if self.encoder is not None:
            self.encoder.clear_cache()

    def _save(self) -> None:
        """Every change to the index ends here: write it, and forget the query
        plans made against the old vocabulary and the results of the old catalogue."""
        self.clear_caches()
        self.catalog.save(self.folder)
        self.vocabulary.save(self.folder / "vocabulary.json")
        self.suggester.save(self.folder / "suggest.json")
        if self.vectors is not None:
            self.vectors.save(self.folder / "vectors.faiss")


@lru_cache(maxsize=8)
def _encoder_tag(model_path: str | None) -> str:
    """``model_tag``, which hashes a fine-tune's weights, once per model path."""
    from shopsense.search.finetune import model_tag

    return model_tag(model_path)


def _lookup(rows: np.ndarray, keys: np.ndarray, values: np.ndarray, missing: float = 0.0):
    out = np.full(len(rows), missing, np.float64)
    if len(keys):
        order = np.argsort(keys)
        pos = np.minimum(np.searchsorted(keys[order], rows), len(keys) - 1)
        found = keys[order][pos] == rows
        out[found] = values[order][pos][found]
    return out


def _sorted(rows: np.ndarray, score: np.ndarray, key: np.ndarray):
    order = np.argsort(key, kind="stable")
    return rows[order], score[order]


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


# ----------------------------------------------------------------- building
def _indexable(items: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """``items`` in the catalogue's columns, one version per id, with their
    title terms; and their titles and texts as segmented for the index. Each
    text is segmented once, for the lexical index, the title terms and the
    typo vocabulary alike."""
    frame = canonical_catalog(items).drop_duplicates("item_id", keep="last")
    texts = indexed_texts(frame)
    frame["title_terms"] = title_terms(title for title, _ in texts)
    return frame, texts


def _vocabulary_documents(texts: list[tuple[str, str]]) -> list[list[str]]:
    """The words (unstemmed) of each item's segmented title and text."""
    return [tokens(f"{title} {text}", stemmed=False) for title, text in texts]


def _embed(
    items: pd.DataFrame, folder: Path, settings: SearchSettings, progress: bool
) -> np.ndarray:
    """One vector per row of ``items`` (catalogue columns)."""
    from shopsense.features.sentence import SentenceEmbedder

    texts = [
        item_embedding_text(title, brand, category)
        for title, brand, category in zip(
            items["title"], items["brand"], items["category"], strict=True
        )
    ]
    cache = settings_cache_dir(folder, settings)
    return SentenceEmbedder(cache_dir=cache, model_path=settings.model_path).encode(texts, progress)


def settings_cache_dir(folder: Path, settings: SearchSettings) -> Path:
    """Where embeddings are cached: per model, so a fine-tuned model never reads base vectors."""
    base = Path(settings.embedding_cache) if settings.embedding_cache else folder / "embeddings"
    from shopsense.search.finetune import model_tag

    return base / model_tag(settings.model_path)


def _suggester(catalog: Catalog, queries: dict[str, int]) -> Suggester:
    live = catalog.live_rows
    items = catalog.items
    return Suggester.build(
        items["title"].to_numpy()[live].tolist(),
        items["item_id"].to_numpy()[live].tolist(),
        catalog.popularity[live],
        queries,
    )


def build_index(
    items: pd.DataFrame,
    out: Path,
    events: pd.DataFrame | None = None,
    settings: SearchSettings | None = None,
    semantic: bool = True,
    progress: bool = False,
) -> SearchEngine:
    """Index a catalog into the new folder ``out``. ``events`` (source ids:
    user_id, item_id, type, timestamp, query) give popularity, the query log
    for autocomplete and the profiles that personalize."""
    out = Path(out)
    if (out / "settings.json").exists():
        raise ShopsenseError(f"{out} already holds an index; choose a new folder")
    settings = settings or SearchSettings()
    settings.check()
    out.mkdir(parents=True, exist_ok=True)
    catalog_items, texts = _indexable(items)
    queries: dict[str, int] = {}
    profiles = UserProfiles(pd.DataFrame())
    if events is not None and len(events):
        weights = events["type"].map(DEFAULT_EVENT_WEIGHTS).fillna(0.0)
        popularity = weights.groupby(events["item_id"].astype(str)).sum()
        catalog_items["popularity"] = (
            catalog_items["item_id"].map(popularity).fillna(0.0).to_numpy(np.float64)
        )
        catalog_items["search_clicks"] = (
            catalog_items["item_id"].map(_search_clicks(events)).fillna(0.0).to_numpy(np.float64)
        )
        asked = events["query"][(events["type"] == "search") & events["query"].notna()]
        queries = {
            str(q): int(n) for q, n in asked.astype(str).str.strip().value_counts().items() if q
        }
        profiles = UserProfiles.from_events(events)
    catalog = Catalog(catalog_items)
    rows = np.arange(catalog.n_rows)
    LexicalIndex(out / "tantivy").add(catalog, rows, texts)
    Vocabulary.build(
        _vocabulary_documents(texts), one_typo=settings.one_typo, two_typos=settings.two_typos
    ).save(out / "vocabulary.json")
    (out / "queries.json").write_text(json.dumps(queries, ensure_ascii=False), encoding="utf-8")
    _suggester(catalog, queries).save(out / "suggest.json")
    profiles.save(out / PROFILES_FILE)
    catalog.save(out)
    if semantic:
        vectors = VectorIndex.create(catalog.n_rows, settings.hnsw_above)
        vectors.add(_embed(catalog.items, out, settings, progress))
        vectors.save(out / "vectors.faiss")
    settings.save(out)
    return SearchEngine(out, semantic=semantic)


def _search_clicks(events: pd.DataFrame) -> pd.Series:
    """Per item, its clicks, carts and purchases in sessions that searched."""
    if "session_id" not in events:
        return pd.Series(dtype=np.float64)
    searched = events["session_id"][events["type"] == "search"].dropna().unique()
    acted = events[events["type"].isin(SEARCH_ACTIONS) & events["session_id"].isin(searched)]
    return acted.groupby(acted["item_id"].astype(str)).size().astype(np.float64)
