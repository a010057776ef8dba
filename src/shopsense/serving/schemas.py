"""The service's request and response models: the OpenAPI spec is made from
them, so they say exactly what the service takes and answers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import HTTPException, Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from shopsense.data.schema import EVENT_TYPES
from shopsense.search.analysis import MAX_QUERY_CHARS
from shopsense.search.engine import Hit
from shopsense.serving.experiments import KINDS, MAX_ATTRIBUTION_HOURS, METRICS, PLACEMENTS
from shopsense.serving.recommendations import Recommendation

MAX_EVENTS = 1000
MAX_K = 100
Text = Annotated[str, Field(min_length=1, max_length=200)]
K = Annotated[int, Query(ge=1, le=MAX_K)]
SessionId = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=200,
        description="A visitor's session: assigns an anonymous shopper an experiment arm.",
    ),
]
Category = Annotated[str | None, Query(max_length=200)]
ITEM_EVENT_TYPES = tuple(t for t in EVENT_TYPES if t != "search")


class Experimented(BaseModel):
    """What every response that shows a list says about how it was made: send
    ``request_id`` back with the events that follow it (clicks are credited
    to this list)."""

    request_id: str
    experiment: str | None = Field(None, description="the experiment that chose the list")
    arm: str | None = Field(
        None, description="the experiment's arm (``interleaved``: a team draft of two arms)"
    )


class RecommendationsResponse(Experimented):
    user_id: str | None
    mode: str
    model_version: str
    items: list[Recommendation]
    rules_applied: list[str] = Field(
        [], description="the merchandising rules that changed this list (their ids)"
    )


class SimilarResponse(Experimented):
    item_id: str
    items: list[Recommendation]


class FacetValue(BaseModel):
    value: str
    count: int


class ReadingOut(BaseModel):
    """One thing a query was read for."""

    model_config = ConfigDict(from_attributes=True)

    kind: str = Field(description="price, brand, category or attribute")
    field: str = Field(description="the field it constrains (an attribute's name)")
    values: list[str] = Field(description="the brands, category paths or attribute values read")
    price_min: float | None
    price_max: float | None
    words: str = Field(description="the words of the query it was read from")
    applied: str = Field(description="filter, boost or off (the index's setting)")


class UnderstoodOut(BaseModel):
    """What the query was read for; send ``ignore`` with a reading's kind to
    search without it, or ``understand=false`` for none."""

    model_config = ConfigDict(from_attributes=True)

    text: str = Field(description="the text matched: the query less the words read as filters")
    readings: list[ReadingOut]


class SearchResponse(Experimented):
    """A page of the items the query matches (``total`` of them: enough of its
    words, or near enough in meaning); none and ``total`` 0 when it matches
    nothing, with ``did_you_mean`` where a correction exists and ``fallback``."""

    query: str
    hits: list[Hit]
    total: int
    page: int
    per_page: int
    facets: dict[str, list[FacetValue]]
    did_you_mean: str | None
    took_ms: float
    from_cache: bool = Field(
        description="answered from the cache of recent anonymous searches (dropped on any "
        "catalogue change)"
    )
    fallback: list[Hit] = Field(
        description="when the query matched nothing (total 0, no hits): popular items "
        "within the filters, for a 'no results for …' page; empty otherwise"
    )
    understood: UnderstoodOut
    rules_applied: list[str] = Field(
        description="the merchandising rules that changed this result (their ids)"
    )


class SuggestionOut(BaseModel):
    text: str
    kind: str
    item_id: str | None
    score: float


def _whole(value: Any) -> Any:
    """``949.0`` as ``949``: JSON Schema counts it an integer, and so does the
    strict validation of the events."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class _Event(BaseModel):
    """What every behaviour event has. ``event_id`` is the idempotency key: send
    the same one on a retry and the event is counted once. Strict types, as the
    spec says: ``true`` is not a timestamp."""

    model_config = ConfigDict(strict=True)

    user_id: Text
    timestamp: Annotated[int, Field(ge=0, le=2**42), BeforeValidator(_whole)] | None = Field(
        None, description="Seconds since 1970."
    )
    session_id: Text | None = None
    request_id: Text | None = Field(
        None, description="The response this event follows (its clicks are credited to it)."
    )
    event_id: Text | None = None
    value: float | None = Field(
        None, ge=0, le=1e9, description="What a purchase brought in (price × quantity)."
    )


