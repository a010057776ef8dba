"""A query read into a plan: its words, the index terms it searches with
their weights, and what was corrected.

A word's own stem weighs 1. A word the index does not know is also searched
by its typo corrections: the one it is read as (below) as the word itself
(weight 1: nothing matches the word as typed, and the encoder reads the
corrected query too), the others by ``typo_weight`` over the edits; and by
its split into known words ("deckover" -> "deck over", ``synonym_weight``);
the store's synonyms and two words the catalogue writes as one ("closet
maid" -> "closetmaid") weigh ``synonym_weight``. A term reached two ways
keeps its highest weight.

The last word of a query being typed is also a prefix: its most frequent
completions in the catalogue weigh ``prefix_weight``; a partial word that
starts no catalogue word is completed from the word starts within its
allowed edits (``diapr`` -> "diapers", ``typo_weight``), and
``did_you_mean`` says so. Chinese is completed the same way: "手" -> "手机".
jieba cuts a partly typed Chinese run unlike the whole one ("露营帐" as
"露 营帐", where "露营帐篷" is "露营 帐篷"), so a typed run's last word is
its longest end that starts a catalogue word ("露营 帐"), the rest cut by
jieba.

The plan also says how the query is read (``read_words``): each corrected
word as its correction, a partial last word as its completion. Of a word's
corrections or completions, the one read is the one that items have with the
query's other words, the most such items first, so "fast cha" reads "fast
charger" though "chayuan" is the more frequent word, and where no item has
any, none is (``_in_context``); a last word the catalogue has but not with
the others is read as a completion it has with them. The encoder and the
ranker's features read the query so, since a misspelt or partial word tells
them little of what was meant; the typed word's own term, which matches
nothing, is left out of what the ranker counts.

Each word also keeps the terms that match it (``word_terms``): the result
set counts how many of a query's words an item has (``query.matching``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from shopsense.features.text import CJK
from shopsense.search.analysis import UNITS, stem, words
from shopsense.search.index.settings import SearchSettings
from shopsense.search.typo import Vocabulary

# How a word was read as another: completed, corrected, or completed from a corrected start.
COMPLETED, CORRECTED, CORRECTED_PREFIX = "completed", "corrected", "corrected prefix"
# A word's readings weighed in its query's context, each by a count of ~0.1 ms.
CONTEXT_READINGS = 10


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
    def read_words(self) -> list[str]:
        """The words as the query is read: each correction in place of the
        word it corrects ("deck over" for "deckover"), the completion of a
        partial last word in its place."""
        read = [self.corrections.get(w, w) for w in self.words]
        if self.completion is not None:
            read[-1] = self.completion
        return read

    @property
    def read_text(self) -> str:
        """The query as read: as typed where nothing was corrected or completed,
        else its ``read_words``."""
        if not self.corrections and self.completion is None:
            return self.text
        return " ".join(self.read_words)

    @property
    def semantic_text(self) -> str:
        """What the encoder reads: ``read_text``, since a misspelt or partial
        word is split into word pieces that carry little of its meaning."""
        return self.read_text

    @property
    def read_terms(self) -> list[str]:
        """The index terms of ``read_words``, each once, in order."""
        return list(dict.fromkeys(stem(w) for read in self.read_words for w in read.split()))

    @property
    def other_terms(self) -> list[str]:
        """The plan's terms beyond ``read_terms`` (other corrections, completions,
        synonyms, compounds), less the terms of typed words read as another
        word, words the catalogue does not have."""
        read = set(self.read_terms)
        replaced = {stem(w) for w, r in zip(self.words, self.read_words, strict=True) if w != r}
        return [t for t, _ in self.terms if t not in read and t not in replaced]


def plan_query(
    query: str,
    vocabulary: Vocabulary,
    doc_freq: Callable[[str], int],
    synonyms: dict[str, list[str]],
    settings: SearchSettings,
    prefix: bool = False,
    matching: Callable[[list[list[str]], int], int] | None = None,
) -> QueryPlan:
    """``query``'s plan against the index's ``vocabulary`` and term counts
    (``doc_freq``: a word is corrected only when neither knows it), with the
    store's ``synonyms`` (word -> its group's other words); with ``prefix``,
    its last word is completed as well. With ``matching`` (how many items
    have at least so many of some words' terms), a word is read in the
    context of the others (``_in_context``)."""
    plan_words = typed_words(query, vocabulary) if prefix else words(query)
    weights: dict[str, float] = {}
    corrections: dict[str, str] = {}
    word_terms: list[dict[str, None]] = [{} for _ in plan_words]
    completion = None
    # Words read as another: (word's position, how, its readings most frequent first).
    readings: list[tuple[int, str, list[str]]] = []

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
        if completions:
            readings.append((i, COMPLETED, completions))
        if word not in vocabulary and doc_freq(term) == 0 and not completions:
            found = vocabulary.corrections(word)
            for fixed, edits in found:
                add(i, stem(fixed), settings.typo_weight / edits)
            parts = vocabulary.split(word)
            for part in parts or ():
                add(i, stem(part), settings.synonym_weight)
            if found:
                readings.append((i, CORRECTED, [fixed for fixed, _ in found]))
            elif parts:
                corrections[word] = " ".join(parts)
            elif completed:
                fixed = _corrected_completions(word, vocabulary, settings.prefix_expansions)
                for completed_word in fixed:
                    add(i, stem(completed_word), settings.typo_weight)
                if fixed:
                    readings.append((i, CORRECTED_PREFIX, fixed))
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
    terms_of = [list(t) for t in word_terms]
    live = [doc_freq(stem(w)) > 0 for w in plan_words] if readings else []
    for i, how, options in readings:
        word = plan_words[i]
        if word in vocabulary and _in_context(i, [word], terms_of, live, matching):
            continue  # a word the catalogue has, and has with the others, is read as itself
        read = _in_context(i, options, terms_of, live, matching)
        if not read or read[0] == word:
            continue
        if how == COMPLETED:
            completion = read[0]
            continue
        corrections[word] = read[0]
        if how == CORRECTED:  # nothing matches the word as typed: its reading stands for it
            add(i, stem(read[0]), 1.0)
    return QueryPlan(
        query,
        plan_words,
        list(weights.items()),
        corrections,
        set(weights),
        terms_of,
        completion=completion,
    )


def _in_context(
    i: int,
    options: list[str],
    word_terms: list[list[str]],
    live: list[bool],
    matching: Callable[[list[list[str]], int], int] | None,
) -> list[str]:
    """The readings of word ``i`` that fit the rest of the query: of the first
    ``CONTEXT_READINGS`` of ``options`` (most frequent first), those that items
    have together with every other word of the query that matches as typed
    (``live``: not another misspelt or partial word), the most such items
    first ("fast cha" reads "fast charger", not the more frequent "fast
    chayuan"; "光润面" reads "光润 面膜", the brand's face masks, not the
    noodles "面" is alone); none when no item has any (no guess at
    "spaghetti chea" is "spaghetti chef"). Where the query has no other such
    word, or without ``matching``, all of them as they are."""
    context = [terms for j, terms in enumerate(word_terms) if j != i and live[j]]
    if matching is None or not context:
        return options
    found = [
        (matching([*context, [stem(option)]], len(context) + 1), option)
        for option in options[:CONTEXT_READINGS]
    ]
    return [option for n, option in sorted(found, key=lambda f: -f[0]) if n > 0]


def typed_words(query: str, vocabulary: Vocabulary) -> list[str]:
    """The words of a query being typed: as ``words`` cuts them, but where the
    query ends in a Chinese run, the run's last word is its longest end that
    starts a catalogue word, and jieba cuts the rest (a run no end of which
    starts one is cut by jieba alone)."""
    runs = list(CJK.finditer(query))
    if not runs or runs[-1].end() != len(query):
        return words(query)
    run = runs[-1].group()
    for start in range(len(run)):
        if vocabulary.starts_a_word(run[start:]):
            return [*words(query[: runs[-1].start()] + run[:start]), run[start:]]
    return words(query)


def _corrected_completions(partial: str, vocabulary: Vocabulary, limit: int) -> list[str]:
    """Completions of the word starts near a partial word that starts no
    catalogue word, the most frequent first."""
    found: dict[str, None] = {}
    for start in vocabulary.prefix_corrections(partial):
        found.update(dict.fromkeys(vocabulary.completions(start, limit)))
    return sorted(found, key=lambda w: -vocabulary.counts[w])[:limit]
