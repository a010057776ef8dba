"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.responses import PlainTextResponse

from shopsense.serving.limits import declared
from shopsense.serving.routes import concern_router
from shopsense.serving.schemas import Health, Readiness
from shopsense.serving.service import service_of

router = concern_router("operations")


@router.get("/health/live", response_model=Health)
def live() -> Health:
    return Health(status="ok")


@router.get(
    "/health/ready",
    response_model=Readiness,
    responses=declared(503, "Not ready: the state store is down, or a change cannot be applied."),
)
def ready(request: Request) -> Readiness:
    """Ready when the state store answers and every logged change applies
    here; says how far this worker is behind the change log (0 once it has
    applied every logged change). 503 with the reason otherwise."""
    service = service_of(request)
    follower = service.changes
    if follower.problem is not None:
        raise HTTPException(503, follower.problem, headers={"Retry-After": "1"})
    return Readiness(
        status="ready",
        model_version=service.recommender.bundle.version,
        replica=follower.name,
        changes_applied=follower.applied,
        changes_behind=follower.behind(),
    )


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text format."""
    service = service_of(request)
    body, content_type = service.metrics.render()
    return PlainTextResponse(body, media_type=content_type)
