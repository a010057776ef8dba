"""Query understanding through the engine: a price read into the search's
filter (its words not searched), brands boosted, each kind removable by the
caller, the response saying what was read, the vocabulary following the
catalogue's changes."""

from __future__ import annotations

import pytest

from shopsense.errors import ShopsenseError
from shopsense.search.engine import SearchEngine, build_index
from shopsense.search.index.settings import SearchSettings
from shopsense.search.query.understand import KINDS, UnderstandingSettings
from shopsense.serving.routes.search import SearchQuery
from tests.test_query_understanding import ITEMS
from tests.test_serving_replicas import served, worker

__all__ = ["served"]  # the fixture: a model registry and a lexical index of the store


@pytest.fixture
def engine(tmp_path) -> SearchEngine:
    return build_index(ITEMS, tmp_path / "index", semantic=False)


def ids(results) -> list[str]:
    return [h.item_id for h in results.hits]


def test_a_price_in_the_query_filters_the_results_and_leaves_the_text(engine):
    plain = engine.search("running shoes", understand=False)
    assert {"nike-1", "adidas-1"} <= set(ids(plain))  # 80 and 120
    under = engine.search("running shoes under 100")
    assert ids(under) and all(h.price <= 100 for h in under.hits)
    assert "adidas-1" not in ids(under) and under.query == "running shoes under 100"
    price = [r for r in under.understood.readings if r.kind == "price"]
    assert [(r.price_max, r.applied, r.words) for r in price] == [(100.0, "filter", "under 100")]
    assert under.understood.text.strip() == "running shoes"
    assert under.total == len([h for h in plain.hits if h.price <= 100])


def test_a_query_read_whole_into_a_price_browses_within_it(engine):
    results = engine.search("under 30", per_page=100)
    expected = ITEMS.loc[ITEMS["price"] <= 30, "item_id"]
    assert sorted(ids(results)) == sorted(expected) and not results.fallback


def test_each_kind_can_be_left_unread_and_understanding_turned_off(engine):
    ignored = engine.search("running shoes under 100", ignore=["price"])
    assert "adidas-1" in ids(ignored)  # "under 100" searched as words, enough of them met
    assert all(r.kind != "price" for r in ignored.understood.readings)
    off = engine.search("running shoes under 100", understand=False)
    assert off.understood.readings == [] and off.understood.text == off.understood.query
    assert engine.search("running shoes under 100").understood.readings  # not the cached page
    with pytest.raises(ShopsenseError, match="cannot ignore colour"):
        engine.search("shoes", ignore=["colour"])


def test_a_brand_named_is_boosted_and_the_caller_filter_wins(engine):
    boosted = engine.search("adidas running shoes")
    assert ids(boosted)[0] == "adidas-1"
    brand = [r for r in boosted.understood.readings if r.kind == "brand"]
    assert [(r.values, r.applied) for r in brand] == [(("Adidas",), "boost")]
    caller = engine.search("running shoes under 100", filters={"price_max": 200})
    assert "adidas-1" in ids(caller)  # the caller's price replaces the one read


def test_a_brand_read_as_a_filter_by_setting_is_saved_with_the_index(tmp_path):
    settings = SearchSettings(understanding=UnderstandingSettings(brand="filter"))
    build_index(ITEMS, tmp_path / "index", settings=settings, semantic=False)
    engine = SearchEngine(tmp_path / "index", semantic=False)
    assert engine.settings.understanding.brand == "filter"
    assert ids(engine.search("nike")) and {h.brand for h in engine.search("nike").hits} == {"Nike"}
    assert engine.ranked_ids("nike under 50") == ["nike-2"]


def test_ranked_ids_reads_the_query_as_search_does(engine):
    assert engine.ranked_ids("running shoes under 100") == ids(
        engine.search("running shoes under 100")
    )
    assert "adidas-1" in engine.ranked_ids("running shoes", understand=True)


def test_a_brand_added_to_the_catalogue_is_read_in_queries(engine):
    assert not engine.search("zorblax mat").understood.readings
    new = ITEMS.iloc[[5]].assign(item_id="mat-3", brand="Zorblax", title="Zorblax cork mat")
    engine.upsert(new)
    read = engine.search("zorblax mat").understood.readings
    assert [(r.kind, r.values) for r in read] == [("brand", ("Zorblax",))]


@pytest.fixture
def client(served, store_dir, tmp_path):
    with worker(served, store_dir, str(tmp_path / "state.db")) as c:
        yield c


def test_search_says_what_it_read_and_takes_understand_and_ignore(client, store):
    titles = store.items["title"].str.lower()
    noun = str(titles.str.split().explode().value_counts().index[0])
    limit = float(store.items.loc[titles.str.contains(noun, regex=False), "price"].median())
    query = f"{noun} under {limit:.0f}"
    body = client.get("/search", params={"q": query, "per_page": 100}).json()
    assert body["hits"] and all(h["price"] <= round(limit) for h in body["hits"])
    assert body["query"] == query
    [price] = [r for r in body["understood"]["readings"] if r["kind"] == "price"]
    assert price["price_max"] == round(limit) and price["applied"] == "filter"
    assert body["understood"]["text"].strip() == noun
    for params in ({"ignore": "price,brand"}, {"ignore": ["price", "brand"]}):
        ignored = client.get("/search", params={"q": query, **params}).json()
        kinds = {r["kind"] for r in ignored["understood"]["readings"]}
        assert not kinds & {"price", "brand"}, params
    off = client.get("/search", params={"q": query, "understand": "false"}).json()
    assert off["understood"] == {"text": query, "readings": []}
    for bad in ({"ignore": "colour"}, {"ignore": ""}, {"ignore": "price,"}):
        refused = client.get("/search", params={"q": query, **bad})
        assert refused.status_code == 422 and "ignore" in refused.text, bad
    backwards = client.get("/search", params={"q": "x", "price_min": 9, "price_max": 2})
    assert backwards.status_code == 422 and "price_min" in backwards.text


def test_the_spec_lists_every_search_and_suggest_parameter(client):
    paths = client.get("/openapi.json").json()["paths"]
    search = {p["name"] for p in paths["/search"]["get"]["parameters"]}
    assert search == set(SearchQuery.model_fields) >= {"q", "attribute", "understand", "ignore"}
    ignore = next(p for p in paths["/search"]["get"]["parameters"] if p["name"] == "ignore")
    assert ignore["schema"]["items"]["enum"] == list(KINDS)
    assert {p["name"] for p in paths["/suggest"]["get"]["parameters"]} == {"q", "k"}
