"""The store analytics page and its figures.

The page (``GET /admin/analytics``) is a shell without a figure in it, served
without the key: a browser cannot send ``Authorization: Bearer`` when it
opens a URL. It asks for the admin key, keeps it in the tab's
``sessionStorage`` (gone when the tab closes, never sent to another origin)
and fetches ``GET /admin/analytics/data`` with it, which needs the key like
every admin route. The page and its script and style carry the storefront's
Content-Security-Policy (no inline script or style, nothing from elsewhere).

The figures are made on a worker thread from what the worker has read of the
log so far (:class:`~shopsense.serving.analytics.LiveAnalytics`, one per
state store): one computation at a time, which calls that came together
share. A call waits for its turn on a plain thread, not on one of the
service's CPU slots, so a queue of dashboards takes no core from requests.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Literal
from weakref import WeakKeyDictionary

import anyio
from fastapi import Query, Request
from fastapi.responses import FileResponse

from shopsense.serving.analytics import (
    DAYS,
    MDE_RANGE,
    RELATIVE_MDE,
    TOP,
    Analytics,
    LiveAnalytics,
)
from shopsense.serving.limits import STOREFRONT_HEADERS
from shopsense.serving.routes import admin_router, concern_router
from shopsense.serving.service import service_of
from shopsense.serving.store import StateStore

PAGE = Path(__file__).parents[1] / "analytics_page"
HEADERS = {name.decode(): value.decode() for name, value in STOREFRONT_HEADERS}

LIVE: WeakKeyDictionary[StateStore, LiveAnalytics] = WeakKeyDictionary()
"""Each state store's figures, kept while the service holds the store."""

page = concern_router("analytics")
"""The page and its files: no figures, no key."""
router = admin_router("analytics")


@page.get("/admin/analytics", include_in_schema=False)
def analytics_page() -> FileResponse:
    """Out of the spec like the storefront: a page, not an API (and FastAPI
    would declare the JSON refusals every route may answer as HTML)."""
    return FileResponse(PAGE / "index.html", headers=HEADERS)


@page.get("/admin/analytics/assets/{name}", include_in_schema=False)
def asset(name: Literal["analytics.js", "analytics.css", "favicon.svg"]) -> FileResponse:
    return FileResponse(PAGE / name, headers=HEADERS)


@router.get("/admin/analytics/data", response_model=Analytics)
async def figures(
    request: Request,
    days: Annotated[int, Query(ge=1, le=366, description="UTC days, today included")] = DAYS,
    top: Annotated[int, Query(ge=1, le=200, description="rows of each query table")] = TOP,
    mde: Annotated[
        float,
        Query(ge=MDE_RANGE[0], le=MDE_RANGE[1], description="relative lift the power is for"),
    ] = RELATIVE_MDE,
) -> Analytics:
    """Per placement and per experiment arm: shoppers, impressions, credited
    clicks, carts, purchases and revenue, CTR, add-to-cart rate, conversion
    and revenue per visitor with 95% intervals (the shopper as the unit),
    overall and by day; every experiment's status, lift with its interval,
    p-values (fixed-horizon and always-valid), sample-ratio check and the
    power reached; for search, the top queries, those that found nothing,
    those never clicked and the click-position curve. Reads what the log
    gained since the last call."""
    service = service_of(request)
    live = LIVE.get(service.store)
    if live is None:
        live = LIVE[service.store] = LiveAnalytics(service.store)
    with anyio.CancelScope(shield=True):  # once acquired, the lock is released below
        await anyio.to_thread.run_sync(live.lock.acquire)
    try:
        return await service.on_a_core(partial(live.figures, days=days, top=top, relative_mde=mde))
    finally:
        live.lock.release()
