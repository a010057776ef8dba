"""Query understanding through the engine: a price read into the search's
filter (its words not searched), brands boosted, each kind removable by the
caller, the response saying what was read, the vocabulary following the
catalogue's changes."""

from __future__ import annotations

import pytest

from shopsense.errors import ShopsenseError
from shopsense.search.engine import SearchEngine, build_index
from shopsense.search.index.settings import SearchSettings
from shopsense.search.query.understand import UnderstandingSettings
from tests.test_query_understanding import ITEMS


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
