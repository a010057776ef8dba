"""Recommendations for a user or a visitor, and similar items."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Annotated

from fastapi import HTTPException, Query, Request
from fastapi import Path as PathParam

from shopsense.serving.limits import declared
from shopsense.serving.query import QueryParameters
from shopsense.serving.recommendations import Recommendation
from shopsense.serving.routes import concern_router
from shopsense.serving.schemas import (
    Category,
    K,
    RecommendationsResponse,
    SessionId,
    SimilarResponse,
)
from shopsense.serving.service import Service, Shown, service_of

router = concern_router("recommendations")


def recommend(
    service: Service,
    user_id: str | None,
    session_id: str | None,
    k: int,
    category: str | None,
    exclude_seen: bool,
) -> RecommendationsResponse:
    service.changes.catch_up()
    request_id = uuid.uuid4().hex
    rules_applied: list[str] = []

    def rank(version: str | None) -> list[Recommendation]:
        recommender = service.recommender_for(version)
        ranked, applied = recommender.recommend_with_rules(user_id, k, category, exclude_seen)
        rules_applied.extend(r for r in applied if r not in rules_applied)
        return ranked if category is not None else service.with_new_items(user_id, ranked, k)

    shown = service.show("recommendations", user_id or session_id, request_id, rank, _id, k)
    version = _recorded(service, "recommendations", request_id, shown, user_id, session_id)
    return RecommendationsResponse(
        request_id=request_id,
        experiment=shown.experiment,
        arm=shown.arm,
        user_id=user_id,
        mode="online" if shown.values else service.recommender.mode,
        model_version=version,
        items=shown.items,
        rules_applied=rules_applied,
    )


def _id(recommendation: Recommendation) -> str:
    return recommendation.item_id


def _recorded(
    service: Service,
    placement: str,
    request_id: str,
    shown: Shown[Recommendation],
    user_id: str | None,
    session_id: str | None,
) -> str:
    """Queue the list's impression; returns the model version(s) that made it
    (an interleaved list's two, joined by "+")."""
    version = "+".join(shown.values) or service.recommender.bundle.version
    ids = [r.item_id for r in shown.items]
    service.record(placement, request_id, shown, ids, user_id, session_id, version)
    return version


class AnonymousQuery(QueryParameters):
    k: K = 10
    category: Category = None
    session_id: SessionId = None


class UserQuery(AnonymousQuery):
    exclude_seen: bool = True


class SimilarQuery(QueryParameters):
    k: K = 10
    user_id: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="The shopper, for experiments."),
    ] = None
    session_id: SessionId = None


@router.get(
    "/recommendations/{user_id}",
    response_model=RecommendationsResponse,
    openapi_extra=UserQuery.openapi(),
)
async def recommendations_for_user(
    request: Request, user_id: Annotated[str, PathParam(min_length=1, max_length=200)]
) -> RecommendationsResponse:
    """Top-k for a user; a user the model never saw gets their live session's
    neighbours or what is popular (never a 404)."""
    service, asked = service_of(request), UserQuery.of(request)
    work = partial(
        recommend, service, user_id, asked.session_id, asked.k, asked.category, asked.exclude_seen
    )
    return await service.on_a_core(work)


@router.get(
    "/recommendations",
    response_model=RecommendationsResponse,
    openapi_extra=AnonymousQuery.openapi(),
)
async def recommendations_anonymous(request: Request) -> RecommendationsResponse:
    """Top-k for an anonymous visitor: what is popular (within ``category``)."""
    service, asked = service_of(request), AnonymousQuery.of(request)
    work = partial(recommend, service, None, asked.session_id, asked.k, asked.category, False)
    return await service.on_a_core(work)


@router.get(
    "/items/{item_id}/similar",
    response_model=SimilarResponse,
    responses=declared(404, "An item the catalogue does not hold."),
    openapi_extra=SimilarQuery.openapi(),
)
async def similar_items(
    request: Request, item_id: Annotated[str, PathParam(max_length=200)]
) -> SimilarResponse:
    service, asked = service_of(request), SimilarQuery.of(request)
    k, user_id, session_id = asked.k, asked.user_id, asked.session_id
    request_id = uuid.uuid4().hex

    def rank(version: str | None) -> list[Recommendation]:
        return service.similar(version, item_id, k)

    def similar() -> Shown[Recommendation]:
        service.changes.catch_up()
        return service.show("similar", user_id or session_id, request_id, rank, _id, k)

    try:
        shown = await service.on_a_core(similar)
    except KeyError:
        raise HTTPException(404, f"unknown item {item_id!r}") from None
    _recorded(service, "similar", request_id, shown, user_id, session_id)
    return SimilarResponse(
        request_id=request_id,
        experiment=shown.experiment,
        arm=shown.arm,
        item_id=item_id,
        items=shown.items,
    )
