"""Merchandising rules and stock in search: pins at their places before
paging, hides out of the result set and its facets, boosts in the ranking,
out-of-stock items sunk or hidden, and ``rules_applied`` in the results."""

from __future__ import annotations

import pytest

from shopsense.search.catalog import Filters
from shopsense.search.engine import SearchEngine, build_index
from shopsense.search.rules import Merchandising, Rule


@pytest.fixture(scope="module")
def folder(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("rules_index") / "index"
    build_index(store.items, out, store.source_events(), semantic=False)
    return out


@pytest.fixture
def engine(folder) -> SearchEngine:
    opened = SearchEngine(folder, semantic=False)
    yield opened
    opened.use_merchandising(Merchandising())  # the folder is shared by the module


def a_query(store) -> str:
    """A word that many titles share: a query with several pages of results."""
    words = store.items["title"].str.lower().str.split().explode()
    return str(words.value_counts().index[0])


def ids(results) -> list[str]:
    return [h.item_id for h in results.hits]


def brand_count(results, brand: str) -> int:
    return next((f["count"] for f in results.facets["brand"] if f["value"] == brand), 0)


def test_a_pin_takes_its_place_before_paging_and_is_named(engine, store):
    query = a_query(store)
    plain = engine.search(query, per_page=10)
    outsider = next(i for i in store.items["item_id"] if i not in set(ids(plain)))
    engine.use_merchandising(
        Merchandising((Rule("p", "pin", item_id=outsider, position=12, query=query),))
    )
    first, second = engine.search(query, per_page=10), engine.search(query, page=2, per_page=10)
    assert outsider not in ids(first) and ids(second)[1] == outsider
    assert second.rules_applied == ["p"] and first.rules_applied == ["p"]
    assert engine.search(f"{query} more", per_page=10).rules_applied == []  # exact query only


def test_a_pin_brings_in_no_item_outside_the_filters(engine, store):
    query = a_query(store)
    plain = engine.search(query, per_page=10)
    brand = plain.hits[0].brand
    other = store.items[(store.items["brand"] != brand) & (store.items["brand"] != "")]
    outsider, price = other["item_id"].iloc[0], float(other["price"].iloc[0])
    engine.use_merchandising(
        Merchandising((Rule("p", "pin", item_id=outsider, position=1, query=query),))
    )
    assert ids(engine.search(query, per_page=10))[0] == outsider
    within = engine.search(query, filters={"brand": [brand]}, per_page=10)
    assert outsider not in ids(within) and within.rules_applied == []
    cheaper = engine.search(query, filters={"price_max": price / 2}, per_page=10)
    assert outsider not in ids(cheaper)


def test_a_hidden_item_leaves_the_hits_the_total_and_the_facets(engine, store):
    query = a_query(store)
    plain = engine.search(query, per_page=10)
    top = plain.hits[0]
    engine.use_merchandising(Merchandising((Rule("h", "hide", item_id=top.item_id),)))
    hidden = engine.search(query, per_page=10)
    assert top.item_id not in ids(hidden) and ids(hidden)[:9] == ids(plain)[1:]
    assert hidden.total == plain.total - 1 and hidden.rules_applied == ["h"]
    assert brand_count(hidden, top.brand) == brand_count(plain, top.brand) - 1


def test_a_boost_puts_its_items_first_in_their_relevance_order(engine, store):
    query = a_query(store)
    plain = engine.search(query, per_page=100)
    brand = plain.hits[-1].brand
    engine.use_merchandising(Merchandising((Rule("b", "boost", where=Filters(brand=[brand])),)))
    boosted = engine.search(query, per_page=100)
    of_brand = [h.item_id for h in plain.hits if h.brand == brand]
    assert ids(boosted)[: len(of_brand)] == of_brand and boosted.rules_applied == ["b"]
    assert boosted.total == plain.total


def test_a_category_page_pin_applies_when_browsing_that_category(engine, store):
    category = str(store.items["category"].value_counts().index[0])
    plain = engine.search("", filters={"category": [category]}, per_page=5)
    last = engine.search("", filters={"category": [category]}, per_page=100).hits[-1].item_id
    pin = Rule("c", "pin", item_id=last, position=1, category=category)
    engine.use_merchandising(Merchandising((pin,)))
    pinned = engine.search("", filters={"category": [category]}, per_page=5)
    assert ids(pinned)[0] == last and ids(pinned)[1:] == ids(plain)[:4]
    assert ids(engine.search("", per_page=5))[0] != last or ids(plain)[0] == last


def test_out_of_stock_items_sink_by_default_or_are_hidden(engine, store):
    query = a_query(store)
    plain = engine.search(query, per_page=100)
    top = store.items.set_index("item_id").loc[[plain.hits[0].item_id]].reset_index()
    engine.upsert(top.assign(in_stock=False))
    sunk = engine.search(query, per_page=100)
    assert ids(sunk)[-1] == top["item_id"][0] and sunk.total == plain.total
    engine.use_merchandising(Merchandising((), "hide"))
    hidden = engine.search(query, per_page=100)
    assert top["item_id"][0] not in ids(hidden) and hidden.total == plain.total - 1
    engine.upsert(top.assign(in_stock=True))
    assert ids(engine.search(query, per_page=100))[0] == top["item_id"][0]


def test_rules_are_read_from_the_index_folder(folder, store):
    item = str(store.items["item_id"].iloc[0])
    Merchandising((Rule("h", "hide", item_id=item),)).save(folder)
    try:
        assert SearchEngine(folder, semantic=False).merchandising.rule("h") is not None
    finally:
        Merchandising().save(folder)
