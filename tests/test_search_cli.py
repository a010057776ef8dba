"""``shopsense search`` through click's runner: what the query was read for
(and ``--no-understand``, ``--ignore``), the merchandising rules that changed
the results, and the popular items for a query that matches nothing, as text
and as JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from shopsense.cli import cli
from shopsense.search.engine import build_index
from shopsense.search.rules import Merchandising, Rule
from tests.test_query_understanding import ITEMS


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("search_cli") / "index"
    build_index(ITEMS, folder, semantic=False)
    return folder


def search(index: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["search", "--index", str(index), *args])


def as_json(index: Path, *args: str) -> dict:
    result = search(index, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def hit_ids(output: str) -> list[str]:
    """The item ids of the numbered result lines."""
    return re.findall(r"^ +\d+\. (\S+)", output, re.MULTILINE)


def price_of(item_id: str) -> float:
    return float(ITEMS.set_index("item_id").loc[item_id, "price"])


def test_text_output_says_what_the_query_was_read_for(index):
    result = search(index, "running shoes under 100")
    assert result.exit_code == 0, result.output
    assert "understood: price under 100 (filter), category: Running Shoes (boost)" in result.output
    found = hit_ids(result.output)
    assert found and all(price_of(i) <= 100 for i in found)
    ranged = search(index, "black yoga mat 25-50").output
    assert "price 25-50 (filter)" in ranged and "color: black (boost)" in ranged
    assert "price over 20 (filter)" in search(index, "yoga mat over 20").output
    assert "brand: Adidas (boost)" in search(index, "adidas running shoes").output


def test_ignore_leaves_a_kind_unread_and_no_understand_reads_nothing(index):
    ignored = search(index, "running shoes under 100", "--ignore", "price")
    assert ignored.exit_code == 0, ignored.output
    assert "price under" not in ignored.output and "category: Running Shoes" in ignored.output
    assert "adidas-1" in hit_ids(ignored.output)  # 120: no price filter now
    both = search(index, "running shoes under 100", "--ignore", "price", "--ignore", "category")
    assert "understood:" not in both.output and "adidas-1" in hit_ids(both.output)
    plain = search(index, "nike running shoes under 100", "--no-understand")
    assert plain.exit_code == 0 and "understood:" not in plain.output
    assert hit_ids(plain.output)


def test_json_carries_the_readings_and_the_ignored_kinds_are_gone(index):
    read = as_json(index, "adidas running shoes under 100")
    assert {r["kind"] for r in read["understood"]["readings"]} == {"price", "brand", "category"}
    assert read["understood"]["text"].strip() == "adidas running shoes"
    assert all(h["price"] <= 100 for h in read["hits"])
    left = as_json(
        index, "adidas running shoes under 100", "--ignore", "price", "--ignore", "brand"
    )
    assert [r["kind"] for r in left["understood"]["readings"]] == ["category"]
    off = as_json(index, "adidas running shoes under 100", "--no-understand")
    assert off["understood"]["readings"] == [] and off["understood"]["text"] == off["query"]


def test_an_unknown_reading_is_refused_with_the_kinds_named(index):
    result = search(index, "shoes", "--ignore", "colour")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "'colour' is not one of 'price', 'brand', 'category', 'attribute'" in result.output


def test_the_rules_that_changed_the_results_are_named(tmp_path):
    folder = tmp_path / "index"
    build_index(ITEMS, folder, semantic=False)
    rules = (
        Rule("pin-mat", "pin", item_id="mat-2", position=1, query="running shoes"),
        Rule("hide-paint", "hide", item_id="paint-1"),
    )
    Merchandising(rules).save(folder)
    result = search(folder, "running shoes")
    assert result.exit_code == 0, result.output
    assert "rules applied: pin-mat\n" in result.output and hit_ids(result.output)[0] == "mat-2"
    assert as_json(folder, "running shoes")["rules_applied"] == ["pin-mat"]
    assert "rules applied" not in search(folder, "yoga mat").output  # no rule changed it


def test_a_query_that_matches_nothing_lists_the_popular_items_apart(index):
    result = search(index, "xqzv flurb")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("0 results for 'xqzv flurb'")
    assert hit_ids(result.output) == [] and "popular right now:" in result.output
    fallback = as_json(index, "xqzv flurb")["fallback"]
    assert fallback and all(h["item_id"] in result.output for h in fallback)
