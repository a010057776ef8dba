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

from fastapi import APIRouter

from shopsense.serving.limits import ANY_ROUTE


def concern_router(
    tag: str, responses: dict[int | str, dict[str, Any]] | None = None, **options: Any
) -> APIRouter:
    """An ``APIRouter`` for one concern, tagged ``tag`` in the spec."""
    return APIRouter(tags=[tag], responses={**ANY_ROUTE, **(responses or {})}, **options)
