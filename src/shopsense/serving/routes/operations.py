"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from shopsense.serving.schemas import Health, Readiness
from shopsense.serving.service import ServiceDep

router = APIRouter(tags=["operations"])


@router.get("/health/live", response_model=Health)
def live() -> Health:
    return Health(status="ok")


@router.get("/health/ready", response_model=Readiness)
def ready(service: ServiceDep) -> Readiness:
    """Ready when the state store answers; says how far this worker is
    behind the change log (0 once it has applied every logged change)."""
    follower = service.changes
    return Readiness(
        status="ready",
        model_version=service.recommender.bundle.version,
        replica=follower.name,
        changes_applied=follower.applied,
        changes_behind=follower.behind(),
    )


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(service: ServiceDep) -> PlainTextResponse:
    """Prometheus text format."""
    body, content_type = service.metrics.render()
    return PlainTextResponse(body, media_type=content_type)
