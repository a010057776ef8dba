"""Merchandising rules: what a store's merchandiser changes in a ranked list.

A ``Rule`` pins an item at a position, hides an item, or boosts or buries the
items that match a condition (brand, category, price range, any catalogue
attribute: a ``Filters``). Each may be scoped to a query (exact, or a query
that contains the rule's words) and to a category page, and to a window of
time. The rules and the out-of-stock policy (``Merchandising``) are saved
with the index's settings, as ``rules.json`` in the index folder.

``RulesInEffect`` (the rules of one request: its time, query and category
page, over a table of rows) is the one place they take effect, on any ranked
list of rows: hides first (a hidden item is never shown, even when pinned),
then boosts and buries as tiers (the items a boost matches go ahead of the
rest, keeping their relevance order among themselves: a merchandiser can
predict the result, which a score bonus on a scale that changes with every
query does not give), out-of-stock items after every item in stock when the policy
sinks them, then pins at their positions. It names each rule that changed
the list, so a merchandiser can see why an order changed.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shopsense.data.schema import CATEGORY_SEP, category_levels
from shopsense.errors import ShopsenseError
from shopsense.features.text import CJK
from shopsense.search.catalog import Filters

RULES_FILE = "rules.json"
ACTIONS = ("pin", "hide", "boost", "bury")
MATCHES = ("exact", "contains")
OUT_OF_STOCK = ("sink", "hide")
"""What becomes of an out-of-stock item: shown after every item in stock
(``sink``, the default: a shopper may still want it, or back-order it) or
left out (``hide``)."""
RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
STATUSES = ("active", "scheduled", "expired", "inactive")


class RuleTable(Protocol):
    """What rules read of a catalogue, by row: the live row of an item id,
    whether each row is in stock, and which rows match a condition."""

    row_of: Mapping[str, int]
    in_stock: np.ndarray

    def mask(self, rows: np.ndarray, filters: Filters) -> np.ndarray: ...


def normal_query(query: str) -> str:
    """A query as rules compare it: lower case, single spaces."""
    return " ".join(query.lower().split())


def normal_category(category: str) -> str:
    """A category path as rules compare it: its levels, lower case."""
    return CATEGORY_SEP.join(category_levels(category)).lower()


@dataclass(frozen=True)
class Rule:
    """One merchandising rule; invalid values raise ``ShopsenseError``.

    ``action`` is ``pin`` (``item_id`` at ``position``, 1 the first place; for
    a ``query`` or a ``category`` page, at least one), ``hide`` (``item_id``),
    ``boost`` or ``bury`` (the items matching ``where``, by ``weight``: an
    item's tier is its boosts' weights less its buries'). ``query`` with
    ``match`` ``exact`` applies to that query alone, ``contains`` to every
    query holding its words in that order; ``category`` to searches and pages
    filtered on exactly that category. ``starts_at`` and ``ends_at`` are Unix
    seconds (either may be open)."""

    id: str
    action: str
    item_id: str | None = None
    position: int | None = None
    where: Filters | None = None
    weight: float = 1.0
    query: str | None = None
    match: str = "exact"
    category: str | None = None
    starts_at: float | None = None
    ends_at: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not RULE_ID.match(self.id):
            raise ShopsenseError(
                f"rule id {self.id!r}: letters, digits, '_', '.', '-', at most 64, "
                "starting with a letter or digit"
            )
        if self.action not in ACTIONS:
            raise ShopsenseError(f"rule {self.id}: action must be one of {', '.join(ACTIONS)}")
        if self.match not in MATCHES:
            raise ShopsenseError(f"rule {self.id}: match must be one of {', '.join(MATCHES)}")
        if self.query is not None and not normal_query(self.query):
            raise ShopsenseError(f"rule {self.id}: query is blank")
        if self.category is not None and not normal_category(self.category):
            raise ShopsenseError(f"rule {self.id}: category is blank")
        starts, ends = self.starts_at, self.ends_at
        if starts is not None and ends is not None and ends <= starts:
            raise ShopsenseError(f"rule {self.id}: its window ends before it starts")
        if self.action in ("pin", "hide"):
            self._check_item_rule()
        else:
            self._check_condition_rule()

    def _check_item_rule(self) -> None:
        if not self.item_id:
            raise ShopsenseError(f"rule {self.id}: a {self.action} rule names an item_id")
        if self.where is not None:
            raise ShopsenseError(f"rule {self.id}: a {self.action} rule takes no 'where'")
        if self.action == "hide":
            if self.position is not None:
                raise ShopsenseError(f"rule {self.id}: a hide rule takes no position")
            return
        if self.position is None or isinstance(self.position, bool) or self.position < 1:
            raise ShopsenseError(f"rule {self.id}: a pin's position is a whole number from 1")
        if self.query is None and self.category is None:
            raise ShopsenseError(f"rule {self.id}: a pin is for a query or a category page")

    def _check_condition_rule(self) -> None:
        if self.item_id is not None or self.position is not None:
            raise ShopsenseError(
                f"rule {self.id}: a {self.action} rule takes items by 'where', not an item_id"
            )
        if self.where is None or not self.where.active():
            raise ShopsenseError(
                f"rule {self.id}: a {self.action} rule says which items in 'where' "
                "(brand, category, price_min, price_max or attributes)"
            )
        if not np.isfinite(self.weight) or self.weight <= 0:
            raise ShopsenseError(f"rule {self.id}: weight must be a positive number")

    # ------------------------------------------------------------- when it applies
    def in_window(self, now: float) -> bool:
        return (self.starts_at is None or self.starts_at <= now) and (
            self.ends_at is None or now < self.ends_at
        )

    @cached_property
    def normal_query(self) -> str:
        """The rule's query as rules compare it (every search asks every rule)."""
        return normal_query(self.query or "")

    def applies_to(self, query: str | None, category: str | None) -> bool:
        """Whether the rule's scope covers a list made for ``query`` (normalized;
        None or "" for none) on the page of ``category`` (normalized, or None)."""
        if self.category is not None and normal_category(self.category) != category:
            return False
        if self.query is None:
            return True
        if not query:
            return False
        wanted = self.normal_query
        if self.match == "exact":
            return query == wanted
        if CJK.search(wanted):  # Chinese is written without spaces between words
            return wanted in query
        return f" {wanted} " in f" {query} "

    def status(self, now: float, known_items: Container[str]) -> str:
        """``inactive`` for a rule whose item left the catalogue (kept: it takes
        effect again if the item comes back), else where ``now`` is in its window."""
        if self.item_id is not None and self.item_id not in known_items:
            return "inactive"
        if self.starts_at is not None and now < self.starts_at:
            return "scheduled"
        if self.ends_at is not None and now >= self.ends_at:
            return "expired"
        return "active"

    # ------------------------------------------------------------- as data
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["where"] = None if self.where is None else _where_dict(self.where)
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        """A rule from JSON data; a missing ``id`` is made up."""
        if not isinstance(data, Mapping):
            raise ShopsenseError("a rule is a JSON object")
        names = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - names
        if unknown:
            raise ShopsenseError(f"unknown rule field(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        values.setdefault("id", new_rule_id())
        if values.get("where") is not None:
            values["where"] = Filters.parse(values["where"])
        for name in ("starts_at", "ends_at", "weight"):
            if values.get(name) is not None:
                values[name] = _number(values[name], name)
        try:
            return cls(**values)
        except TypeError as e:
            raise ShopsenseError(f"rule: {e}") from None


def new_rule_id() -> str:
    return f"rule-{uuid.uuid4().hex[:10]}"


def _where_dict(where: Filters) -> dict[str, Any]:
    return {k: v for k, v in asdict(where).items() if v not in (None, [], {})}


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ShopsenseError(f"rule {name} is a number, not {value!r}")
    return float(value)


def check_items(rules: Iterable[Rule], known_items: Container[str]) -> None:
    """Refuse a rule naming an item the catalogue does not hold."""
    for rule in rules:
        if rule.item_id is not None and rule.item_id not in known_items:
            raise ShopsenseError(f"rule {rule.id}: unknown item {rule.item_id!r}")


@dataclass(frozen=True)
class Merchandising:
    """An index's rules, in the order they were first added, and its
    out-of-stock policy (``OUT_OF_STOCK``); replaced whole on a change."""

    rules: tuple[Rule, ...] = ()
    out_of_stock: str = "sink"
    _by_id: dict[str, Rule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.out_of_stock not in OUT_OF_STOCK:
            raise ShopsenseError(f"out_of_stock must be one of {', '.join(OUT_OF_STOCK)}")
        by_id = {rule.id: rule for rule in self.rules}
        if len(by_id) != len(self.rules):
            raise ShopsenseError("two rules have the same id")
        object.__setattr__(self, "_by_id", by_id)

    def rule(self, rule_id: str) -> Rule | None:
        return self._by_id.get(rule_id)

    def with_rules(self, rules: Sequence[Rule]) -> Merchandising:
        """These rules added, or replacing the rules of the same ids in place."""
        given = {rule.id: rule for rule in rules}
        kept = tuple(given.pop(rule.id, rule) for rule in self.rules)
        return replace(self, rules=kept + tuple(given.values()))

    def without(self, rule_id: str) -> Merchandising:
        return replace(self, rules=tuple(r for r in self.rules if r.id != rule_id))

    def in_effect(self, now: float, query: str | None, category: str | None) -> list[Rule]:
        """The rules that apply at ``now`` to a list for ``query`` on the page
        of ``category`` (either None for none)."""
        q = None if query is None else normal_query(query)
        c = None if category is None else normal_category(category)
        return [r for r in self.rules if r.in_window(now) and r.applies_to(q, c)]

    # ------------------------------------------------------------- storage
    def to_dict(self) -> dict[str, Any]:
        return {"out_of_stock": self.out_of_stock, "rules": [r.to_dict() for r in self.rules]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Merchandising:
        if not isinstance(data, Mapping) or not isinstance(data.get("rules", []), list):
            raise ShopsenseError("merchandising is an object with a list of 'rules'")
        rules = tuple(Rule.from_dict(r) for r in data.get("rules", []))
        return cls(rules, data.get("out_of_stock", "sink"))

    def save(self, folder: Path) -> None:
        """``rules.json`` in the index folder, written aside and moved into place,
        so a reader never sees half a file."""
        path = Path(folder) / RULES_FILE
        aside = path.with_name(f".{RULES_FILE}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
        aside.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False), "utf-8")
        os.replace(aside, path)

    @classmethod
    def load(cls, folder: Path) -> Merchandising:
        """The folder's rules; none (and sinking) when it has no ``rules.json``."""
        path = Path(folder) / RULES_FILE
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ShopsenseError(f"{path} is not valid JSON: {e}") from None
        try:
            return cls.from_dict(data)
        except ShopsenseError as e:
            raise ShopsenseError(f"{path}: {e}") from None


# ----------------------------------------------------------------- applying them
@dataclass(frozen=True)
class RulesInEffect:
    """The rules of ``merchandising`` in effect at ``now`` for a list made for
    ``query`` (None for none) on the page of ``category`` (None for none), over
    the rows of ``table``: one object for the lists and sets of one request,
    which finds its rules once. A pin brings in no item outside ``filters``
    (the shopper's and those read from the query): a page filtered on one
    brand or price shows none of another."""

    merchandising: Merchandising
    table: RuleTable
    now: float
    query: str | None = None
    category: str | None = None
    filters: Filters | None = None

    @cached_property
    def rules(self) -> list[Rule]:
        return self.merchandising.in_effect(self.now, self.query, self.category)

    def apply(self, rows: np.ndarray, pins: bool = True) -> tuple[np.ndarray, list[str]]:
        """``rows`` (best first) as the rules order them, and the ids of the
        rules that changed the list. ``pins`` False leaves pins out (a list
        that is not a page, such as a shopper's recommendations)."""
        rules, table, out_of_stock = self.rules, self.table, self.merchandising.out_of_stock
        rows = np.asarray(rows, np.int64)
        applied: list[str] = []
        rows, hidden = _hidden(rules, rows, table)
        applied += hidden
        in_stock = table.in_stock[rows]
        if out_of_stock == "hide":
            rows, in_stock = rows[in_stock], in_stock[in_stock]
        rows, tiered = _tiered(rules, rows, in_stock, table)
        applied += tiered
        if pins:
            rows, pinned = _pinned(
                rules, rows, table, out_of_stock, hidden_ids(rules), self.filters
            )
            applied += pinned
        return rows, [r.id for r in rules if r.id in set(applied)]

    def apply_scored(
        self, rows: np.ndarray, score: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``apply`` for a list with scores (search's results): each row keeps
        its score; an item a pin brought in takes the score of the one after it
        (of the one before it when last), so scores still read down the page."""
        ruled, applied = self.apply(rows)
        if not applied:
            return ruled, score, applied
        order = np.argsort(rows, kind="stable")
        at = np.minimum(np.searchsorted(rows[order], ruled), max(len(rows) - 1, 0))
        found = rows[order][at] == ruled if len(rows) else np.zeros(len(ruled), bool)
        carried = np.where(found, score[order][at] if len(rows) else 0.0, np.nan)
        for i in np.flatnonzero(~found)[::-1]:  # pins brought in: a few
            after = carried[i + 1] if i + 1 < len(carried) else np.nan
            carried[i] = after if np.isfinite(after) else (carried[i - 1] if i else 0.0)
        return ruled, np.nan_to_num(carried), applied

    def shown_rows(self, rows: np.ndarray) -> np.ndarray:
        """Of ``rows`` (a result set's, for its facets), those no rule in effect
        hides, nor the out-of-stock policy."""
        keep = np.ones(len(rows), bool)
        hidden = [self.table.row_of.get(i) for i in hidden_ids(self.rules)]
        hidden = np.array([r for r in hidden if r is not None], np.int64)
        if len(hidden):  # a sorted search, not ``np.isin`` (it sorts the rows too)
            hidden.sort()
            at = np.minimum(np.searchsorted(hidden, rows), len(hidden) - 1)
            keep = hidden[at] != rows
        if self.merchandising.out_of_stock == "hide":
            keep &= self.table.in_stock[rows]
        return rows[keep]


def hidden_ids(rules: Iterable[Rule]) -> set[str]:
    """The items ``rules`` hide."""
    return {r.item_id for r in rules if r.action == "hide" and r.item_id is not None}


def _hidden(rules: list[Rule], rows: np.ndarray, table: RuleTable) -> tuple[np.ndarray, list[str]]:
    keep = np.ones(len(rows), bool)
    applied = []
    for rule in rules:
        if rule.action != "hide":
            continue
        row = table.row_of.get(rule.item_id or "")
        hit = rows == row if row is not None else None
        if hit is not None and hit.any():
            keep &= ~hit
            applied.append(rule.id)
    return rows[keep], applied


def _tiered(
    rules: list[Rule], rows: np.ndarray, in_stock: np.ndarray, table: RuleTable
) -> tuple[np.ndarray, list[str]]:
    """Boosted items first, buried ones last, out-of-stock ones after every item
    in stock (a stable sort: relevance order holds within a tier)."""
    tier = np.zeros(len(rows), np.float64)
    matched: list[tuple[str, np.ndarray]] = []
    for rule in rules:
        if rule.action in ("boost", "bury") and rule.where is not None and len(rows):
            hit = table.mask(rows, rule.where)
            if hit.any():
                tier += (rule.weight if rule.action == "boost" else -rule.weight) * hit
                matched.append((rule.id, hit))
    sunk = ~in_stock
    order = np.lexsort((-tier, sunk))
    if not matched:
        return rows[order], []
    untiered = np.argsort(sunk, kind="stable")
    where_now, where_before = np.empty(len(rows), np.int64), np.empty(len(rows), np.int64)
    where_now[order] = np.arange(len(rows))
    where_before[untiered] = np.arange(len(rows))
    moved = where_now != where_before
    return rows[order], [rule_id for rule_id, hit in matched if (moved & hit).any()]


def _pinned(
    rules: list[Rule],
    rows: np.ndarray,
    table: RuleTable,
    out_of_stock: str,
    hidden: set[str],
    filters: Filters | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Each pinned item at its place (of two pins asking for one place, the
    lower position listed first takes it and the other goes just after), or
    last when the list is shorter. A pin of an item hidden, out of stock under
    ``hide``, outside ``filters``, or no longer in the catalogue does nothing."""
    chosen: dict[int, Rule] = {}
    for rule in sorted((r for r in rules if r.action == "pin"), key=lambda r: r.position or 0):
        row = table.row_of.get(rule.item_id or "")
        if row is None or rule.item_id in hidden or row in chosen:
            continue
        if filters is not None and not table.mask(np.array([row]), filters)[0]:
            continue
        if out_of_stock == "hide" and not table.in_stock[row]:
            continue
        chosen[row] = rule
    if not chosen:
        return rows, []
    out = rows[~np.isin(rows, list(chosen))]
    for row, rule in chosen.items():
        at = min((rule.position or 1) - 1, len(out))
        while at < len(out) and int(out[at]) in chosen:
            at += 1
        out = np.insert(out, at, row)
    applied = []
    for row, rule in chosen.items():
        before = np.flatnonzero(rows == row)
        if not len(before) or before[0] != np.flatnonzero(out == row)[0]:
            applied.append(rule.id)
    return out, applied
