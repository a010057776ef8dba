"""Query understanding: prices in English and Chinese, measures that are not
prices, brands, categories and attributes from a catalogue's own names,
filters and boosts by setting, and removing what was read."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

from shopsense.errors import ShopsenseError
from shopsense.search.catalog import Catalog, Filters, canonical_catalog
from shopsense.search.query.understand import (
    KINDS,
    QueryVocabulary,
    UnderstandingSettings,
    boosted,
    understand,
)

ITEMS = pd.DataFrame(
    {
        "item_id": ["nike-1", "nike-2", "adidas-1", "case-1", "paint-1", "mat-1", "mat-2"],
        "title": [
            "Nike Pegasus running shoes",
            "Nike Air trainers",
            "Adidas Ultraboost running shoes",
            "华为 透明手机壳",
            "Rust-Oleum primer 1 qt",
            "black yoga mat",
            "blue yoga mat",
        ],
        "category": [
            "Sports > Running Shoes",
            "Sports > Running Shoes",
            "Sports > Running Shoes",
            "数码配件 > 手机壳",
            "Home > Paint",
            "Sports > Yoga Mats",
            "Sports > Yoga Mats",
        ],
        "brand": ["Nike", "Nike", "Adidas", "华为", "Rust-Oleum", "", "Acme"],
        "price": [80.0, 45.0, 120.0, 15.0, 9.0, 30.0, 25.0],
        "attributes": [
            {"color": "black", "size": "L"},
            {"color": "white", "size": "XL"},
            {"color": "white"},
            {"color": "透明"},
            {"age": "3-6"},
            {"color": "black"},
            {"color": "blue"},
        ],
    }
)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog(canonical_catalog(ITEMS))


@pytest.fixture(scope="module")
def vocabulary(catalog) -> QueryVocabulary:
    return QueryVocabulary().fit(catalog)


def _price(understood) -> tuple[float | None, float | None] | None:
    prices = [r for r in understood.readings if r.kind == "price"]
    return (prices[0].price_min, prices[0].price_max) if prices else None


@pytest.mark.parametrize(
    ("query", "low", "high", "text"),
    [
        ("shoes under 50", None, 50, "shoes "),
        ("below $30", None, 30, ""),
        ("mat less than 20 dollars", None, 20, "mat "),
        ("shoes 50-100", 50, 100, "shoes "),
        ("$50 to $100 shoes", 50, 100, "shoes"),
        ("tent over 200", 200, None, "tent "),
        ("between 20 and 50 dollars mat", 20, 50, "mat"),
        ("shoes for under $1,000", None, 1000, "shoes "),
        ("under 9.99", None, 9.99, ""),
        ("up to $50", None, 50, ""),
        ("over 50 under 100", 50, 100, ""),
        ("spf 50 sunscreen under 20", None, 20, "spf 50 sunscreen "),
        ("手机壳100元以下", None, 100, "手机壳 "),
        ("50到100元的手机壳", 50, 100, "手机壳"),
        ("低于30元", None, 30, ""),
        ("价格低于30元的手机壳", None, 30, "手机壳"),
        ("100元以上", 100, None, ""),
        ("nike 跑鞋 200元以内", None, 200, "nike 跑鞋 "),
        ("手机壳 $20 to $40", 20, 40, "手机壳 "),
    ],
)
def test_prices_are_read_and_leave_the_text(vocabulary, query, low, high, text):
    """The text left ends with a space where the price ended the query: its
    last word is whole, not a prefix being typed."""
    understood = understand(query, vocabulary, ignore=("brand", "category", "attribute"))
    assert _price(understood) == (low, high)
    assert understood.text == text
    assert understood.filters().price_min == low and understood.filters().price_max == high


@pytest.mark.parametrize(
    "query",
    [
        "24 in vanity",
        "3/4 inch plywood",
        "2x4 stud",
        "60 watt bulb",
        "5 gal bucket",
        "under 30 inch range hood",
        "under 2 x 4",
        "under cabinet led",
        "12-14 bathroom grab bar",
        "10-2 wire",
        "14-3 50 feet",
        "8-4-2 fertilizer",
        "1/2 to 1 pvc elbow",
        "2 in to 4 in",
        "jr25-300",
        "vent cover 31",
        "toys ages 6 and up",
        "up to 50",
        "10 dollar gifts",
        "7岁以上",
        "280斤以上",
        "索尼70-200 f4",
    ],
)
def test_measures_codes_and_lone_numbers_are_not_prices(vocabulary, query):
    understood = understand(query, vocabulary)
    assert _price(understood) is None
    assert understood.filters().price_min is None and understood.filters().price_max is None


def test_no_home_depot_query_reads_a_price(vocabulary, real_data):
    """Home Depot's queries name measures ("24 in", "3/4 inch", "2x4", "60
    watt", "5 gal"), gauges ("10-2 wire") and model numbers, and no price
    intent with a bound: none is read as a price."""
    with open(real_data("homedepot-search") / "queries.csv", encoding="utf-8") as f:
        queries = [row["query"] for row in csv.DictReader(f)]
    measures = [q for q in queries if any(u in q.split() for u in ("in", "inch", "ft", "gal"))]
    assert len(measures) > 200
    assert [q for q in queries if _price(understand(q, vocabulary)) is not None] == []


def test_brands_categories_and_attributes_come_from_the_catalogue(vocabulary):
    understood = understand("nike running shoes under 50", vocabulary)
    read = {(r.kind, r.field, r.values, r.words, r.applied) for r in understood.readings}
    assert ("brand", "brand", ("Nike",), "nike", "boost") in read
    assert ("category", "category", ("Sports > Running Shoes",), "running shoes", "boost") in read
    assert understood.text == "nike running shoes "  # boosts keep their words
    phone = understand("手机壳", vocabulary).readings
    assert [(r.kind, r.values) for r in phone] == [("category", ("数码配件 > 手机壳",))]
    mixed = understand("华为手机壳 50元以下", vocabulary)
    assert {r.kind for r in mixed.readings} == {"brand", "category", "price"}
    assert mixed.text == "华为手机壳 "
    colour = understand("black yoga mats", vocabulary).readings
    assert ("attribute", "color", ("black",)) in {(r.kind, r.field, r.values) for r in colour}
    joined = understand("rustoleum primer", vocabulary).readings
    assert [(r.kind, r.values) for r in joined] == [("brand", ("Rust-Oleum",))]


def test_short_and_numeric_attribute_values_and_unknown_words_are_not_read(vocabulary):
    assert understand("l bracket", vocabulary).readings == []  # size "L"
    assert understand("toys 3-6", vocabulary).readings == []  # age "3-6"
    assert understand("xqzv flurb", vocabulary).readings == []
    assert understand("xl shirt", vocabulary).readings[0].values == ("XL",)


def test_nothing_read_leaves_the_query_as_it_is(vocabulary):
    query = "  Cordless   drill 18V "
    understood = understand(query, vocabulary)
    assert understood.readings == [] and understood.text == query


def test_filters_by_setting_consume_their_words_and_the_caller_wins(vocabulary):
    settings = UnderstandingSettings(brand="filter", category="filter")
    understood = understand("nike running shoes under 50", vocabulary, settings)
    assert understood.text == ""
    assert sorted(understood.consumed) == ["nike", "running shoes", "under 50"]
    assert understood.boosts() == []
    assert understand("trainers nike", vocabulary, settings).text == "trainers "
    assert understand("nike yoga mat", vocabulary, settings).text == ""
    assert understand("nike trainers", vocabulary, settings).text == "trainers"
    assert understand("nike trainers ", vocabulary, settings).text == "trainers "
    filters = understood.filters()
    assert filters.brand == ["Nike"] and filters.category == ["Sports > Running Shoes"]
    assert filters.price_max == 50
    caller = Filters(brand=["Adidas"], price_min=10.0)
    merged = understood.filters(caller)
    assert merged.brand == ["Adidas"] and merged.category == ["Sports > Running Shoes"]
    assert (merged.price_min, merged.price_max) == (10.0, None)
    boosting = understand("shoes under 50", vocabulary, UnderstandingSettings(price="boost"))
    assert boosting.text == "shoes under 50" and boosting.filters().price_max is None
    assert boosting.boosts() == [Filters(price_max=50.0)]


def test_each_kind_can_be_ignored_or_turned_off(vocabulary):
    query = "nike running shoes under 50"
    kept = understand(query, vocabulary, ignore=("price", "brand"))
    assert kept.text == query
    assert {r.kind for r in kept.readings} == {"category"}
    assert understand(query, vocabulary, ignore=KINDS).readings == []
    off = understand(query, vocabulary, UnderstandingSettings(price="off", category="off"))
    assert [r.kind for r in off.readings] == ["brand"] and off.text == query
    with pytest.raises(ShopsenseError, match="cannot ignore colour"):
        understand(query, vocabulary, ignore=("colour",))
    with pytest.raises(ShopsenseError, match="brand must be one of"):
        UnderstandingSettings(brand="maybe").check()


def test_the_vocabulary_follows_the_catalogue(catalog):
    priceless = Catalog(canonical_catalog(ITEMS.assign(price=np.nan)))
    assert understand("shoes under 50", QueryVocabulary().fit(priceless)).readings == []
    changed = Catalog(canonical_catalog(ITEMS))
    changed.delete(["adidas-1"])
    assert understand("adidas", QueryVocabulary().fit(changed)).readings == []
    assert understand("adidas", QueryVocabulary().fit(catalog)).readings[0].values == ("Adidas",)
    narrow = QueryVocabulary(max_attribute_values=2).fit(catalog)  # colours are free text now
    assert understand("black mat", narrow).readings == []


def test_boosts_lift_what_they_name_within_the_results(catalog, vocabulary):
    rows = np.arange(7)
    score = np.linspace(1.0, 0.4, 7)  # catalogue order is relevance order
    understood = understand("yoga mat blue", vocabulary)
    out_rows, out_score = boosted(rows, score, understood.boosts(), catalog, weight=2.0)
    ids = catalog.strings("item_id", out_rows).tolist()
    assert ids.index("mat-2") < ids.index("mat-1") < ids.index("nike-1")  # both boosts, one
    assert sorted(out_rows.tolist()) == rows.tolist() and np.all(np.diff(out_score) <= 0)
    same_rows, same_score = boosted(rows, score, [], catalog, weight=0.3)
    assert same_rows is rows and same_score is score
