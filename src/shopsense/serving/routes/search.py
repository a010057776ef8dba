"""Search and autocomplete."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pandas as pd
from fastapi import Query, Request

from shopsense.search.analysis import MAX_QUERY_CHARS
from shopsense.search.query.log import zero_results
from shopsense.serving.limits import declared
from shopsense.serving.routes import concern_router
from shopsense.serving.schemas import Attribute, SearchResponse, SessionId, SuggestionOut
from shopsense.serving.service import Service, service_of
from shopsense.serving.store import Event

if TYPE_CHECKING:
    from shopsense.search.engine import Hit, SearchEngine, SearchResults

router = concern_router("search")
NO_INDEX = declared(404, "This service has no search index.")


@router.get("/search", response_model=SearchResponse, responses=NO_INDEX)
async def search(
    request: Request,
    q: Annotated[str, Query(max_length=MAX_QUERY_CHARS)] = "",
    category: Annotated[list[str], Query(max_length=20)] = [],  # noqa: B006 (FastAPI idiom)
    brand: Annotated[list[str], Query(max_length=20)] = [],  # noqa: B006
    price_min: Annotated[float | None, Query(ge=0)] = None,
    price_max: Annotated[
        float | None, Query(ge=0, description="At least price_min (422 otherwise).")
    ] = None,
    sort: Literal["relevance", "price_asc", "price_desc", "popularity", "newest"] = "relevance",
    page: Annotated[int, Query(ge=1, le=1000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 10,
    attribute: Annotated[
        list[Attribute], Query(max_length=20, description="NAME:VALUE, e.g. color:red")
    ] = [],  # noqa: B006
    user_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    session_id: SessionId = None,
) -> SearchResponse:
    """Hybrid search with filters (values of one field OR-ed, fields AND-ed),
    disjunctive facets, sorting and pages; personalized with ``user_id``."""
    service = service_of(request)
    attributes: dict[str, list[str]] = {}
    for pair in attribute:  # NAME:VALUE, as Attribute's pattern checked
        name, _, value = pair.partition(":")
        attributes.setdefault(name, []).append(value)
    filters: dict[str, Any] = {"category": category, "brand": brand, "attributes": attributes}
    filters.update(price_min=price_min, price_max=price_max)
    engine = service.search_engine()
    work = partial(
        personal_search, service, engine, q, filters, sort, page, per_page, user_id, session_id
    )
    return await service.on_a_core(work)


def personal_search(
    service: Service,
    engine: SearchEngine,
    q: str,
    filters: dict[str, Any],
    sort: str,
    page: int,
    per_page: int,
    user_id: str | None,
    session_id: str | None,
) -> SearchResponse:
    service.changes.catch_up()
    session = None
    if user_id is not None:  # the state store owns the live session; search reads it
        steps = service.store.recent(user_id)
        session = pd.DataFrame([asdict(s) for s in steps]) if steps else None
    answered: list[SearchResults] = []

    def rank(setting: str | None) -> list[Hit]:
        chosen = setting or service.search_setting
        personalization = 0.0 if chosen == "unpersonalized" else None
        found = engine.search(q, filters, sort, page, per_page, user_id=user_id,
                              personalization=personalization, session=session)  # fmt: skip
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


@router.get("/suggest", response_model=list[SuggestionOut], responses=NO_INDEX)
def suggest(
    request: Request,
    q: Annotated[str, Query(max_length=MAX_QUERY_CHARS)],
    k: Annotated[int, Query(ge=1, le=20)] = 8,
) -> list[SuggestionOut]:
    service = service_of(request)
    engine = service.search_engine()
    service.changes.catch_up()
    return [SuggestionOut(**asdict(s)) for s in engine.suggest(q, k)]
