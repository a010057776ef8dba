"""Product search: retrieval, typo tolerance, filters, disjunctive facets,
sorting, autocomplete, synonyms, personalization, incremental updates,
learning to rank and evaluation."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import lightgbm
import numpy as np
import pandas as pd
import pytest

from shopsense.data.schema import DEFAULT_EVENT_WEIGHTS
from shopsense.errors import ShopsenseError
from shopsense.features.sentence import DIM
from shopsense.search.analysis import terms
from shopsense.search.engine import SearchEngine, build_index
from shopsense.search.evaluate import (
    Judgments,
    evaluate_search,
    load_judgments,
    query_metrics,
    split_queries,
)
from shopsense.search.index.settings import SearchSettings
from shopsense.search.profiles import UserProfiles
from shopsense.search.ranking.associations import TermAssociations, TitleWords
from shopsense.search.ranking.features import FEATURES, exact_terms
from shopsense.search.ranking.model import words_path
from shopsense.search.ranking.training import (
    judgments_from_events,
    summed,
    train_ranker,
    training_data,
)
from shopsense.search.semantic import VectorIndex
from shopsense.search.titles import TitleTermIndex
from shopsense.search.typo import Vocabulary


@pytest.fixture(scope="module")
def index_dir(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "index"
    cache = tmp_path_factory.mktemp("embeddings")
    build_index(
        store.items,
        out,
        store.source_events(),
        settings=SearchSettings(embedding_cache=str(cache), synonyms=[["earbuds", "headphones"]]),
    )
    return out


@pytest.fixture(scope="module")
def engine(index_dir):
    return SearchEngine(index_dir)


@pytest.fixture(scope="module")
def lexical(index_dir):
    return SearchEngine(index_dir, semantic=False)


def _noun(store, position: int = -1) -> str:
    """A word that ends many English titles (the product noun)."""
    titles = store.items["title"][store.items["title"].str.isascii()]
    words = Counter(t.split()[-3].lower() for t in titles if len(t.split()) >= 3)
    return words.most_common(3)[position][0]


def test_lexical_search_finds_titles_and_highlights(lexical, store):
    noun = _noun(store, 0)
    results = lexical.search(noun, per_page=5)
    assert results.total > 0 and len(results.hits) == 5
    for hit in results.hits:
        assert noun in hit.title.lower()
        assert f"<em>{noun}</em>" in hit.highlight.lower()


def test_chinese_query_finds_compound_words(lexical, store):
    titles = store.items["title"]
    assert titles.str.contains("手机").any()
    results = lexical.search("手机", per_page=50)
    assert results.hits and all("手机" in h.title for h in results.hits)
    assert any(h.title.split()[1] != "手机" for h in results.hits)  # inside a compound


def test_typo_tolerance_and_did_you_mean(lexical, store):
    noun = _noun(store, 0)
    assert len(noun) >= 5
    typo = noun[0] + noun[2] + noun[1] + noun[3:]  # swap two letters: one edit
    clean = lexical.search(noun, per_page=10)
    fuzzy = lexical.search(typo, per_page=10)
    assert fuzzy.did_you_mean == noun
    assert [h.item_id for h in fuzzy.hits] == [h.item_id for h in clean.hits]
    assert clean.did_you_mean is None


def test_measures_are_written_one_way():
    assert terms("24in vanity") == terms("24 inch vanity") == terms('24" vanity')
    assert terms("24 in. Vanity") == ["24", "in", "vaniti"]
    assert terms("4x8 plywood") == terms("4 x8 plywood") == terms("4 X 8 Plywood")
    assert terms("18V Drill") == terms("18-Volt drill") == ["18", "volt", "drill"]
    assert terms("50 foot hose") == terms("50ft hose") == ["50", "ft", "hose"]
    assert terms("3pk rollers") == terms("3 Pack Rollers")
    assert terms("foot rest") == ["foot", "rest"]  # a unit word only after a number
    assert terms("36 in. W x 24 in. D") == ["36", "in", "w", "x", "24", "in", "d"]  # W: width
    assert terms("Model EJ500C 2700K") == ["model", "ej500c", "2700k"]  # codes stay whole


def test_query_units_meet_the_titles_spelling(store, tmp_path):
    titles = ["Oak Vanity 36 in. White", "Oak Vanity 24 in. White", "Hose 50 ft. Green"]
    items = store.items.head(3).assign(title=titles)
    engine = build_index(items, tmp_path / "index", semantic=False)
    for query in ("24inch vanity", '24" vanity', "vanity 24in"):
        assert engine.search(query).hits[0].title == titles[1]
    assert engine.search("50 foot hose").hits[0].title == titles[2]
    settings = tmp_path / "index" / "settings.json"
    data = json.loads(settings.read_text())
    assert data.pop("analysis")
    settings.write_text(json.dumps(data))  # as an index built before the analysis changed
    with pytest.raises(ShopsenseError, match="build it again"):
        SearchEngine(tmp_path / "index")


def test_words_written_apart_meet_words_written_as_one(store, tmp_path):
    titles = ["ClosetMaid Wire Shelf", "Rust-Oleum Spray Paint", "Closet Rod", "Indoor Mat"]
    items = store.items.head(4).assign(title=titles)
    engine = build_index(items, tmp_path / "index", semantic=False)
    assert engine.search("closet maid shelf").hits[0].title == titles[0]
    assert "indoor" in dict(engine.analyze("in door mat").terms)
    assert "indoor" not in dict(engine.analyze("36 in door").terms)  # a measure, then a word
    assert [h.title for h in engine.search("rustoleum").hits] == [titles[1]]
    assert engine.search("rust oleum").hits[0].title == titles[1]
    run_together = engine.search("closetrod")  # neither a word of the catalogue nor a typo of one
    assert run_together.hits[0].title == titles[2] and run_together.did_you_mean == "closet rod"


def test_typo_budget_follows_word_length():
    vocab = Vocabulary({"lamp": 5, "lamps": 2, "cat": 9, "headphones": 4, "box": 1})
    assert vocab.corrections("lanp") == [("lamp", 1)]  # 4 letters: one edit
    assert vocab.corrections("lmap") == [("lamp", 1)]  # a swap is one edit
    assert vocab.corrections("lanps") == [("lamps", 1)]
    assert vocab.corrections("cot") == []  # 3 letters: no typo allowed
    assert vocab.corrections("haedphnes") == [("headphones", 2)]  # 9 letters: two edits
    assert vocab.split("lampbox") == ("lamp", "box") and vocab.split("lampcat") == ("lamp", "cat")
    assert vocab.split("lampxx") is None and vocab.split("lamp2box") is None
    assert vocab.corrections("hdphnes") == []  # 7 letters: one edit only, and it is three
    assert vocab.corrections("1234") == []  # numbers match exactly


def test_filters_combine_with_and_across_fields_or_within(lexical, store):
    items = store.items
    brands = items["brand"].value_counts().index[:2].tolist()
    results = lexical.search("", filters={"brand": brands}, per_page=100)
    assert {h.brand for h in results.hits} <= set(brands)
    assert results.total == int(items["brand"].isin(brands).sum())
    top = items["category"].str.split(" > ").str[0].iloc[0]
    both = lexical.search(
        "", filters={"brand": brands, "category": [top], "price_max": 100}, per_page=100
    )
    expected = (
        items["brand"].isin(brands)
        & items["category"].str.startswith(top)
        & (items["price"] <= 100)
    )
    assert both.total == int(expected.sum())
    for hit in both.hits:
        assert hit.brand in brands and hit.category.startswith(top) and hit.price <= 100


def test_attribute_filter(lexical, store):
    attrs = store.items["attributes"].map(json.loads)
    colors = attrs.map(lambda a: a.get("color"))
    color = colors.value_counts().index[0]
    results = lexical.search("", filters={"attributes": {"color": [color]}}, per_page=100)
    assert results.total == int((colors == color).sum())


def test_facets_are_disjunctive(lexical, store):
    noun = _noun(store, 0)
    plain = lexical.search(noun)
    brand_counts = {f["value"]: f["count"] for f in plain.facets["brand"]}
    assert len(brand_counts) >= 2
    chosen = next(iter(brand_counts))
    filtered = lexical.search(noun, filters={"brand": [chosen]})
    assert filtered.total == brand_counts[chosen]
    # The other brands keep their counts although the filter excludes them.
    assert {f["value"]: f["count"] for f in filtered.facets["brand"]} == brand_counts
    assert sum(f["count"] for f in filtered.facets["price"]) == filtered.total
    assert "category" in filtered.facets
    # Without facets the filtered query skips the unfiltered retrieval they
    # count over, and finds the same page.
    retrievals = []
    unwrapped = lexical.retrieve
    lexical.retrieve = lambda *a: retrievals.append(a) or unwrapped(*a)
    try:
        lexical.clear_caches()
        bare = lexical.search(noun, filters={"brand": [chosen]}, facets=False)
    finally:
        del lexical.retrieve
    assert len(retrievals) == 1 and bare.facets == {}
    assert bare.total == filtered.total and bare.hits == filtered.hits
    # With facets, the unfiltered matches being complete, the filtered ones
    # are read from them: one search of the text index, the same page.
    searches = []
    index_search = lexical.lexical.search
    lexical.lexical.search = lambda *a: searches.append(a) or index_search(*a)
    try:
        lexical.clear_caches()
        again = lexical.search(noun, filters={"brand": [chosen]})
    finally:
        del lexical.lexical.search
    assert len(searches) == 1 and again.hits == filtered.hits and again.total == filtered.total


def test_selective_filter_searches_within_the_filter(lexical, store):
    noun = _noun(store, 0)
    lexical.settings.max_hits, saved = 3, lexical.settings.max_hits
    try:
        cheapest = store.items[store.items["title"].str.lower().str.contains(noun)]["price"].min()
        results = lexical.search(noun, filters={"price_max": float(cheapest)})
        assert results.total >= 1 and results.hits[0].price == cheapest
    finally:
        lexical.settings.max_hits = saved


@pytest.mark.parametrize("sort", ["price_asc", "price_desc", "popularity", "newest"])
def test_sorting_and_pages(lexical, sort):
    first = lexical.search("", sort=sort, per_page=20)
    second = lexical.search("", sort=sort, page=2, per_page=20)
    rows = [lexical.catalog.row_of[h.item_id] for h in first.hits + second.hits]
    assert len(set(rows)) == 40
    key = {
        "price_asc": lexical.catalog.price[rows],
        "price_desc": -lexical.catalog.price[rows],
        "popularity": -lexical.catalog.popularity[rows],
        "newest": -lexical.catalog.created[rows],
    }[sort]
    assert np.all(np.diff(key) >= 0)


def test_semantic_and_hybrid_retrieval(engine, lexical, store):
    noun = _noun(store, 0)
    hybrid = engine.search(noun, per_page=10)
    assert noun in hybrid.hits[0].title.lower()
    # A query no title contains still finds related items by meaning.
    assert lexical.search("zzqx").total == 0
    meaning = engine.search(f"a {noun} for me")
    assert meaning.total > 0
    # The encoder reads a misspelt query as corrected, so both halves of the
    # hybrid find what the word spelt right finds.
    typo = noun[0] + noun[2] + noun[1] + noun[3:]
    assert engine.analyze(typo).semantic_text == noun
    assert [h.item_id for h in engine.search(typo).hits] == [h.item_id for h in hybrid.hits]


@pytest.mark.parametrize("hnsw_above", [10**6, 0])
def test_vector_index_filtered_search_is_exact_within_the_filter(hnsw_above):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex.create(len(vectors), hnsw_above)
    index.add(vectors)
    assert type(index.index).__name__ == ("IndexHNSWFlat" if hnsw_above == 0 else "IndexFlatIP")
    np.testing.assert_array_equal(index.vectors(np.array([7, 3])), vectors[[7, 3]])
    query = vectors[11] + 0.1 * vectors[12]
    query /= np.linalg.norm(query)
    allowed = np.zeros(len(vectors), bool)
    allowed[rng.choice(len(vectors), 200, replace=False)] = True
    rows, scores = index.search(query, 10, allowed)
    candidates = np.flatnonzero(allowed)
    expected = candidates[np.argsort(-(vectors[candidates] @ query))[:10]]
    np.testing.assert_array_equal(rows, expected)
    assert np.all(np.diff(scores) <= 0)
    # Unfiltered, the nearest is found (by graph search above hnsw_above).
    assert index.search(query, 5)[0][0] == 11


def test_synonyms(lexical):
    results = lexical.search("earbuds", per_page=5)
    assert results.hits
    assert all("headphones" in f"{h.title} {h.category}".lower() for h in results.hits)


def test_autocomplete_from_titles_and_queries(lexical, store):
    noun = _noun(store, 0)
    suggestions = lexical.suggest(noun[:3], k=5)
    assert suggestions and all(noun[:3] in s.text.lower() for s in suggestions)
    assert {s.kind for s in lexical.suggest(noun[:3], k=30)} == {"query", "item"}
    scores = [s.score for s in suggestions]
    assert scores == sorted(scores, reverse=True)
    typo = lexical.suggest(noun[0] + noun[2] + noun[1] + noun[3:5], k=5)
    assert typo and noun[:5] in typo[0].text.lower()
    assert lexical.suggest("", k=5) == []


def test_personalization_reorders_for_different_users(lexical, store):
    events = store.source_events()
    items = store.items.set_index("item_id")
    leaf = events.dropna(subset=["item_id"]).assign(
        top=lambda e: items["category"].reindex(e["item_id"]).str.split(" > ").str[0].to_numpy()
    )
    favourite = leaf.groupby("user_id")["top"].agg(lambda s: s.value_counts().index[0])
    tops = favourite.value_counts().index[:2]
    user_a = favourite[favourite == tops[0]].index[0]
    user_b = favourite[favourite == tops[1]].index[0]
    query = "made"  # every English description's ("… is made for …")
    both = {"category": list(tops)}
    a = lexical.search(query, both, user_id=user_a, personalization=2.0, per_page=10)
    b = lexical.search(query, both, user_id=user_b, personalization=2.0, per_page=10)
    assert [h.item_id for h in a.hits] != [h.item_id for h in b.hits]
    assert a.hits[0].category.startswith(tops[0])
    assert b.hits[0].category.startswith(tops[1])
    anonymous = lexical.search(query, both, per_page=10)
    assert lexical.search(query, both, user_id="nobody", per_page=10).hits == anonymous.hits


def _profile_events(users: list[str]) -> pd.DataFrame:
    """Four events, of ``users`` in turn."""
    return pd.DataFrame(
        {
            "user_id": users,
            "item_id": ["i1", "i2", "i3", "i4"],
            "type": ["view", "purchase", "cart", "view"],
            "timestamp": [3, 1, 2, 5],
        }
    )


def test_user_profiles_keep_each_users_recent_events():
    profiles = UserProfiles.from_events(_profile_events(["b", "a", "b", "a"]))
    assert profiles.recent("a")["item_id"].tolist() == ["i2", "i4"]
    assert profiles.recent("a")["weight"].tolist() == [
        DEFAULT_EVENT_WEIGHTS["purchase"],
        DEFAULT_EVENT_WEIGHTS["view"],
    ]
    assert profiles.recent("b")["item_id"].tolist() == ["i3", "i1"]  # oldest first
    assert "a" in profiles and "c" not in profiles and profiles.recent("c") is None
    live = pd.DataFrame({"item_id": ["i5"], "type": ["cart"], "timestamp": [9]})
    assert profiles.recent("a", live)["item_id"].tolist() == ["i2", "i4", "i5"]
    assert profiles.recent("a")["item_id"].tolist() == ["i2", "i4"]  # a session is not kept
    profiles.forget("a")
    assert "a" not in profiles and profiles.recent("a") is None and "b" in profiles
    assert profiles.recent("a", live)["item_id"].tolist() == ["i5"]
    profiles.forget("b")
    assert "b" not in profiles
    nobody = UserProfiles(pd.DataFrame())  # an index built without events
    assert "a" not in nobody and nobody.recent("a") is None


def test_user_profiles_save_the_index_events_of_users_not_forgotten(tmp_path):
    events = _profile_events(["b", "a", "b", "c"])
    profiles = UserProfiles.from_events(events)
    profiles.forget("c")
    profiles.save(tmp_path / "profiles.parquet")
    again = UserProfiles.load(tmp_path / "profiles.parquet")
    assert "c" not in again
    assert again.recent("a")["item_id"].tolist() == ["i2"]
    assert again.recent("b").equals(UserProfiles.from_events(events).recent("b"))
    UserProfiles(pd.DataFrame()).save(tmp_path / "none.parquet")
    assert "a" not in UserProfiles.load(tmp_path / "none.parquet")


def test_bad_input_is_a_clear_error_or_empty(lexical):
    with pytest.raises(ShopsenseError, match="longer than"):
        lexical.search("x" * 600)
    with pytest.raises(ShopsenseError, match="sort"):
        lexical.search("lamp", sort="cheapest")
    with pytest.raises(ShopsenseError, match="unknown filter"):
        lexical.search("lamp", filters={"colour": "red"})
    with pytest.raises(ShopsenseError, match="price_min is above"):
        lexical.search("lamp", filters={"price_min": 10, "price_max": 1})
    with pytest.raises(ShopsenseError, match="number"):
        lexical.search("lamp", filters={"price_max": "cheap"})
    with pytest.raises(ShopsenseError, match="page"):
        lexical.search("lamp", page=0)
    for text in ("!!!", "   ", "\x00", "(((", "AND OR NOT", '"unterminated'):
        lexical.search(text)  # no crash, maybe no results


def test_a_query_of_no_words_finds_nothing(engine):
    """Punctuation alone has no terms to match, and its vector is noise."""
    for text in ("*", "(((", "!?"):
        assert engine.search(text).total == 0
    assert engine.search("").total == engine.catalog.live_rows.size  # empty: browse


def test_incremental_updates(store, tmp_path):
    out = tmp_path / "index"
    engine = build_index(store.items.head(50), out, semantic=True)
    assert engine.vectors.size == 50
    new = pd.DataFrame(
        {"item_id": ["n1"], "title": ["Zorblax quantum kettle"], "brand": ["Zorb"], "price": [9.5]}
    )
    before = engine.analyze("zorblax")  # planned (and cached) before the word exists
    assert engine.search("zorblax").total == 0  # a result page cached before the item exists
    engine.upsert(new)
    assert engine.search("zorblax").hits[0].item_id == "n1"
    assert engine.analyze("zorblax") is not before  # the change dropped the cached plan
    assert engine.analyze("zorblax") is engine.analyze("zorblax")
    engine.upsert(new.assign(title=["Plimbo quantum kettle"]))
    assert engine.vectors.size == engine.catalog.n_rows == 52
    assert engine.search("plimbo").hits[0].item_id == "n1"
    reopened = SearchEngine(out, semantic=False)
    assert reopened.search("zorblax").total == 0
    assert [h.item_id for h in reopened.search("plimbo").hits] == ["n1"]
    assert reopened.delete(["n1"]) == 1
    assert reopened.search("plimbo").total == 0
    assert "n1" not in {h.item_id for h in reopened.search("quantum kettle", per_page=100).hits}
    assert SearchEngine(out, semantic=False).search("plimbo").total == 0
    assert "n1" not in {h.item_id for h in SearchEngine(out).search("plimbo kettle").hits}


def test_items_with_any_row_labels_are_indexed(store, tmp_path):
    """A filtered frame skips row labels and one glued by ``pd.concat`` repeats
    them; neither may cost an item its price."""
    items = store.items[store.items["price"].notna()]
    items = pd.concat([items.head(3), items.tail(3)])
    engine = build_index(items, tmp_path / "i", semantic=False)
    np.testing.assert_array_equal(engine.catalog.price, items["price"].to_numpy())
    new = pd.DataFrame({"item_id": ["n1"], "title": ["Zorblax kettle"], "price": [9.5]})
    engine.upsert(pd.concat([new, new.assign(item_id="n2", price=3.0)]))
    assert engine.catalog.price[engine.catalog.row_of["n2"]] == 3.0
    assert engine.search("zorblax").total == 2


def test_title_terms_are_analysed_when_indexed_and_follow_upserts(store, tmp_path):
    out = tmp_path / "index"
    engine = build_index(store.items.head(50), out, semantic=False)
    catalog = engine.catalog
    built = catalog.title_index
    replaced = str(catalog.items["item_id"].iloc[0])
    titles = ["华为手机 Zorblax kettles", "2x4 Boards"]
    new = pd.DataFrame({"item_id": ["n1", replaced], "title": titles})
    engine.upsert(new)
    assert catalog.title_index is built  # extended, not built again
    names = np.array(list(built.vocabulary))  # ids number the terms in the order first seen
    rows = np.random.default_rng(0).permutation(catalog.n_rows)
    ids, lengths = built.gather(rows)
    found = np.split(names[ids], np.cumsum(lengths)[:-1])
    expected = [terms(t, for_index=True) for t in catalog.items["title"].to_numpy()[rows]]
    assert [list(f) for f in found] == expected
    assert built.distinct[rows].tolist() == [len(set(e)) for e in expected]
    assert "华为" in found[list(rows).index(catalog.n_rows - 2)]
    assert built.ids_of(["kettl", "no-such-term"]).tolist() == [built.vocabulary["kettl"], -1]
    reopened = SearchEngine(out, semantic=False).catalog
    assert reopened.items["title_terms"].tolist() == catalog.items["title_terms"].tolist()
    fresh = TitleTermIndex(reopened.items["title_terms"])
    assert np.array_equal(names[fresh.gather(rows)[0]], names[ids])


def test_anonymous_result_pages_are_cached_until_anything_changes(lexical, store):
    query = _noun(store, 0)
    first, again = lexical.search(query), lexical.search(query)
    assert again.from_cache and [h.item_id for h in again.hits] == [h.item_id for h in first.hits]
    assert again.request_id != first.request_id  # each answer is still its own request
    assert not lexical.search(query, page=2).from_cache
    assert not lexical.search(query, user_id="u1").from_cache  # personal pages are not shared
    assert not lexical.search(query, user_id="u1").from_cache
    lexical.settings.title_boost += 1.0
    try:
        assert not lexical.search(query).from_cache  # a changed setting is a new page
    finally:
        lexical.settings.title_boost -= 1.0
    lexical.clear_caches()
    assert not lexical.search(query).from_cache


def test_index_folder_is_never_overwritten(store, index_dir):
    with pytest.raises(ShopsenseError, match="already holds"):
        build_index(store.items, index_dir)


def test_searches_are_logged_with_what_was_shown(store, index_dir, tmp_path):
    engine = SearchEngine(index_dir, semantic=False)
    engine.log_path = tmp_path / "searches.jsonl"
    results = engine.search(_noun(store, 0), user_id="u1", per_page=3)
    event = json.loads(engine.log_path.read_text().splitlines()[0])
    assert event["type"] == "search" and event["user_id"] == "u1"
    context = json.loads(event["context"])
    assert context["request_id"] == results.request_id
    assert context["shown"] == [h.item_id for h in results.hits]


def test_metrics_by_hand():
    grades = {"a": 3.0, "b": 2.0, "c": 1.0, "d": 2.5}
    m = query_metrics(["x", "a", "c", "b"], grades, k=10, depth=2)
    dcg = 2.0 / np.log2(3) + 1.0 / np.log2(5)
    ideal = 2.0 + 1.5 / np.log2(3) + 1.0 / np.log2(4)
    assert m["NDCG@10"] == pytest.approx(dcg / ideal)
    assert m["Recall@2"] == pytest.approx(1 / 2)  # relevant: a and d (grade ≥ 2.33)
    assert m["MRR@10"] == pytest.approx(1 / 2)
    assert query_metrics(["x"], {"c": 1.0})["NDCG@10"] is None
    dev, held = split_queries([str(i) for i in range(1000)])
    assert 400 < len(held) < 600 and not set(dev) & set(held)
    one, other = split_queries(["7", "3", "11"]), split_queries(["11", "3", "7"])
    assert [set(part) for part in one] == [set(part) for part in other]


def test_ranker_learns_from_click_logs(store, index_dir, tmp_path):
    judgments = judgments_from_events(store.source_events())
    assert len(judgments.queries) > 20
    folder = tmp_path / "index"
    shutil.copytree(index_dir, folder)
    engine = SearchEngine(folder, semantic=False)
    before = evaluate_search(lambda q: engine.ranked_ids(q), judgments)
    ranker = train_ranker(engine, judgments, n_estimators=50)
    ranker.save(folder / "ranker.txt")
    engine = SearchEngine(folder, semantic=False)
    assert engine.ranker is not None
    engine.warm()  # what a server does before its first query
    assert "title_index" in vars(engine.catalog)
    after = evaluate_search(lambda q: engine.ranked_ids(q), judgments)
    assert after["NDCG@10"] > before["NDCG@10"]  # it learnt the training queries' clicks
    assert engine.search(_noun(store, 0)).hits
    words = words_path(folder / "ranker.txt")
    words.rename(folder / "elsewhere.json")
    with pytest.raises(ShopsenseError, match="no word lifts beside it: retrain it"):
        SearchEngine(folder, semantic=False)
    (folder / "elsewhere.json").rename(words)
    # A model from a version with other features is a clear error, not a wrong order.
    rng = np.random.default_rng(0)
    data = lightgbm.Dataset(rng.random((50, 3)), rng.random(50))
    lightgbm.train({"verbosity": -1}, data, 2).save_model(str(folder / "ranker.txt"))
    with pytest.raises(ShopsenseError, match="retrain it"):
        SearchEngine(folder, semantic=False)


def test_summed_model_scores_the_sum_of_its_parts(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(400, 6)), rng.integers(0, 4, 400)
    params = {"objective": "lambdarank", "feature_fraction": 0.5, "verbosity": -1}
    parts = [
        lightgbm.train({**params, "seed": k}, lightgbm.Dataset(x, y, group=[40] * 10), 5 + k)
        for k in range(3)
    ]
    whole = summed(parts)
    assert whole.num_trees() == 5 + 6 + 7
    expected = sum(part.predict(x) for part in parts)
    assert not np.allclose(parts[0].predict(x) * 3, expected)  # the seeds made different models
    np.testing.assert_allclose(whole.predict(x), expected, rtol=1e-12, atol=1e-12)
    whole.save_model(str(tmp_path / "model.txt"))  # and so does the file it is saved to
    loaded = lightgbm.Booster(model_file=str(tmp_path / "model.txt"))
    np.testing.assert_allclose(loaded.predict(x), expected, rtol=1e-12, atol=1e-12)


def test_word_lifts_learn_the_words_judged_titles_use():
    titles = {
        "a": "drywal sheet 4 ft",
        "b": "drywal panel light",
        "c": "steel hammer",
        "d": "claw hammer",
        "e": "led light bulb",
    }
    judgments = Judgments(
        {"q1": "sheetrock", "q2": "sheetrock panel", "q3": "hammer"},
        {"q1": {"a": 3.0, "c": 1.0}, "q2": {"b": 2.67}, "q3": {"c": 3.0, "d": 2.33}},
    )
    query_terms = {"q1": ["sheetrock"], "q2": ["sheetrock", "panel"], "q3": ["hammer"]}
    learnt = TermAssociations.learn(judgments, query_terms, TitleWords(titles))
    assert learnt.lift["sheetrock"]["drywal"] > 0 > learnt.unseen["sheetrock"]
    assert "steel" not in learnt.lift["sheetrock"]  # c was judged poor for q1
    index = TitleTermIndex(titles.values())
    ids, lengths = index.gather(np.arange(len(titles)))
    owner = np.repeat(np.arange(len(titles)), lengths)
    lifts = learnt.features(["sheetrock", "panel"], ids, owner, len(titles), index)
    assert lifts.shape == (5, 4)
    assert lifts[0, 0] > lifts[2, 0] and lifts[1, 0] > lifts[4, 0]  # drywall over the rest
    assert lifts[0, 3] > 0 and lifts[1, 3] > 0  # "sheetrock" said as "drywal"
    # A word never judged is no evidence either way; nothing to score is nothing.
    assert not learnt.features(["unknown"], ids, owner, len(titles), index).any()
    assert "unknown" not in learnt._arrays  # a server's cache holds only the table's words
    assert not learnt.features([], ids, owner, len(titles), index).any()


def test_word_lifts_round_trip_and_bad_file(tmp_path):
    learnt = TermAssociations({"a": {"b": 1.5}}, {"a": -0.5})
    learnt.save(tmp_path / "words.json")
    loaded = TermAssociations.load(tmp_path / "words.json")
    assert loaded.lift == learnt.lift and loaded.unseen == learnt.unseen
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ShopsenseError, match="not a term association table"):
        TermAssociations.load(tmp_path / "bad.json")


def test_ranker_training_reads_each_querys_lifts_from_other_folds(lexical, store):
    """A word that only one training query has gets no lift in that query's
    own features (learnt without it), but does in the table the ranker keeps."""
    noun = _noun(store, 0)
    others = [_noun(store, 1), _noun(store, 2)]
    ids = lexical.catalog.items["item_id"]
    titles = lexical.catalog.items["title"].str.lower()
    queries = {"only": noun} | {f"q{i}": others[i % 2] for i in range(8)}
    grades = {
        q: {i: 3.0 for i in ids[titles.str.contains(text, regex=False)][:5]}
        for q, text in queries.items()
    }
    x, _, groups, learnt = training_data(lexical, Judgments(queries, grades))
    column = FEATURES.index("word_lift_mean")
    first = x[: groups[0], column]  # the "only" query's candidates come first
    assert not first.any()
    term = exact_terms(lexical.analyze(noun))[0]
    assert max(learnt.lift[term].values()) > 0
    assert x[groups[0] :, column].any()


def test_evaluate_search_on_judgments(lexical, store):
    noun = _noun(store, 0)
    relevant = store.items[store.items["title"].str.lower().str.contains(noun)]["item_id"]
    judgments = Judgments({"q": noun}, {"q": {i: 3.0 for i in relevant[:5]}})
    result = evaluate_search(lambda q: lexical.ranked_ids(q), judgments)
    assert result["queries"] == 1 and 0 < result["NDCG@10"] <= 1 and result["Recall@100"] == 1.0


def _judgment_files(store, folder):
    """A small judgments pair of files: each query is an item's noun; its items are relevant."""
    titles = store.items[store.items["title"].str.isascii()]
    nouns = Counter(t.split()[-3].lower() for t in titles["title"] if len(t.split()) >= 3)
    queries, labels = ["query_id,query"], ["query_id,product_uid,relevance"]
    for qid, (noun, _) in enumerate(nouns.most_common(12)):
        queries.append(f"{qid},{noun}")
        has_noun = titles["title"].str.lower().str.contains(noun)
        for item in titles[has_noun]["item_id"][:6]:
            labels.append(f"{qid},{item},3")
        labels.append(f"{qid},{titles[~has_noun]['item_id'].iloc[qid]},1")  # judged poor
    (folder / "queries.csv").write_text("\n".join(queries) + "\n")
    (folder / "labels.csv").write_text("\n".join(labels) + "\n")
    return folder / "queries.csv", folder / "labels.csv"


