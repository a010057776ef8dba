"""Merchandising rules on their own: validation, scopes, windows, storage, and
what ``RulesInEffect`` does to a ranked list."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from shopsense.errors import ShopsenseError
from shopsense.search.catalog import Catalog, Filters, canonical_catalog
from shopsense.search.rules import (
    RULES_FILE,
    Merchandising,
    Rule,
    RulesInEffect,
    check_items,
)

NOW = 1_700_000_000.0
ITEMS = pd.DataFrame(
    {
        "item_id": [f"i{n}" for n in range(8)],
        "title": [f"item {n}" for n in range(8)],
        "brand": ["Acme", "Zeta", "Acme", "Zeta", "Nova", "Nova", "Acme", "Zeta"],
        "category": ["Home > Mugs"] * 4 + ["Home > Pots"] * 4,
        "price": [5.0, 15.0, 25.0, 35.0, 45.0, 55.0, 65.0, 75.0],
        "attributes": [{"color": c} for c in "rgbrgbrg"],
        "in_stock": [True, True, True, False, True, True, True, True],
    }
)


@pytest.fixture
def table() -> Catalog:
    return Catalog(canonical_catalog(ITEMS))


def ranked(table: Catalog, rows: np.ndarray) -> list[str]:
    return table.strings("item_id", rows).tolist()


def run(table, rules, query="mug", category=None, out_of_stock="sink", rows=None, pins=True):
    merchandising = Merchandising(tuple(rules), out_of_stock)
    rows = np.arange(8) if rows is None else np.asarray(rows)
    new, applied = RulesInEffect(merchandising, table, NOW, query, category).apply(rows, pins)
    return ranked(table, new), applied


def test_a_pin_moves_its_item_to_its_place_and_names_the_rule(table):
    pin = Rule("p", "pin", item_id="i5", position=2, query="mug")
    order, applied = run(table, [pin])
    assert order[:3] == ["i0", "i5", "i1"] and applied == ["p"]
    assert len(order) == 8  # moved, not copied


def test_a_pin_brings_in_an_item_the_list_lacked_and_goes_last_past_its_end(table):
    pin = Rule("p", "pin", item_id="i7", position=1, query="mug")
    assert run(table, [pin], rows=[0, 1])[0] == ["i7", "i0", "i1"]
    far = Rule("far", "pin", item_id="i7", position=50, query="mug")
    assert run(table, [far], rows=[0, 1])[0] == ["i0", "i1", "i7"]


def test_a_pin_already_in_place_changed_nothing_and_is_not_named(table):
    pin = Rule("p", "pin", item_id="i0", position=1, query="mug")
    order, applied = run(table, [pin])
    assert order[0] == "i0" and applied == []


def test_two_pins_for_one_place_the_first_listed_wins_the_other_follows(table):
    first = Rule("a", "pin", item_id="i6", position=1, query="mug")
    second = Rule("b", "pin", item_id="i7", position=1, query="mug")
    third = Rule("c", "pin", item_id="i5", position=2, query="mug")
    order, applied = run(table, [first, second, third])
    assert order[:4] == ["i6", "i7", "i5", "i0"]
    assert applied == ["a", "b", "c"]


def test_query_scopes_exact_and_contains(table):
    exact = Rule("e", "pin", item_id="i5", position=1, query="Blue  Mug")
    contains = Rule("c", "pin", item_id="i6", position=1, query="blue mug", match="contains")
    assert run(table, [exact], query="blue mug")[0][0] == "i5"
    assert run(table, [exact], query="big blue mug")[0][0] == "i0"
    assert run(table, [contains], query="big blue mug set")[0][0] == "i6"
    assert run(table, [contains], query="blue mugs")[0][0] == "i0"  # words, not letters
    assert run(table, [contains], query=None)[0][0] == "i0"  # a list with no query
    chinese = Rule("z", "pin", item_id="i7", position=1, query="手机壳", match="contains")
    assert run(table, [chinese], query="红色手机壳")[0][0] == "i7"


def test_a_category_page_pin_applies_on_that_page_only(table):
    pin = Rule("p", "pin", item_id="i7", position=1, category="Home > Mugs")
    assert run(table, [pin], query="", category="home > mugs")[0][0] == "i7"
    assert run(table, [pin], query="", category="Home")[0][0] == "i0"
    assert run(table, [pin], query="", category=None)[0][0] == "i0"


def test_hide_removes_its_item_even_when_pinned(table):
    hide = Rule("h", "hide", item_id="i1")
    pin = Rule("p", "pin", item_id="i1", position=1, query="mug")
    order, applied = run(table, [hide, pin])
    assert "i1" not in order and applied == ["h"]
    assert run(table, [hide], rows=[0, 2])[1] == []  # not in the list: nothing changed


def test_boosts_and_buries_are_tiers_that_keep_relevance_order_within(table):
    boost = Rule("b", "boost", where=Filters(brand=["Nova"]))
    bury = Rule("d", "bury", where=Filters(price_max=20.0))
    order, applied = run(table, [boost, bury], out_of_stock="hide")
    assert order == ["i4", "i5", "i2", "i6", "i7", "i0", "i1"]
    assert applied == ["b", "d"]
    heavier = Rule("x", "boost", where=Filters(attributes={"color": ["g"]}), weight=2)
    order, _ = run(table, [boost, heavier], out_of_stock="hide")
    assert order[:4] == ["i4", "i1", "i7", "i5"]  # green Nova (3), green (2), Nova (1)
    assert order[4] == "i0"


def test_a_boost_that_moves_nothing_is_not_named(table):
    boost = Rule("b", "boost", where=Filters(brand=["Acme"]))
    order, applied = run(table, [boost], rows=[0, 2, 6, 1])
    assert order == ["i0", "i2", "i6", "i1"] and applied == []


def test_out_of_stock_items_sink_by_default_or_are_hidden(table):
    sunk, _ = run(table, [])
    assert sunk[-1] == "i3" and len(sunk) == 8
    hidden, _ = run(table, [], out_of_stock="hide")
    assert "i3" not in hidden and len(hidden) == 7
    boost = Rule("b", "boost", where=Filters(brand=["Zeta"]))
    order, _ = run(table, [boost])
    assert order == ["i1", "i7", "i0", "i2", "i4", "i5", "i6", "i3"]  # sunk beats boosted
    pin = Rule("p", "pin", item_id="i3", position=1, query="mug")
    assert run(table, [pin])[0][0] == "i3"  # a pin is the merchandiser's own choice
    assert run(table, [pin], out_of_stock="hide")[0][0] == "i0"


def test_windows_decide_when_a_rule_applies(table):
    later = Rule("l", "hide", item_id="i0", starts_at=NOW + 60)
    over = Rule("o", "hide", item_id="i1", ends_at=NOW)
    now = Rule("n", "hide", item_id="i2", starts_at=NOW - 60, ends_at=NOW + 60)
    order, applied = run(table, [later, over, now])
    assert order[:2] == ["i0", "i1"] and "i2" not in order and applied == ["n"]
    known = set(ITEMS["item_id"])
    assert [r.status(NOW, known) for r in (later, over, now)] == [
        "scheduled",
        "expired",
        "active",
    ]


def test_a_rule_for_a_deleted_item_is_kept_inactive_and_does_nothing(table):
    pin = Rule("p", "pin", item_id="i6", position=1, query="mug")
    table.delete(["i6"])
    order, applied = run(table, [pin], rows=[0, 1, 2])
    assert order == ["i0", "i1", "i2"] and applied == []
    assert pin.status(NOW, set(table.row_of)) == "inactive"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"action": "pin", "item_id": "i1", "position": 0, "query": "q"}, "position"),
        ({"action": "pin", "item_id": "i1", "position": 2}, "query or a category"),
        ({"action": "pin", "position": 2, "query": "q"}, "item_id"),
        ({"action": "hide", "item_id": "i1", "starts_at": 10, "ends_at": 5}, "ends before"),
        ({"action": "hide", "item_id": "i1", "starts_at": 10, "ends_at": 10}, "ends before"),
        ({"action": "boost"}, "which items"),
        ({"action": "boost", "where": {"brand": []}}, "which items"),
        ({"action": "boost", "where": {"colour": ["red"]}}, "unknown filter"),
        ({"action": "bury", "where": {"brand": ["A"]}, "weight": 0}, "weight"),
        ({"action": "boost", "where": {"brand": ["A"]}, "item_id": "i1"}, "not an item_id"),
        ({"action": "demote", "item_id": "i1"}, "action"),
        ({"action": "hide", "item_id": "i1", "match": "fuzzy"}, "match"),
        ({"action": "hide", "item_id": "i1", "query": "  "}, "blank"),
        ({"action": "hide", "item_id": "i1", "id": "bad id!"}, "rule id"),
        ({"action": "hide", "item_id": "i1", "colour": "red"}, "unknown rule field"),
        ({"action": "hide", "item_id": "i1", "starts_at": "soon"}, "number"),
    ],
)
def test_bad_rules_are_refused_with_a_clear_error(data, message):
    with pytest.raises(ShopsenseError, match=message):
        Rule.from_dict(data)


def test_unknown_items_are_refused_by_check_items():
    check_items([Rule("ok", "hide", item_id="i1")], {"i1"})
    with pytest.raises(ShopsenseError, match="unknown item 'nope'"):
        check_items([Rule("r", "hide", item_id="nope")], {"i1"})


def test_rules_are_saved_with_the_index_and_read_back(tmp_path):
    assert Merchandising.load(tmp_path) == Merchandising()  # no file: no rules, sinking
    rules = (
        Rule("p", "pin", item_id="i1", position=3, query="mug", match="contains"),
        Rule("b", "boost", where=Filters(brand=["Acme"], price_max=30.0), weight=2.5),
        Rule("h", "hide", item_id="i2", starts_at=NOW, ends_at=NOW + 1),
    )
    saved = Merchandising(rules, "hide")
    saved.save(tmp_path)
    assert Merchandising.load(tmp_path) == saved
    assert [p.name for p in tmp_path.iterdir()] == [RULES_FILE]  # nothing left aside
    data = json.loads((tmp_path / RULES_FILE).read_text())
    assert data["rules"][1]["where"] == {"brand": ["Acme"], "price_max": 30.0}
    (tmp_path / RULES_FILE).write_text("{not json")
    with pytest.raises(ShopsenseError, match="not valid JSON"):
        Merchandising.load(tmp_path)


def test_putting_a_rule_of_a_known_id_replaces_it_in_place():
    a, b = Rule("a", "hide", item_id="i1"), Rule("b", "hide", item_id="i2")
    merchandising = Merchandising((a, b)).with_rules([Rule("a", "hide", item_id="i3")])
    assert [(r.id, r.item_id) for r in merchandising.rules] == [("a", "i3"), ("b", "i2")]
    assert [r.id for r in merchandising.without("a").rules] == ["b"]
    with pytest.raises(ShopsenseError, match="same id"):
        Merchandising((a, a))
    with pytest.raises(ShopsenseError, match="out_of_stock"):
        Merchandising((), "drop")


def test_scores_follow_their_rows_and_a_pinned_newcomer_takes_its_neighbours(table):
    pin = Rule("p", "pin", item_id="i7", position=2, query="mug")
    boost = Rule("b", "boost", where=Filters(brand=["Zeta"]))
    rows, score = np.array([0, 1, 2]), np.array([0.9, 0.5, 0.4])
    merchandising = Merchandising((pin, boost))
    ruled, scores, applied = RulesInEffect(merchandising, table, NOW, "mug").apply_scored(
        rows, score
    )
    assert ranked(table, ruled) == ["i1", "i7", "i0", "i2"] and applied == ["p", "b"]
    assert scores.tolist() == [0.5, 0.9, 0.9, 0.4]
    last = Merchandising((Rule("p", "pin", item_id="i7", position=9, query="mug"),))
    _, scores, _ = RulesInEffect(last, table, NOW, "mug").apply_scored(rows, score)
    assert scores.tolist() == [0.9, 0.5, 0.4, 0.4]
    untouched = RulesInEffect(Merchandising(), table, NOW, "mug").apply_scored(rows, score)
    assert untouched[1] is score and untouched[2] == []


def test_shown_rows_leave_out_hidden_items_and_out_of_stock_ones_under_hide(table):
    hide = Rule("h", "hide", item_id="i0")
    rows = np.arange(8)
    shown = RulesInEffect(Merchandising((hide,)), table, NOW, "q").shown_rows(rows)
    assert ranked(table, shown) == [f"i{n}" for n in range(1, 8)]
    hiding = Merchandising((hide,), "hide")
    assert "i3" not in ranked(table, RulesInEffect(hiding, table, NOW, "q").shown_rows(rows))
