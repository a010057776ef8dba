"""Merchandising rules (admin key): put, list and delete them, and set what
becomes of out-of-stock items. Each change is an entry of the change log,
in effect on every worker for search and recommendations, and saved with
the index's settings (``rules.json``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Path as PathParam
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from shopsense.errors import ShopsenseError
from shopsense.search.analysis import MAX_QUERY_CHARS
from shopsense.search.rules import ACTIONS, MATCHES, OUT_OF_STOCK, STATUSES, Rule, check_items
from shopsense.serving.routes import admin_router
from shopsense.serving.schemas import MAX_EVENTS, Text, invalid
from shopsense.serving.service import service_of

router = admin_router("rules")
RuleId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Category = Annotated[str, Field(min_length=1, max_length=500)]


class WhereIn(BaseModel):
    """Which items a boost or bury takes: AND across fields, OR within one."""

    model_config = ConfigDict(extra="forbid")

    brand: Annotated[list[Text], Field(max_length=100)] = []
    category: Annotated[list[Category], Field(max_length=100)] = Field(
        [], description="category paths, any level (``Clothing`` or ``Clothing > Shoes``)"
    )
    price_min: float | None = Field(None, ge=0, le=1e9)
    price_max: float | None = Field(None, ge=0, le=1e9)
    attributes: dict[Text, Annotated[list[Text], Field(max_length=100)]] = Field(
        {}, description='catalogue attribute → values, e.g. ``{"color": ["red"]}``'
    )


class RuleIn(BaseModel):
    """A rule to add, or to replace the rule of its ``id`` (made up when absent)."""

    model_config = ConfigDict(extra="forbid")

    id: RuleId | None = None
    action: Literal[ACTIONS] = Field(
        description="pin an item at a position, hide an item, boost or bury items by 'where'"
    )
    item_id: Text | None = Field(None, description="the item a pin or a hide is about")
    position: int | None = Field(None, ge=1, le=1000, description="a pin's place, 1 the first")
    where: WhereIn | None = None
    weight: float = Field(
        1.0, gt=0, le=1000, description="a boost's or bury's strength: its tier is the sum"
    )
    query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)] | None = Field(
        None, description="only for this query (by ``match``); none: every query"
    )
    match: Literal[MATCHES] = Field(
        "exact", description="``exact``: that query; ``contains``: any query holding its words"
    )
    category: Category | None = Field(
        None, description="only on this category's page (searches filtered on it)"
    )
    starts_at: datetime | None = Field(None, description="ISO 8601 or Unix seconds; UTC if naive")
    ends_at: datetime | None = None

    def rule(self) -> Rule:
        data: dict[str, Any] = self.model_dump(exclude_none=True)
        for name in ("starts_at", "ends_at"):
            if name in data:
                data[name] = _seconds(data[name])
        if self.where is not None:
            data["where"] = self.where.model_dump(exclude_defaults=True)
        return Rule.from_dict(data)


class RuleOut(BaseModel):
    id: str
    action: str
    item_id: str | None = None
    position: int | None = None
    where: dict[str, Any] | None = None
    weight: float
    query: str | None = None
    match: str
    category: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    status: Literal[STATUSES] = Field(
        description="``inactive``: its item is no longer in the catalogue (kept, in effect "
        "again if it comes back); ``scheduled``/``expired``: outside its window"
    )


class RulesOut(BaseModel):
    out_of_stock: Literal[OUT_OF_STOCK]
    rules: list[RuleOut]


class RuleDeleted(BaseModel):
    id: str
    deleted: bool = Field(description="false when no rule had that id")


class OutOfStockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out_of_stock: Literal[OUT_OF_STOCK] = Field(
        description="``sink``: after every item in stock; ``hide``: left out"
    )


RulesIn = RuleIn | Annotated[list[RuleIn], Field(max_length=MAX_EVENTS)]


@router.put("/admin/rules", response_model=list[RuleOut])
def put_rules(request: Request, body: RulesIn) -> list[RuleOut]:
    """Add rules, or replace those of the same ids, on every worker. Refused
    with 422: an unknown item, a window that ends before it starts, a pin
    without a position from 1 or without a query or category."""
    service = service_of(request)
    given = body if isinstance(body, list) else [body]
    rules = []
    for i, rule_in in enumerate(given):
        where: list[str | int] = ["body", i] if isinstance(body, list) else ["body"]
        try:
            rule = rule_in.rule()
            check_items([rule], service.catalog_ids)
        except ShopsenseError as e:
            raise invalid(where, str(e)) from None
        rules.append(rule)
    service.changes.catch_up()
    service.put_rules(rules)
    return [_out(rule, service.catalog_ids) for rule in rules]


@router.get("/admin/rules", response_model=RulesOut)
def list_rules(request: Request) -> RulesOut:
    """Every rule, in the order first added, with its status now."""
    service = service_of(request)
    service.changes.catch_up()
    merchandising = service.merchandising
    return RulesOut(
        out_of_stock=merchandising.out_of_stock,
        rules=[_out(rule, service.catalog_ids) for rule in merchandising.rules],
    )


@router.delete("/admin/rules/{rule_id}", response_model=RuleDeleted)
def delete_rule(
    request: Request, rule_id: Annotated[str, PathParam(min_length=1, max_length=64)]
) -> RuleDeleted:
    """Remove a rule on every worker."""
    return RuleDeleted(id=rule_id, deleted=service_of(request).delete_rule(rule_id))


@router.put("/admin/out-of-stock", response_model=OutOfStockIn)
def set_out_of_stock(request: Request, body: OutOfStockIn) -> OutOfStockIn:
    """What becomes of out-of-stock items in search and recommendations, on every worker."""
    service_of(request).set_out_of_stock(body.out_of_stock)
    return body


def _seconds(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _out(rule: Rule, known_items: set[str]) -> RuleOut:
    data = rule.to_dict()
    for name in ("starts_at", "ends_at"):
        if name in data:
            data[name] = datetime.fromtimestamp(data[name], UTC)
    return RuleOut(**data, status=rule.status(time.time(), known_items))
