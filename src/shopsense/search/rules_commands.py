"""The ``shopsense rules`` commands: ``list``, ``add``, ``delete`` and
``stock``, on an index folder's ``rules.json`` (``search.rules``).

They change the folder a service is started from, not a running one: a
running service copies the folder once and then follows the change log, so
it takes these changes when it starts again. To change the rules of a running
service, on every worker at once, use ``PUT``/``DELETE /admin/rules``.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from shopsense.errors import ShopsenseError
from shopsense.search.catalog import Catalog
from shopsense.search.commands import INDEX_OPTION
from shopsense.search.rules import (
    ACTIONS,
    MATCHES,
    OUT_OF_STOCK,
    Merchandising,
    Rule,
    check_items,
)


def _catalogue_ids(index_dir: Path) -> set[str]:
    if not (index_dir / "catalog.parquet").is_file():
        raise ShopsenseError(f"{index_dir} is not a search index (no catalog.parquet)")
    return set(Catalog.load(index_dir).row_of)


def _seconds(text: str | None, name: str) -> float | None:
    """Unix seconds, or an ISO 8601 time (UTC when it names no zone)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ShopsenseError(f"{name} {text!r}: give an ISO 8601 time or Unix seconds") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@click.group()
def rules() -> None:
    """Merchandising rules of an index: pins, hides, boosts, buries, stock."""


@rules.command(name="list")
@INDEX_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_rules(index_dir: Path, as_json: bool) -> None:
    """Every rule with its status (inactive: its item left the catalogue)."""
    merchandising = Merchandising.load(index_dir)
    known, now = _catalogue_ids(index_dir), time.time()
    listed = [rule.to_dict() | {"status": rule.status(now, known)} for rule in merchandising.rules]
    if as_json:
        data = {"out_of_stock": merchandising.out_of_stock, "rules": listed}
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    click.echo(f"out-of-stock items: {merchandising.out_of_stock}")
    for rule in listed:
        what = {k: v for k, v in rule.items() if k not in ("id", "action", "status")}
        click.echo(f"{rule['id']:<20} {rule['status']:<9} {rule['action']:<5} {json.dumps(what)}")


@rules.command()
@INDEX_OPTION
@click.option(
    "--file",
    "rules_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Rules as JSON (one rule or a list), the fields of PUT /admin/rules.",
)
@click.option("--id", "rule_id", default=None, help="The rule's id (default: made up).")
@click.option("--action", type=click.Choice(ACTIONS), default=None)
@click.option("--item", "item_id", default=None, help="The item a pin or hide is about.")
@click.option("--position", type=int, default=None, help="A pin's place, 1 the first.")
@click.option("--query", default=None, help="Only for this query.")
@click.option("--match", type=click.Choice(MATCHES), default="exact", show_default=True)
@click.option("--category", default=None, help="Only on this category's page.")
@click.option("--brand", "brands", multiple=True, help="Boost/bury: items of this brand.")
@click.option(
    "--in-category", "categories", multiple=True, help="Boost/bury: items in this category."
)
@click.option("--price-min", type=float, default=None, help="Boost/bury: items from this price.")
@click.option("--price-max", type=float, default=None, help="Boost/bury: items to this price.")
@click.option(
    "--attribute",
    "attributes",
    multiple=True,
    metavar="NAME=VALUE",
    help="Boost/bury: items with this attribute value (repeat for more).",
)
@click.option("--weight", type=float, default=1.0, show_default=True)
@click.option("--starts", default=None, help="From (ISO 8601 or Unix seconds).")
@click.option("--ends", default=None, help="Until (ISO 8601 or Unix seconds).")
def add(
    index_dir: Path,
    rules_file: Path | None,
    rule_id: str | None,
    action: str | None,
    item_id: str | None,
    position: int | None,
    query: str | None,
    match: str,
    category: str | None,
    brands: tuple[str, ...],
    categories: tuple[str, ...],
    price_min: float | None,
    price_max: float | None,
    attributes: tuple[str, ...],
    weight: float,
    starts: str | None,
    ends: str | None,
) -> None:
    """Add rules (or replace those of the same ids): from --file, or one
    described by the options."""
    if (rules_file is None) == (action is None):
        raise ShopsenseError("give --file or --action (one of them)")
    if rules_file is not None:
        given = _read_rules(rules_file)
    else:
        where: dict[str, Any] = {"brand": list(brands), "category": list(categories),
                                 "price_min": price_min, "price_max": price_max,
                                 "attributes": _attributes(attributes)}  # fmt: skip
        data = {"id": rule_id, "action": action, "item_id": item_id, "position": position,
                "query": query, "match": match, "category": category,
                "starts_at": _seconds(starts, "--starts"), "ends_at": _seconds(ends, "--ends"),
                "weight": weight,
                "where": where if action in ("boost", "bury") else None}  # fmt: skip
        given = [Rule.from_dict({k: v for k, v in data.items() if v is not None})]
    check_items(given, _catalogue_ids(index_dir))
    Merchandising.load(index_dir).with_rules(given).save(index_dir)
    for rule in given:
        click.echo(f"rule {rule.id}: {rule.action} saved in {index_dir}")


def _read_rules(path: Path) -> list[Rule]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ShopsenseError(f"cannot read {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ShopsenseError(f"{path} is not valid JSON: {e}") from None
    return [Rule.from_dict(rule) for rule in (data if isinstance(data, list) else [data])]


def _attributes(pairs: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value:
            raise ShopsenseError(f"--attribute {pair!r}: give NAME=VALUE")
        out.setdefault(name, []).append(value)
    return out


@rules.command()
@INDEX_OPTION
@click.argument("rule_id")
def delete(index_dir: Path, rule_id: str) -> None:
    """Remove rule RULE_ID."""
    merchandising = Merchandising.load(index_dir)
    if merchandising.rule(rule_id) is None:
        raise ShopsenseError(f"no rule {rule_id!r} in {index_dir}")
    merchandising.without(rule_id).save(index_dir)
    click.echo(f"rule {rule_id} deleted")


@rules.command()
@INDEX_OPTION
@click.argument("policy", type=click.Choice(OUT_OF_STOCK))
def stock(index_dir: Path, policy: str) -> None:
    """What becomes of out-of-stock items: sink (after every item in stock) or hide."""
    merchandising = Merchandising.load(index_dir)
    Merchandising(merchandising.rules, policy).save(index_dir)
    click.echo(f"out-of-stock items: {policy}")


COMMANDS = (rules,)