def test_search_cli(capsys, store, store_dir, tmp_path):
    from tests.test_cli import run

    index = tmp_path / "index"
    code, out, err = run(capsys, "index", "--data", str(store_dir), "--out", str(index))
    assert code == 0, err
    assert "indexed 250 items" in out
    noun = _noun(store, 0)
    code, out, _ = run(capsys, "search", "--index", str(index), noun, "--per-page", "3")
    assert code == 0 and "results for" in out and "brand:" in out and noun in out.lower()
    code, out, _ = run(
        capsys, "search", "--index", str(index), noun, "--json", "--sort", "price_asc"
    )
    result = json.loads(out)
    prices = [h["price"] for h in result["hits"]]
    assert prices == sorted(prices) and result["facets"]["price"]
    code, out, _ = run(capsys, "suggest", "--index", str(index), noun[:3])
    assert code == 0 and noun[:3] in out.lower()
    queries, labels = _judgment_files(store, tmp_path)
    report = tmp_path / "eval.json"
    args = ["--index", str(index), "--queries", str(queries), "--labels", str(labels)]
    code, out, _ = run(capsys, "evaluate-search", *args, "--json", str(report))
    assert code == 0 and "NDCG@10" in out
    assert json.loads(report.read_text())["queries"] == 12
    code, out, err = run(
        capsys, "train-ranker", "--index", str(index), "--from-events", str(store_dir)
    )
    assert code == 0, err
    assert (index / "ranker.txt").is_file() and (index / "ranker-words.json").is_file()
    assert "word lifts for" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "--index", "/nonexistent", "lamp"], "not a search index"),
        (["index", "--data", "/nonexistent", "--out", "/tmp/x"], "not found"),
        (["train-ranker", "--index", "/nonexistent"], "--queries and --labels"),
    ],
)
def test_search_cli_errors_are_one_line(capsys, args, message):
    from tests.test_cli import run

    code, _, err = run(capsys, *args)
    assert code == 1 and message in err and "Traceback" not in err


