"""Search and autocomplete."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pandas as pd
from fastapi import Query, Request
from pydantic import BeforeValidator

from shopsense.search.analysis import MAX_QUERY_CHARS
from shopsense.search.query.log import zero_results
from shopsense.search.query.present import SORTS
from shopsense.search.query.understand import KINDS
from shopsense.serving.limits import declared
from shopsense.serving.query import QueryParameters
from shopsense.serving.routes import concern_router
from shopsense.serving.schemas import Attribute, SearchResponse, SessionId, SuggestionOut
from shopsense.serving.service import Service, service_of
from shopsense.serving.store import Event

if TYPE_CHECKING:
    from shopsense.search.engine import Hit, SearchEngine, SearchResults

router = concern_router("search")
NO_INDEX = declared(404, "This service has no search index.")


def _each_comma_separated(value: Any) -> Any:
    """``ignore=price,brand`` as ``ignore=price&ignore=brand`` (an empty value
    stays one, and is refused)."""
    if isinstance(value, list):
        return [part for item in value for part in str(item).split(",")]
    return value


class SearchQuery(QueryParameters):
    q: Annotated[str, Query(max_length=MAX_QUERY_CHARS)] = ""
    category: Annotated[list[str], Query(max_length=20)] = []  # noqa: RUF012 (pydantic copies)
    brand: Annotated[list[str], Query(max_length=20)] = []  # noqa: RUF012
    price_min: Annotated[float | None, Query(ge=0)] = None
    price_max: Annotated[
        float | None, Query(ge=0, description="At least price_min (422 otherwise).")
    ] = None
    sort: Literal[SORTS] = "relevance"
    page: Annotated[int, Query(ge=1, le=1000)] = 1
    per_page: Annotated[int, Query(ge=1, le=100)] = 10
    attribute: Annotated[
        list[Attribute], Query(max_length=20, description="NAME:VALUE, e.g. color:red")
    ] = []  # noqa: RUF012
    user_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None
    session_id: SessionId = None
    understand: Annotated[
        bool,
        Query(description="Read the query for a price, brands, categories and attributes."),
    ] = True
    ignore: Annotated[
        list[Literal[KINDS]],
        BeforeValidator(_each_comma_separated),
        Query(
            max_length=len(KINDS),
            description="Kinds of reading to leave out (repeated, or comma-separated).",
        ),
    ] = []  # noqa: RUF012

    def filters(self) -> dict[str, Any]:
        """The filters, as the engine takes them (it refuses price_min above
        price_max, a 422 as price_max's description says)."""
        attributes: dict[str, list[str]] = {}
        for pair in self.attribute:  # NAME:VALUE, as Attribute's pattern checked
            name, _, value = pair.partition(":")
            attributes.setdefault(name, []).append(value)
        return {"category": self.category, "brand": self.brand, "attributes": attributes,
                "price_min": self.price_min, "price_max": self.price_max}  # fmt: skip


@router.get(
    "/search",
    response_model=SearchResponse,
    responses=NO_INDEX,
    openapi_extra=SearchQuery.openapi(),
)
async def search(request: Request) -> SearchResponse:
    """Hybrid search with filters (values of one field OR-ed, fields AND-ed),
    disjunctive facets, sorting and pages; personalized with ``user_id``; the
    query read for a price, brands, categories and attributes (``understood``)
    and ordered by the store's merchandising rules (``rules_applied``)."""
    service, asked = service_of(request), SearchQuery.of(request)
    engine = service.search_engine()
    return await service.on_a_core(partial(personal_search, service, engine, asked))


def personal_search(service: Service, engine: SearchEngine, asked: SearchQuery) -> SearchResponse:
    service.changes.catch_up()
    q, user_id, session_id, per_page = asked.q, asked.user_id, asked.session_id, asked.per_page
    session = None
    if user_id is not None:  # the state store owns the live session; search reads it
        steps = service.store.recent(user_id)
        session = pd.DataFrame([asdict(s) for s in steps]) if steps else None
    answered: list[SearchResults] = []

    def rank(setting: str | None) -> list[Hit]:
        chosen = setting or service.search_setting
        personalization = 0.0 if chosen == "unpersonalized" else None
        found = engine.search(q, asked.filters(), asked.sort, asked.page, per_page,
                              user_id=user_id, personalization=personalization, session=session,
                              understand=asked.understand, ignore=asked.ignore)  # fmt: skip
        answered.append(found)
        return found.hits

    request_id = uuid.uuid4().hex
    shown = service.show("search", user_id or session_id, request_id, rank, _id, per_page)
    results = answered[0]
    service.metrics.search_answered(results.from_cache, zero_results(results))
    ids = [h.item_id for h in shown.items]
    query = q.strip()
    service.record("search", request_id, shown, ids, user_id, session_id, None, query)
    if user_id is not None and query:
        logged = Event(uuid.uuid4().hex, user_id, "search", int(time.time()), query=query,
                       request_id=request_id)  # fmt: skip
        service.store.append_events([logged])
    fields = {k: v for k, v in vars(results).items() if k not in ("hits", "request_id")}
    return SearchResponse(
        **fields, request_id=request_id, experiment=shown.experiment, arm=shown.arm,
        hits=shown.items,
    )  # fmt: skip


def _id(hit: Hit) -> str:
    return hit.item_id


class SuggestQuery(QueryParameters):
    q: Annotated[str, Query(max_length=MAX_QUERY_CHARS)]
    k: Annotated[int, Query(ge=1, le=20)] = 8


@router.get(
    "/suggest",
    response_model=list[SuggestionOut],
    responses=NO_INDEX,
    openapi_extra=SuggestQuery.openapi(),
)
def suggest(request: Request) -> list[SuggestionOut]:
    service, asked = service_of(request), SuggestQuery.of(request)
    engine = service.search_engine()
    service.changes.catch_up()
    return [SuggestionOut(**asdict(s)) for s in engine.suggest(asked.q, asked.k)]
