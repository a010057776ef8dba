"""How the search box behaves for a shopper, in the spirit of Meilisearch's
and Typesense's own behaviour suites: what a query's result set holds (its
``total``, facets and pages), a query that matches nothing, search as you
type with typos, Chinese and mixed queries, and the HTTP answer."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from shopsense.data.schema import category_prefixes
from shopsense.data.synthetic_vocab import TOPS, Leaf
from shopsense.models.registry import create_model
from shopsense.search.engine import SearchEngine, build_index
from shopsense.search.index.settings import SearchSettings
from shopsense.search.query.matching import required_words
from shopsense.serving.app import create_app
from shopsense.serving.service import ServiceSettings

NONSENSE = ("xqzv flurb", "qwxzkvj", "zzqj vrrpt klmnq")
LEAVES = {f"{top.name} > {leaf.name}": leaf for top in TOPS for leaf in top.leaves}


@pytest.fixture(scope="module")
def index_dir(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("behaviour") / "index"
    cache = tmp_path_factory.mktemp("embeddings")
    # A leaf of this 250-item store has a handful of items: relaxing a word
    # starts below 3 matches here, not the default's 10.
    settings = SearchSettings(embedding_cache=str(cache), matching_min_hits=3)
    build_index(store.items, out, store.source_events(), settings=settings)
    return out


@pytest.fixture(scope="module")
def engine(index_dir):
    return SearchEngine(index_dir)


def leaves(store, language: str, least: int = 4) -> list[tuple[str, Leaf]]:
    """The store's leaf categories with at least ``least`` items in ``language``, largest first."""
    items = store.items[store.items["attributes"].str.contains(f'"language": "{language}"')]
    counts = items["category"].value_counts()
    return [(name, LEAVES[name]) for name, n in counts.items() if n >= least]


def every_hit(engine: SearchEngine, query: str, **kwargs) -> list:
    """All pages of a query's results."""
    out, page = [], 1
    while True:
        results = engine.search(query, per_page=100, page=page, **kwargs)
        out.extend(results.hits)
        if page * 100 >= results.total:
            return out
        page += 1


def test_the_matching_rule_needs_every_word_of_a_short_query():
    settings = SearchSettings(matching_all_up_to=3, matching_share=0.75)
    assert [required_words(n, settings) for n in range(1, 9)] == [1, 2, 3, 3, 4, 5, 6, 6]
    assert required_words(5, SearchSettings(matching_all_up_to=5)) == 5


def test_nonsense_matches_nothing_and_popular_items_come_apart(engine, store, tmp_path):
    popular = [h.item_id for h in engine.search("", per_page=10).hits]
    engine.log_path = tmp_path / "searches.jsonl"
    try:
        for query in NONSENSE:
            results = engine.search(query, per_page=10)
            assert results.hits == [] and results.total == 0
            assert not any(results.facets.values())
            assert [h.item_id for h in results.fallback] == popular
    finally:
        engine.log_path = None
    lines = (tmp_path / "searches.jsonl").read_text().splitlines()
    logged = [json.loads(json.loads(line)["context"]) for line in lines]
    assert [(c["total"], c["zero_results"], c["shown"]) for c in logged] == [(0, True, [])] * 3
    found = engine.search(leaves(store, "en")[0][1].noun)
    assert found.total > 0 and found.fallback == []


def test_the_fallback_keeps_to_the_filters(engine, store):
    name, _ = leaves(store, "en")[0]
    results = engine.search(NONSENSE[0], filters={"category": [name]}, per_page=5)
    assert results.total == 0 and results.fallback
    assert all(h.category == name for h in results.fallback)


def test_a_category_query_finds_that_category_and_counts_it_exactly(engine, store):
    for name, leaf in leaves(store, "en")[:4]:
        hits = every_hit(engine, leaf.noun)
        results = engine.search(leaf.noun, per_page=1)
        assert results.total == len(hits) > 0
        in_leaf = sum(h.category == name for h in hits)
        assert in_leaf / len(hits) >= 0.9, (leaf.noun, Counter(h.category for h in hits))
        counted = Counter(p for h in hits for p in category_prefixes(h.category))
        facets = {f["value"]: f["count"] for f in results.facets["category"]}
        assert facets == {v: n for v, n in counted.items() if v in facets}
        leaf_counts = {v: n for v, n in facets.items() if " > " in v}
        assert max(leaf_counts, key=leaf_counts.__getitem__) == name


def test_facets_of_a_filtered_query_count_the_other_choices_exactly(engine, store):
    _, leaf = leaves(store, "en")[0]
    hits = every_hit(engine, leaf.noun)
    brands = Counter(h.brand for h in hits)
    chosen = brands.most_common(1)[0][0]
    filtered = engine.search(leaf.noun, filters={"brand": [chosen]}, per_page=100)
    assert filtered.total == brands[chosen]
    assert {f["value"]: f["count"] for f in filtered.facets["brand"]} == dict(brands)


def _typo(word: str) -> str:
    """One edit: two inner letters swapped."""
    return word[0] + word[2] + word[1] + word[3:]