def test_search_cli_rejects_bad_filters(capsys, index_dir):
    from tests.test_cli import run

    code, _, err = run(
        capsys, "search", "--index", str(index_dir), "lamp", "--price-min", "9", "--price-max", "1"
    )
    assert code == 1 and "price_min is above price_max" in err
    code, _, err = run(capsys, "search", "--index", str(index_dir), "x" * 600)
    assert code == 1 and "longer than" in err


def test_query_encoder_gives_the_sentence_models_own_vectors():
    """The traced transformer is only faster: any query length, the same vector."""
    from shopsense.search.semantic import QueryEncoder

    encoder = QueryEncoder()
    queries = ["lamp", "华为手机 case", "a blue cotton shirt for summer evenings", "word " * 400]
    expected = encoder.model.encode(queries, normalize_embeddings=True)
    for query, vector in zip(queries, expected, strict=True):
        assert encoder.encode(query) @ vector > 0.9999


def test_query_encoder_refuses_a_model_it_would_pool_wrongly():
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    from shopsense.features.sentence import sentence_model
    from shopsense.search.semantic import _traced_sentence_vector

    model = sentence_model()
    first_token = SentenceTransformer(modules=[model[0], Pooling(384, pooling_mode="cls")])
    with pytest.raises(ShopsenseError, match="mean pooling, not 'cls'"):
        _traced_sentence_vector(first_token, {})


