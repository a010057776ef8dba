"""Recommendations for a user or a visitor, and similar items."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Annotated

from fastapi import HTTPException
from fastapi import Path as PathParam

from shopsense.serving.limits import declared
from shopsense.serving.recommendations import Recommendation
from shopsense.serving.routes import concern_router
from shopsense.serving.schemas import Category, K, RecommendationsResponse, SimilarResponse
from shopsense.serving.service import Service, ServiceDep

router = concern_router("recommendations")


def recommend(
    service: Service, user_id: str | None, k: int, category: str | None, exclude_seen: bool
) -> RecommendationsResponse:
    service.changes.catch_up()
    rec = service.recommender
    items = rec.recommend(user_id, k, category, exclude_seen)
    return RecommendationsResponse(
        request_id=uuid.uuid4().hex,
        user_id=user_id,
        mode=rec.mode,
        model_version=rec.bundle.version,
        items=items,
    )


@router.get("/recommendations/{user_id}", response_model=RecommendationsResponse)
async def recommendations_for_user(
    service: ServiceDep,
    user_id: Annotated[str, PathParam(min_length=1, max_length=200)],
    k: K = 10,
    category: Category = None,
    exclude_seen: bool = True,
) -> RecommendationsResponse:
    """Top-k for a user; a user the model never saw gets their live session's
    neighbours or what is popular (never a 404)."""
    return await service.on_a_core(partial(recommend, service, user_id, k, category, exclude_seen))


@router.get("/recommendations", response_model=RecommendationsResponse)
async def recommendations_anonymous(
    service: ServiceDep, k: K = 10, category: Category = None
) -> RecommendationsResponse:
    """Top-k for an anonymous visitor: what is popular (within ``category``)."""
    return await service.on_a_core(partial(recommend, service, None, k, category, False))


@router.get(
    "/items/{item_id}/similar",
    response_model=SimilarResponse,
    responses=declared(404, "An item the catalogue does not hold."),
)
async def similar_items(
    service: ServiceDep, item_id: Annotated[str, PathParam(max_length=200)], k: K = 10
) -> SimilarResponse:
    def similar() -> list[Recommendation]:
        service.changes.catch_up()
        return service.recommender.similar(item_id, k)

    try:
        items = await service.on_a_core(similar)
    except KeyError:
        raise HTTPException(404, f"unknown item {item_id!r}") from None
    return SimilarResponse(request_id=uuid.uuid4().hex, item_id=item_id, items=items)
