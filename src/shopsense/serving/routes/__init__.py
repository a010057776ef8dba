"""One router per concern; ``concern_router`` makes each, with what any route
may answer (``ANY_ROUTE``) declared on every route it holds.

The app adds the routers' routes to its own router rather than calling
``include_router``: FastAPI 0.165 keeps an included router as a nested
candidate that every request matches, twice, which cost about 0.1 ms a request
with six routers. Routes made here carry all they need (tags, dependencies,
responses), so adding them flat loses nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from shopsense.serving.limits import ANY_ROUTE, declared
from shopsense.serving.service import admin as admin_key


def concern_router(
    tag: str, responses: dict[int | str, dict[str, Any]] | None = None, **options: Any
) -> APIRouter:
    """An ``APIRouter`` for one concern, tagged ``tag`` in the spec."""
    return APIRouter(tags=[tag], responses={**ANY_ROUTE, **(responses or {})}, **options)


def admin_router(tag: str) -> APIRouter:
    """A router whose routes need the admin key."""
    return concern_router(
        tag,
        responses=declared(
            401, "No valid admin key (Authorization: Bearer KEY), or none configured."
        ),
        dependencies=[Depends(admin_key)],
    )