def test_encoder_fine_tuning_moves_queries_toward_their_products(store, tmp_path):
    from shopsense.search.finetune import (
        finetune_encoder,
        holds_encoder,
        model_tag,
        training_pairs,
    )
    from shopsense.search.semantic import QueryEncoder

    queries, labels = _judgment_files(store, tmp_path)
    judgments = load_judgments(queries, labels)
    titles = dict(zip(store.items["item_id"], store.items["title"], strict=True))
    pairs = training_pairs(judgments, titles)
    # Every relevant product is paired with its query; the poor one is the hard negative.
    relevant = [g for grades in judgments.grades.values() for g in grades.values() if g == 3]
    assert len(pairs) == len(relevant)
    assert all(n is not None and n != t for _, t, n in pairs)
    assert all(n is None for *_, n in training_pairs(judgments, titles, negative_grade=None))
    path = finetune_encoder(pairs, tmp_path / "encoder", epochs=3, batch_size=8, learning_rate=1e-4)
    assert (path / "model.safetensors").is_file()
    assert model_tag(str(path)).startswith("finetuned-") and model_tag(None) != model_tag(str(path))

    def mean_similarity(encoder: QueryEncoder) -> float:
        return float(np.mean([encoder.encode(q) @ encoder.encode(t) for q, t, _ in pairs]))

    assert mean_similarity(QueryEncoder(str(path))) > mean_similarity(QueryEncoder())
    # An encoder is a function of its recipe: asked for again, the one saved is kept.
    settings = {"epochs": 3, "batch_size": 8, "learning_rate": 1e-4}
    assert holds_encoder(path, pairs, **settings, seed=0, base_model=None)
    assert not holds_encoder(path, pairs[1:], **settings, seed=0, base_model=None)
    assert not holds_encoder(path, pairs, **settings, seed=1, base_model=None)
    saved = (path / "model.safetensors").stat().st_mtime_ns
    assert finetune_encoder(pairs, path, **settings, reuse=True) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == saved


