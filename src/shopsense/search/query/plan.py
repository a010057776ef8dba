"""A query read into a plan: its words, the index terms it searches with
their weights, and what was corrected.

A word's own stem weighs 1. A word the index does not know is also searched
by its typo corrections: the best as the word itself (weight 1: nothing
matches the word as typed, and the encoder reads the corrected query too),
the others by ``typo_weight`` over the edits; and by its split
into known words ("deckover" -> "deck over", ``synonym_weight``); the store's
synonyms and two words the catalogue writes as one ("closet maid" ->
"closetmaid") weigh ``synonym_weight``. A term reached two ways keeps its
highest weight.

The last word of a query being typed is also a prefix: its most frequent
completions in the catalogue weigh ``prefix_weight``; a partial word that
starts no catalogue word is completed from the word starts within its
allowed edits (``diapr`` -> "diapers", ``typo_weight``), and
``did_you_mean`` says so. Chinese is completed the same way: "手" -> "手机".

Each word also keeps the terms that match it (``word_terms``): the result
set counts how many of a query's words an item has (``query.matching``).
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
    word_terms: list[list[str]]
    required: int = 0  # how many of the words an item needs (``query.matching``)
    completion: str | None = None  # a partial last word's most frequent completion

    @property
    def did_you_mean(self) -> str | None:
        if not self.corrections:
            return None
        return " ".join(self.corrections.get(w, w) for w in self.words)

    @property
    def semantic_text(self) -> str:
        """What the encoder reads: the query as corrected and its partial last
        word completed, since a misspelt or partial word is split into word
        pieces that carry little of its meaning."""
        if not self.corrections and self.completion is None:
            return self.text
        read = [self.corrections.get(w, w) for w in self.words]
        read[-1] = self.completion or read[-1]
        return " ".join(read)


def plan_query(
    query: str,
    vocabulary: Vocabulary,
    doc_freq: Callable[[str], int],
    synonyms: dict[str, list[str]],
    settings: SearchSettings,
    prefix: bool = False,
) -> QueryPlan:
    """``query``'s plan against the index's ``vocabulary`` and term counts
    (``doc_freq``: a word is corrected only when neither knows it), with the
    store's ``synonyms`` (word -> its group's other words); with ``prefix``,
    its last word is completed as well."""
    plan_words = words(query)
    weights: dict[str, float] = {}
    corrections: dict[str, str] = {}
    word_terms: list[dict[str, None]] = [{} for _ in plan_words]
    completion = None

    def add(i: int, term: str, weight: float) -> None:
        weights[term] = max(weights.get(term, 0.0), weight)
        word_terms[i][term] = None

    for i, word in enumerate(plan_words):
        term = stem(word)
        add(i, term, 1.0)
        completed = prefix and i == len(plan_words) - 1 and settings.prefix_expansions > 0
        completions = vocabulary.completions(word, settings.prefix_expansions) if completed else []
        for completed_word in completions:
            add(i, stem(completed_word), settings.prefix_weight)
        if completions and word not in vocabulary:
            completion = completions[0]
        if word not in vocabulary and doc_freq(term) == 0 and not completions:
            found = vocabulary.corrections(word)
            for rank, (fixed, edits) in enumerate(found):
                add(i, stem(fixed), 1.0 if rank == 0 else settings.typo_weight / edits)
            parts = vocabulary.split(word)
            for part in parts or ():
                add(i, stem(part), settings.synonym_weight)
            if found or parts:
                corrections[word] = found[0][0] if found else " ".join(parts)
            elif completed:
                fixed = _corrected_completions(word, vocabulary, settings.prefix_expansions)
                for completed_word in fixed:
                    add(i, stem(completed_word), settings.typo_weight)
                if fixed:
                    corrections[word] = fixed[0]
        for synonym in synonyms.get(word, []):
            for w in words(synonym):
                add(i, stem(w), settings.synonym_weight)
    # Two words the catalogue writes as one: "closet maid" -> "closetmaid";
    # but not a measure's unit and the next word ("36 in door" is no "indoor").
    for i, (first, second) in enumerate(itertools.pairwise(plan_words)):
        if i and plan_words[i - 1][-1].isdigit() and first in UNITS:
            continue
        if first.isalpha() and second.isalpha() and first + second in vocabulary:
            for at in (i, i + 1):
                add(at, stem(first + second), settings.synonym_weight)
    return QueryPlan(
        query,
        plan_words,
        list(weights.items()),
        corrections,
        set(weights),
        [list(t) for t in word_terms],
        completion=completion,
    )


def _corrected_completions(partial: str, vocabulary: Vocabulary, limit: int) -> list[str]:
    """Completions of the word starts near a partial word that starts no
    catalogue word, the most frequent first."""
    found: dict[str, None] = {}
    for start in vocabulary.prefix_corrections(partial):
        found.update(dict.fromkeys(vocabulary.completions(start, limit)))
    return sorted(found, key=lambda w: -vocabulary.counts[w])[:limit]
