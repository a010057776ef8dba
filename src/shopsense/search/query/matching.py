"""The result set: which items a query matches, and so what its ``total``,
facets and pages count.

An item matches lexically when it has enough of the query's words, a word
being met by any of its terms in the title or the text (its stem, a typo
correction, a synonym, a compound join or split, and for the last word of a
query being typed, a completion): all of them up to ``matching_all_up_to``
words, then ``matching_share`` of them, rounded up, as Elasticsearch's
``minimum_should_match`` ("3<75%") reads; relaxed a word at a time while
too few items match (``relaxed_required``). A long query lets a word miss,
as shoppers add words titles do not have; a short one does not, so "yoga
mat" is not every mat and every yoga item.

Or it matches semantically, its vector's cosine to the query's being at
least a floor (``semantic_floor``): ``semantic_min_score`` for a query whose
words match no item, the cosine past which the nearest items of nonsense
stop; the lower ``semantic_min_score_with_words`` for one whose words match
some, as such a query is about something the store sells and its vector
widens it to items that word it otherwise (many a relevant item has few of a
query's words). Decided over the whole catalogue, as the relaxing, so a
filtered set stays within the set its facets count. Both are calibrated on
data: the synthetic store's nonsense and leaf-category queries (the
search-behaviour benchmark), Home Depot's dev judgments (the README's
result-set rule).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from shopsense.search.index.settings import SearchSettings


def required_words(n_words: int, settings: SearchSettings) -> int:
    """How many of a query's ``n_words`` words an item must have to match it,
    before any relaxing."""
    if n_words <= settings.matching_all_up_to:
        return n_words
    return max(settings.matching_all_up_to, math.ceil(settings.matching_share * n_words))


def relaxed_required(
    word_terms: list[list[str]],
    settings: SearchSettings,
    matching: Callable[[list[list[str]], int], int],
) -> int:
    """``required_words``, one word fewer at a time while fewer than
    ``matching_min_hits`` items of the catalogue (``matching``: how many have
    at least that many of the words) match, down to ``relaxed_share`` of the
    words, rounded up, and one word at least (the default: one word, as
    Meilisearch's ``last`` strategy drops words): a shopper's extra words
    that few titles have should not empty the page, while nonsense (no word
    matched) stays empty. Decided once per query over the whole catalogue, so
    the filters and the facets read one result set."""
    n_words = len(word_terms)
    required = required_words(n_words, settings)
    floor = max(1, math.ceil(settings.relaxed_share * n_words))
    while required > floor and matching(word_terms, required) < settings.matching_min_hits:
        required -= 1
    return required


def semantic_floor(found_by_words: bool, settings: SearchSettings) -> float:
    """The cosine a semantic match needs: ``semantic_min_score`` where the
    query's words match nothing in the catalogue, as the vector side alone
    must clear the nearest items of nonsense; the lower
    ``semantic_min_score_with_words`` where they match some, as the query is
    then about something the store has, and its vector widens it to items
    that word it otherwise."""
    return settings.semantic_min_score_with_words if found_by_words else settings.semantic_min_score