def test_ranker_reads_its_queries_through_encoders_that_did_not_learn_them(
    store, index_dir, tmp_path
):
    from shopsense.search.finetune import (
        CROSS_FIT,
        RECIPE,
        finetune_encoder,
        refit_without,
        trained_queries,
        training_pairs,
    )
    from shopsense.search.ranking.training import _readers

    judgments = load_judgments(*_judgment_files(store, tmp_path))
    titles = dict(zip(store.items["item_id"], store.items["title"], strict=True))
    path = finetune_encoder(
        training_pairs(judgments, titles), tmp_path / "encoder", epochs=1, batch_size=8
    )
    texts = set(judgments.queries.values())
    assert trained_queries(str(path)) == texts and trained_queries(None) == set()
    with pytest.raises(ShopsenseError, match="cannot be fine-tuned again"):
        refit_without(str(tmp_path / "nowhere"), set(), tmp_path / "x")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / RECIPE).write_text('{"pairs": [["a query", "a title", null]]}')
    with pytest.raises(ShopsenseError, match="not a fine-tuning recipe"):
        trained_queries(str(broken))  # its settings are missing
    # The packaged encoder learnt none of these queries: the index reads them all.
    packaged = SearchEngine(index_dir)
    assert set(_readers(packaged, judgments, tmp_path / "unused", False).values()) == {packaged}

    folder = tmp_path / "index"
    shutil.copytree(index_dir, folder)
    engine = SearchEngine(folder)
    engine.use_encoder(str(path))
    readers = _readers(engine, judgments, tmp_path / "folds", False)
    assert len(set(readers.values())) == 2 and engine not in readers.values()
    # The fold encoders are kept beside the encoder, and a second training reuses them.
    folds = sorted((path / CROSS_FIT).glob("encoder-*/model.safetensors"))
    assert len(folds) == 2 and not (tmp_path / "folds").exists()
    saved = [f.stat().st_mtime_ns for f in folds]
    again = _readers(engine, judgments, tmp_path / "folds", False)
    assert {r.settings.model_path for r in again.values()} == {
        r.settings.model_path for r in readers.values()
    }
    assert [f.stat().st_mtime_ns for f in folds] == saved
    first = np.arange(5)
    for reader in set(readers.values()):
        mine = {judgments.queries[q] for q, r in readers.items() if r is reader}
        learnt = trained_queries(reader.settings.model_path)
        assert learnt and not learnt & mine and learnt <= texts - mine
        assert not np.allclose(reader.vectors.vectors(first), engine.vectors.vectors(first))
    assert SearchSettings.load(folder).model_path == str(path)  # the index is untouched
    assert engine.search(_noun(store, 0)).hits
    ranker = train_ranker(engine, judgments, n_estimators=20, n_models=3)
    assert ranker.booster.num_trees() == 3 * 20  # three seeds, summed in one model


