"""The HTTP service: recommendations, similar items, search, autocomplete,
event intake, catalog admin, health and metrics, and the storefront page.

``create_app`` puts together the service object (``service``), one router per
concern (``routes``), the request limits (``limits``) and the storefront.
Typed request and response models (``schemas``) make the OpenAPI spec
(``/docs``, ``/openapi.json``) the reference.
"""

from __future__ import annotations

import gc
import os
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from shopsense.errors import ShopsenseError
from shopsense.serving.limits import (
    Limits,
    LimitsAndMetrics,
    listed,
    short_validation_error,
)
from shopsense.serving.replica import follow, remove_copy
from shopsense.serving.routes import (
    admin,
    analytics,
    events,
    experiments,
    operations,
    recommendations,
    rules,
    search,
)
from shopsense.serving.schemas import MAX_EVENTS, invalid
from shopsense.serving.service import Service, ServiceSettings, watch_versions
from shopsense.serving.store import StoreUnavailable

STOREFRONT = Path(__file__).with_name("storefront")
ROUTERS = (
    recommendations.router,
    search.router,
    events.router,
    admin.router,
    admin.guarded,
    experiments.router,
    rules.router,
    analytics.page,
    analytics.router,
    operations.router,
)


def create_app(settings: ServiceSettings) -> FastAPI:
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        stop = threading.Event()
        threading.Thread(target=follow, args=(service.changes, stop), daemon=True).start()
        writer = threading.Thread(target=service.impressions.run, args=(stop,), daemon=True)
        writer.start()
        if settings.watch_seconds > 0:
            threading.Thread(target=watch_versions, args=(service, stop), daemon=True).start()
        yield
        stop.set()
        writer.join(timeout=10)  # the last impressions reach the store before the worker ends
        if service.index_copy is not None:  # uvicorn ends a SIGTERM'd worker past atexit
            remove_copy(service.index_copy)

    app = FastAPI(
        title="shopsense",
        summary="Search and recommendations for an online store.",
        version="1",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(
        LimitsAndMetrics, metrics=service.metrics, limits=settings.limits, batch=MAX_EVENTS
    )
    if settings.cors_origins:  # outermost, so refusals carry the CORS headers too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_exception_handler(RequestValidationError, short_validation_error)

    @app.exception_handler(StoreUnavailable)
    async def store_down(request: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse(
            {"detail": f"{exc}; retry shortly"}, status_code=503, headers={"Retry-After": "1"}
        )

    @app.exception_handler(405)
    async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
        """``Allow`` lists the methods of every route of the path: Starlette
        names only the first route's (GET and POST of one path are two routes)."""
        path = request.url.path
        allowed = sorted({method for route in request.app.routes
                          if isinstance(route, APIRoute) and route.path_regex.match(path)
                          for method in route.methods})  # fmt: skip
        return JSONResponse(
            {"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": ", ".join(allowed)}
        )

    @app.exception_handler(ShopsenseError)
    async def user_error(request: Request, exc: ShopsenseError) -> JSONResponse:
        return JSONResponse({"detail": invalid(["query"], str(exc)).detail}, status_code=422)

    for router in ROUTERS:  # flat: see shopsense.serving.routes
        app.router.routes.extend(router.routes)

    @app.get("/", include_in_schema=False)
    def storefront() -> FileResponse:
        return FileResponse(STOREFRONT / "index.html")

    app.mount("/static", StaticFiles(directory=STOREFRONT), name="static")
    return app


def app_from_environment() -> FastAPI:
    """For ``uvicorn --factory`` with several workers: settings from ``SHOPSENSE_*``."""
    index = os.environ.get("SHOPSENSE_INDEX")
    app = create_app(
        ServiceSettings(
            data=Path(os.environ["SHOPSENSE_DATA"]),
            models=Path(os.environ["SHOPSENSE_MODELS"]),
            index=Path(index) if index else None,
            state=os.environ.get("SHOPSENSE_STATE", ServiceSettings.state),
            mode=os.environ.get("SHOPSENSE_MODE", ServiceSettings.mode),
            api_key=api_key_from_environment(),
            watch_seconds=float(os.environ.get("SHOPSENSE_WATCH_SECONDS", 5.0)),
            limits=Limits.from_environment(),
            cors_origins=listed("SHOPSENSE_CORS_ORIGINS") or (),
            impressions=os.environ.get("SHOPSENSE_IMPRESSIONS", "1") != "0",
        )
    )
    # What was loaded lives as long as the process: kept out of the collector's
    # full passes, which would otherwise stop a worker to walk it (0.2 s with the
    # bench's store) every so often under load.
    gc.freeze()
    return app


def api_key_from_environment() -> str | None:
    """``SHOPSENSE_API_KEY``, or the first line of the file ``SHOPSENSE_API_KEY_FILE``."""
    key = os.environ.get("SHOPSENSE_API_KEY")
    path = os.environ.get("SHOPSENSE_API_KEY_FILE")
    if not key and path:
        try:
            key = Path(path).read_text().strip().splitlines()[0].strip()
        except (OSError, IndexError):
            raise ShopsenseError(f"cannot read an API key from {path}") from None
    return key or None
