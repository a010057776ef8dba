"""A query read into a plan: its words, the index terms it searches with
their weights, and what was corrected.

A word's own stem weighs 1. A word the index does not know is also searched
by its typo corrections (``typo_weight`` over the edits) and by its split
into known words ("deckover" -> "deck over", ``synonym_weight``); the store's
synonyms and two words the catalogue writes as one ("closet maid" ->
"closetmaid") weigh ``synonym_weight``. A term reached two ways keeps its
highest weight.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from shopsense.search.analysis import UNITS, stem, words
from shopsense.search.index.settings import SearchSettings
from shopsense.search.typo import Vocabulary


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


def plan_query(
    query: str,
    vocabulary: Vocabulary,
    doc_freq: Callable[[str], int],
    synonyms: dict[str, list[str]],
    settings: SearchSettings,
) -> QueryPlan:
    """``query``'s plan against the index's ``vocabulary`` and term counts
    (``doc_freq``: a word is corrected only when neither knows it), with the
    store's ``synonyms`` (word -> its group's other words)."""
    plan_words = words(query)
    weights: dict[str, float] = {}
    corrections: dict[str, str] = {}

    def add(term: str, weight: float) -> None:
        weights[term] = max(weights.get(term, 0.0), weight)

    for word in plan_words:
        term = stem(word)
        add(term, 1.0)
        if word not in vocabulary and doc_freq(term) == 0:
            found = vocabulary.corrections(word)
            for fixed, edits in found:
                add(stem(fixed), settings.typo_weight / edits)
            parts = vocabulary.split(word)
            for part in parts or ():
                add(stem(part), settings.synonym_weight)
            if found or parts:
                corrections[word] = found[0][0] if found else " ".join(parts)
        for synonym in synonyms.get(word, []):
            for w in words(synonym):
                add(stem(w), settings.synonym_weight)
    # Two words the catalogue writes as one: "closet maid" -> "closetmaid";
    # but not a measure's unit and the next word ("36 in door" is no "indoor").
    for i, (first, second) in enumerate(itertools.pairwise(plan_words)):
        if i and plan_words[i - 1][-1].isdigit() and first in UNITS:
            continue
        if first.isalpha() and second.isalpha() and first + second in vocabulary:
            add(stem(first + second), settings.synonym_weight)
    return QueryPlan(query, plan_words, list(weights.items()), corrections, set(weights))
