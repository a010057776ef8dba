"""The result-set rule's parts (``search.query.matching``): how far a query
is relaxed, and the cosine a semantic match needs with and without the
query's words finding something."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from shopsense.errors import ShopsenseError
from shopsense.search.engine import SearchEngine, build_index
from shopsense.search.index.settings import SearchSettings
from shopsense.search.query.fusion import fuse
from shopsense.search.query.matching import relaxed_required, semantic_floor


def counting(matches_by_required: dict[int, int]):
    """A stand-in for ``LexicalIndex.matching``: how many items have at least
    ``required`` of the words, and the requirements it was asked for."""
    asked: list[int] = []

    def matching(_: list[list[str]], required: int) -> int:
        asked.append(required)
        return matches_by_required[required]

    return matching, asked


def test_relaxing_stops_at_the_relaxed_share_of_the_words():
    words = [["a"], ["b"], ["c"], ["d"]]
    none_match = {k: 0 for k in range(1, 5)}
    matching, asked = counting(none_match)
    half = SearchSettings(matching_min_hits=10, relaxed_share=0.5)
    assert relaxed_required(words, half, matching) == 2  # 3 of 4 words (3<75%), then 2
    assert asked == [3]
    matching, asked = counting(none_match)
    one = SearchSettings(matching_min_hits=10, relaxed_share=0.25)
    assert relaxed_required(words, one, matching) == 1
    assert asked == [3, 2]


def test_relaxing_stops_once_enough_items_match():
    words = [["a"], ["b"], ["c"]]
    matching, asked = counting({3: 2, 2: 12, 1: 500})
    settings = SearchSettings(matching_min_hits=10, relaxed_share=0.3)
    assert relaxed_required(words, settings, matching) == 2
    assert asked == [3, 2]


def test_the_semantic_floor_is_lower_where_the_words_found_something():
    settings = SearchSettings(semantic_min_score=0.5, semantic_min_score_with_words=0.4)
    assert semantic_floor(True, settings) == 0.4
    assert semantic_floor(False, settings) == 0.5


def test_a_semantic_score_earns_from_its_floor_whatever_else_clears_it():
    lexical = (np.array([1, 2]), np.array([10.0, 5.0]))
    few = (np.array([2, 3]), np.array([0.8, 0.6]))
    more = (np.array([2, 3, 4]), np.array([0.8, 0.6, 0.45]))  # 4 is let in below the floor
    weights = [0.7, 0.3]
    rows, scores = fuse([lexical, few], weights, floors=[None, 0.5])
    more_rows, more_scores = fuse([lexical, more], weights, floors=[None, 0.5])
    fused = dict(zip(rows.tolist(), scores, strict=True))
    more_fused = dict(zip(more_rows.tolist(), more_scores, strict=True))
    assert more_fused[4] == 0.0  # in the list, with no credit
    assert all(more_fused[r] == pytest.approx(fused[r]) for r in fused)
    assert fused[3] == pytest.approx(0.3 * (0.6 - 0.5) / (0.8 - 0.5))
    _, own_lowest = fuse([lexical, more], weights)  # no floor: the list's lowest earns nothing
    assert own_lowest.min() == 0.0


@pytest.mark.parametrize(
    "changes",
    [
        {"semantic_min_score": 0.4, "semantic_min_score_with_words": 0.5},
        {"semantic_min_score": 1.5},
        {"relaxed_share": -0.1},
        {"relaxed_share": 1.2},
    ],
)
def test_bad_result_set_settings_are_refused(changes):
    with pytest.raises(ShopsenseError):
        replace(SearchSettings(), **changes).check()


@pytest.fixture(scope="module")
def engine(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("result-sets") / "index"
    cache = tmp_path_factory.mktemp("embeddings")
    settings = SearchSettings(embedding_cache=str(cache), matching_min_hits=3)
    return build_index(store.items, out, store.source_events(), settings=settings)


def totals(engine: SearchEngine, query: str, filters: dict | None = None, **changes: float) -> int:
    """The query's ``total`` under these settings."""
    engine.settings = replace(engine.settings, **changes)
    engine.clear_caches()
    return engine.search(query, filters=filters, per_page=1, facets=False).total


def test_vector_neighbours_widen_a_query_only_where_its_words_found_something(engine, store):
    noun = store.items["title"].iloc[0].split()[-1].lower()
    words_only = totals(engine, noun, semantic_min_score=1.0, semantic_min_score_with_words=1.0)
    assert words_only > 0
    widened = totals(engine, noun, semantic_min_score=1.0, semantic_min_score_with_words=0.0)
    assert widened > words_only  # the nearest items join, though they lack the word
    # A query whose words match nothing gets no neighbour below the lone floor.
    assert totals(engine, "zqxwv vxqzj ", semantic_min_score=1.0) == 0
    assert totals(engine, "zqxwv vxqzj ", semantic_min_score=-1.0) > 0


def test_a_filter_keeps_the_floor_of_the_whole_catalogue(engine, store):
    """A filter that leaves none of the words' matches does not raise the
    floor: the filtered set stays within the set the facets counted."""
    noun = store.items["title"].iloc[0].split()[-1].lower()
    wordless = [
        category
        for category in store.items["category"].unique()
        if not totals(engine, noun, semantic_min_score=1.0, semantic_min_score_with_words=1.0,
                      filters={"category": [category]})
    ]  # fmt: skip
    assert wordless  # categories none of whose items has the word
    for category in wordless[:3]:
        filters = {"category": [category]}
        alone = totals(engine, noun, filters=filters, semantic_min_score=1.0,
                       semantic_min_score_with_words=-1.0)  # fmt: skip
        assert alone > 0