class ItemEvent(_Event):
    """A view, click, cart, fav or purchase of a catalogue item."""

    type: Literal[ITEM_EVENT_TYPES]
    item_id: Text
    query: Annotated[str, Field(max_length=MAX_QUERY_CHARS)] | None = None


class SearchEvent(_Event):
    """A search, by its query (and the item it was about, if any)."""

    type: Literal["search"]
    query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)]
    item_id: Text | None = None


EventIn = Annotated[ItemEvent | SearchEvent, Field(discriminator="type")]
"""An event; its ``type`` says which fields it needs, in the spec as in validation."""
EventsIn = EventIn | Annotated[list[EventIn], Field(max_length=MAX_EVENTS)]
Attribute = Annotated[str, Field(pattern=r"^[^:]+:[\s\S]+$")]


class EventsAccepted(BaseModel):
    received: int
    accepted: int
    duplicates: int


class ItemIn(BaseModel):
    model_config = ConfigDict(strict=True)  # as the spec says: ``false`` is not a price

    item_id: Text
    title: Annotated[str, Field(min_length=1, max_length=1000)]
    description: Annotated[str, Field(max_length=20_000)] = ""
    category: Annotated[str, Field(max_length=500)] = ""
    brand: Annotated[str, Field(max_length=200)] = ""
    price: float | None = Field(None, ge=0, le=1e9)
    attributes: dict[str, str] = Field(default_factory=dict)
    in_stock: bool = Field(
        True, description="false: hidden or sunk in search and recommendations (by setting)"
    )


class ItemsUpserted(BaseModel):
    upserted: int


class UserDeleted(BaseModel):
    user_id: str
    events_deleted: int = Field(description="the user's events removed from the state store")
    files: dict[str, int] = Field(
        description="rows removed from each file (dataset, search profiles, batch lists)"
    )


class Reloaded(BaseModel):
    model_version: str


class ItemDeleted(BaseModel):
    item_id: str
    deleted: bool = Field(description="false when no such item was in the catalogue")


class ExperimentIn(BaseModel):
    model_config = ConfigDict(strict=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    placement: Literal[PLACEMENTS]
    arms: Annotated[dict[Text, Text], Field(min_length=2, max_length=10)] = Field(
        description="arm name → model version (search: personalized or unpersonalized); "
        "the first arm is the control"
    )
    shares: Annotated[list[Annotated[float, Field(gt=0, le=1)]], Field(max_length=10)] | None = (
        Field(None, description="each arm's share of shoppers, in the arms' order (default: equal)")
    )
    metric: Literal[METRICS] = "ctr"
    guardrails: Annotated[list[Literal[METRICS]], Field(max_length=3)] = []
    kind: Literal[KINDS] = "ab"
    attribution_hours: Annotated[float, Field(ge=0.001, le=MAX_ATTRIBUTION_HOURS)] = 24.0


class ExperimentOut(BaseModel):
    name: str
    placement: str
    arms: dict[str, str]
    shares: dict[str, float]
    metric: str
    guardrails: list[str]
    kind: str
    salt: str
    status: str
    started: int
    stopped: int | None
    winner: str | None
    attribution_seconds: int


class PromoteIn(BaseModel):
    arm: Text | None = Field(None, description="the arm to serve (default: the one that won)")


class Health(BaseModel):
    status: str
    model_version: str | None = None


class Readiness(Health):
    replica: str = Field(description="the worker that answered (host:pid:tag)")
    changes_applied: int = Field(description="change log entries this worker has applied")
    changes_behind: int = Field(description="logged changes this worker has yet to apply")


def invalid(loc: list[str | int], message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, naming the field."""
    return HTTPException(422, [{"loc": loc, "msg": message, "type": "value_error"}])
