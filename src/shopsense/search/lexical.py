"""BM25 retrieval on tantivy.

Fields: ``title`` and ``text`` (brand, category words, description, attribute
values), both analysed by ``en_stem`` after jieba segmentation; ``brand``,
``category`` (every level of the path) and ``attr`` (``name=value``) as raw
terms for filters; ``price`` as a fast float; ``row`` links a document to its
catalog row. Queries are built from analysed terms, never parsed, so no user
input is a syntax error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from shopsense.data.schema import category_prefixes, category_words
from shopsense.search.analysis import INDEX_TOKENIZER, segment
from shopsense.search.catalog import Catalog, Filters

if TYPE_CHECKING:
    import pandas as pd

WRITER_HEAP = 128_000_000


def _schema():
    import tantivy

    b = tantivy.SchemaBuilder()
    b.add_integer_field("row", stored=True, indexed=True, fast=True)
    b.add_text_field("title", tokenizer_name=INDEX_TOKENIZER, index_option="freq")
    b.add_text_field("text", tokenizer_name=INDEX_TOKENIZER, index_option="freq")
    for name in ("brand", "category", "attr"):
        b.add_text_field(name, tokenizer_name="raw", index_option="basic")
    b.add_float_field("price", indexed=True, fast=True)
    return b.build()


def item_text(brand: str, category: str, description: str, attributes: str) -> str:
    """What the ``text`` field holds: brand, category words, description and
    attribute values."""
    parts = [brand, category_words(category), description]
    parts.extend(v for k, v in attribute_pairs(attributes).items() if k != "language")
    return " ".join(p for p in parts if p)


def attribute_pairs(attributes: str) -> dict[str, str]:
    """The attributes JSON object, values as strings."""
    try:
        attrs = json.loads(attributes)
    except (json.JSONDecodeError, TypeError):
        return {}
    if not isinstance(attrs, dict):
        return {}
    return {str(k): str(v) for k, v in attrs.items() if v is not None}


def indexed_texts(items: pd.DataFrame) -> list[tuple[str, str]]:
    """Each item's title and text (``item_text``) as segmented for the index:
    done once per build, as the lexical index, the title terms and the typo
    vocabulary all read them."""
    columns = [
        items[c].to_numpy() for c in ("title", "brand", "category", "description", "attributes")
    ]
    return [
        (segment(title, for_index=True), segment(item_text(*rest), for_index=True))
        for title, *rest in zip(*columns, strict=True)
    ]


class LexicalIndex:
    """A tantivy index in ``folder`` over catalog rows."""

    def __init__(self, folder: Path) -> None:
        import tantivy

        folder.mkdir(parents=True, exist_ok=True)
        self.index = tantivy.Index(_schema(), path=str(folder))
        self.schema = self.index.schema
        self.searcher = self.index.searcher()

    def add(self, catalog: Catalog, rows: np.ndarray, texts: list[tuple[str, str]]) -> None:
        """Index ``rows``, whose title and text fields hold ``texts`` (``indexed_texts``)."""
        import tantivy

        writer = self.index.writer(WRITER_HEAP, 1)
        brands = catalog.items["brand"].to_numpy()
        categories = catalog.items["category"].to_numpy()
        attributes = catalog.items["attributes"].to_numpy()
        for row, (title, text) in zip(rows.tolist(), texts, strict=True):
            brand, category = brands[row], categories[row]
            pairs = attribute_pairs(attributes[row])
            doc = tantivy.Document()
            doc.add_integer("row", row)
            doc.add_text("title", title)
            doc.add_text("text", text)
            if brand:
                doc.add_text("brand", brand)
            for prefix in category_prefixes(category):
                doc.add_text("category", prefix)
            for key, value in pairs.items():
                doc.add_text("attr", f"{key}={value}")
            if np.isfinite(catalog.price[row]):
                doc.add_float("price", float(catalog.price[row]))
            writer.add_document(doc)
        writer.commit()
        writer.wait_merging_threads()
        self._reload()

    def delete(self, rows: np.ndarray) -> None:
        writer = self.index.writer(WRITER_HEAP, 1)
        for row in rows:
            writer.delete_documents_by_term("row", int(row))
        writer.commit()
        writer.wait_merging_threads()
        self._reload()

    def _reload(self) -> None:
        self.index.reload()
        self.searcher = self.index.searcher()

    # ------------------------------------------------------------- queries
    def doc_freq(self, term: str) -> int:
        return self.searcher.doc_freq("title", term) + self.searcher.doc_freq("text", term)

    def terms(self) -> list[tuple[str, int]]:
        """Every analysed term of the title field with its document frequency."""
        return self.searcher.terms_with_prefix("title", "")

    def text_query(self, weighted_terms: list[tuple[str, float]], title_boost: float):
        """OR of the terms over title (boosted) and text, each term with its weight."""
        import tantivy

        clauses = []
        for term, weight in weighted_terms:
            for name, boost in (("title", title_boost), ("text", 1.0)):
                query = tantivy.Query.term_query(self.schema, name, term, index_option="freq")
                clauses.append(
                    (tantivy.Occur.Should, tantivy.Query.boost_query(query, weight * boost))
                )
        return tantivy.Query.boolean_query(clauses)

    def match_query(self, word_terms: list[list[str]], required: int):
        """Documents with at least ``required`` of the words, a word being any
        of its terms in the title or the text; it scores nothing (a filter).
        Term queries, not a term set: tantivy matches a set against the whole
        term dictionary (milliseconds a query on a text field)."""
        import tantivy

        words = []
        for word in word_terms:
            terms = [
                (tantivy.Occur.Should, tantivy.Query.term_query(self.schema, name, term))
                for term in word
                for name in ("title", "text")
            ]
            words.append((tantivy.Occur.Should, tantivy.Query.boolean_query(terms)))
        enough = tantivy.Query.boolean_query(words, minimum_number_should_match=required)
        return tantivy.Query.const_score_query(enough, 0.0)

    def matching(self, word_terms: list[list[str]], required: int) -> int:
        """How many documents have at least ``required`` of the words."""
        return self.searcher.search(self.match_query(word_terms, required), 1).count

    def filter_clauses(self, filters: Filters) -> list:
        import tantivy

        clauses = []
        for name, values in (("category", filters.category), ("brand", filters.brand)):
            if values:
                clauses.append(tantivy.Query.term_set_query(self.schema, name, values))
        for key, values in filters.attributes.items():
            if values:
                pairs = [f"{key}={v}" for v in values]
                clauses.append(tantivy.Query.term_set_query(self.schema, "attr", pairs))
        if filters.price_min is not None or filters.price_max is not None:
            clauses.append(
                tantivy.Query.range_query(
                    self.schema,
                    "price",
                    tantivy.FieldType.Float,
                    filters.price_min,
                    filters.price_max,
                )
            )
        return [tantivy.Query.const_score_query(c, 0.0) for c in clauses]

    def search(
        self, query, filters: Filters, limit: int, match=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows and BM25 scores of the best ``limit`` matches within ``filters``
        (and ``match``, a ``match_query``)."""
        import tantivy

        clauses = self.filter_clauses(filters) + ([match] if match is not None else [])
        if clauses:
            query = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, query)] + [(tantivy.Occur.Must, c) for c in clauses]
            )
        hits = self.searcher.search(query, limit, count=False).hits
        if not hits:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        rows = self.searcher.fast_field_values("row", [a for _, a in hits])
        return np.asarray(rows, np.int64), np.array([s for s, _ in hits], np.float32)