def test_real_home_depot_search(real_data, tmp_path):
    from shopsense.data.dataset import Dataset
    from shopsense.data.ingest import ingest

    path = real_data("homedepot-search")
    ingest("homedepot", [path], tmp_path / "data", progress=False)
    items = Dataset.load(tmp_path / "data").items
    engine = build_index(items, tmp_path / "index", semantic=False)
    judgments = load_judgments(path / "queries.csv", path / "labels.csv")
    sample = judgments.subset(sorted(judgments.queries)[:400])
    result = evaluate_search(lambda q: engine.ranked_ids(q), sample)
    assert result["NDCG@10"] > 0.3 and result["Recall@100"] > 0.6
    assert engine.search("drll").did_you_mean == "drill"
    nonsense = engine.search("xqzvw flurbk")  # a store's result set: nothing, not the nearest
    assert (nonsense.total, nonsense.hits) == (0, []) and nonsense.fallback
    found = engine.search("cordless drill", per_page=100)
    assert 0 < found.total < len(items) and all("drill" in h.title.lower() for h in found.hits)


def test_fusion_methods():
    from shopsense.search.query.fusion import fuse

    lexical = (np.array([1, 2, 3]), np.array([9.0, 5.0, 1.0]))
    semantic = (np.array([3, 4]), np.array([0.9, 0.5]))
    rows, scores = fuse([lexical, semantic], [0.5, 0.5], "convex")
    # min-max per list: 1 → 1.0/2, 2 → 0.5/2, 3 → 0 + 1.0/2, 4 → 0.
    assert dict(zip(rows.tolist(), scores.round(3).tolist(), strict=True)) == {
        1: 0.5,
        3: 0.5,
        2: 0.25,
        4: 0.0,
    }
    rows, scores = fuse([lexical, semantic], [1.0, 1.0], "rrf", rrf_k=60)
    assert rows[0] == 3 and scores[0] == pytest.approx(1 / 63 + 1 / 61)
    assert set(rows.tolist()) == {1, 2, 3, 4}