def test_prefix_and_typo_variants_find_what_the_clean_query_finds(engine, store):
    checked = 0
    for _, leaf in leaves(store, "en"):
        *head, last = leaf.noun.lower().split()
        if len(last) < 6 or not last.isalpha():
            continue
        clean = engine.search(leaf.noun, per_page=3).hits[0].item_id
        for variant in (last[:-2], last[:4], _typo(last), _typo(last)[:-1]):
            found = engine.search(" ".join([*head, variant]), per_page=3)
            assert clean in [h.item_id for h in found.hits], (leaf.noun, variant)
        checked += 1
    assert checked >= 3


def test_a_word_finished_with_a_space_is_not_a_prefix(engine, store):
    checked = 0
    for name, leaf in leaves(store, "en"):
        start = leaf.noun[:3].lower()
        if " " in leaf.noun or start in engine.vocabulary:
            continue
        assert any(h.category == name for h in every_hit(engine, start)), start
        finished = engine.search(start + " ", per_page=100)
        if engine.vocabulary.corrections(start):  # a typo of a word ("lap" for "lamp") finds it
            assert finished.did_you_mean and not any(h.category == name for h in finished.hits)
        else:
            assert finished.total == 0
        checked += 1
    assert checked >= 2


def test_a_word_no_title_has_is_let_go_when_the_others_match(engine, store):
    name, leaf = leaves(store, "en")[0]
    extra = f"{leaf.noun} zqxwv "  # "zqxwv" matches nothing, and is not being typed
    results = engine.search(extra, per_page=5)
    assert results.total == engine.search(leaf.noun + " ").total > 0
    assert all(h.category == name for h in results.hits)
    assert engine.search("zqxwv vxqzj ").total == 0  # no word matched: nothing is let go


def test_a_typed_prefix_with_a_typo_says_what_it_completed(engine, store):
    assert store.items["title"].str.contains("diapers").any()  # the fixture store sells them
    diapers = engine.search("diapr")  # two edits from "diapers", one from its start "diape"
    assert diapers.did_you_mean == "diapers"
    assert diapers.hits and all("diapers" in h.title for h in diapers.hits[:3])


def test_chinese_queries_and_partial_chinese_words(engine, store):
    checked = 0
    for name, leaf in leaves(store, "zh", least=2):
        clean = engine.search(leaf.noun_zh, per_page=3)
        assert clean.hits and clean.hits[0].category == name
        chinese = store.items["category"].eq(name) & store.items["title"].str.contains(leaf.noun_zh)
        found = {h.item_id for h in every_hit(engine, leaf.noun_zh)}
        assert set(store.items["item_id"][chinese]) <= found, leaf.noun_zh
        partial = every_hit(engine, leaf.noun_zh[:-1])  # its last character to come
        assert clean.hits[0].item_id in {h.item_id for h in partial}, leaf.noun_zh
        checked += 1
    assert checked >= 2


def test_a_mixed_query_of_an_english_brand_and_chinese_words(engine, store):
    name, leaf = leaves(store, "zh", least=2)[0]
    chinese = store.items[
        store.items["category"].eq(name) & store.items["attributes"].str.contains('"zh"')
    ]
    brand = chinese["brand"].iloc[0]
    results = engine.search(f"{brand.lower()} {leaf.noun_zh}", per_page=5)
    assert results.hits and results.hits[0].brand == brand and results.hits[0].category == name


def test_autocomplete_completes_typos_and_chinese_prefixes(engine, store):
    _, leaf = leaves(store, "en")[0]
    last = leaf.noun.split()[-1]
    typed = " ".join([*leaf.noun.split()[:-1], _typo(last)[: max(4, len(last) - 1)]])
    assert any(leaf.noun in s.text.lower() for s in engine.suggest(typed, 8)), typed
    _, zh = leaves(store, "zh", least=2)[0]
    assert any(zh.noun_zh in s.text for s in engine.suggest(zh.noun_zh[:-1], 8))


@pytest.fixture(scope="module")
def client(store, store_dir, index_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("behaviour-served")
    create_model("itemknn").fit(store).save(root / "models" / "v0001")
    settings = ServiceSettings(
        data=store_dir,
        models=root / "models",
        index=index_dir,
        state=str(root / "state.db"),
        watch_seconds=0,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_the_http_answer_to_a_query_that_matches_nothing(client, store):
    def zero_results() -> float:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith("shopsense_search_zero_results_total"):
                return float(line.split()[-1])
        raise AssertionError("no zero-results counter in /metrics")

    before = zero_results()
    body = client.get("/search", params={"q": NONSENSE[0]}).json()
    assert body["hits"] == [] and body["total"] == 0 and body["query"] == NONSENSE[0]
    assert len(body["fallback"]) == 10 and all(h["item_id"] for h in body["fallback"])
    assert zero_results() == before + 1
    found = client.get("/search", params={"q": leaves(store, "en")[0][1].noun}).json()
    assert found["total"] > 0 and found["hits"] and found["fallback"] == []
    client.get("/search", params={"q": ""})  # browsing is no zero-result search
    assert zero_results() == before + 1
