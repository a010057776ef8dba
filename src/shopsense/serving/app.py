"""The HTTP service: recommendations, similar items, search, autocomplete,
event intake, catalog admin, health and metrics, and the storefront page.

Typed request and response models make the OpenAPI spec (``/docs``,
``/openapi.json``) the reference. A request reads one model bundle; a reload
(``POST /admin/reload``, or a new version appearing in the registry folder)
builds the next bundle aside and swaps the reference, so no request fails
during the swap.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import anyio
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from shopsense.compute import usable_cores
from shopsense.data.dataset import Dataset
from shopsense.errors import ShopsenseError
from shopsense.search.analysis import MAX_QUERY_CHARS
from shopsense.search.engine import Hit
from shopsense.serving.erasure import erase_user_files
from shopsense.serving.limits import (
    ANY_ROUTE,
    Limits,
    LimitsAndMetrics,
    declared,
    listed,
    short_validation_error,
)
from shopsense.serving.metrics import Metrics
from shopsense.serving.recommendations import (
    ModelBundle,
    Recommendation,
    RecommendationService,
    model_versions,
)
from shopsense.serving.replica import ChangeFollower, follow, private_index_copy
from shopsense.serving.store import Change, Event, StoreUnavailable, open_store

LOG = logging.getLogger("shopsense.serving")
STOREFRONT = Path(__file__).with_name("storefront")
MAX_EVENTS = 1000
MAX_K = 100
T = TypeVar("T")
Text = Annotated[str, Field(min_length=1, max_length=200)]
K = Annotated[int, Query(ge=1, le=MAX_K)]
Category = Annotated[str | None, Query(max_length=200)]
BEARER = HTTPBearer(auto_error=False)


@dataclass
class ServiceSettings:
    data: Path
    models: Path
    index: Path | None = None
    state: str = "shopsense-state/state.db"
    mode: str = "hybrid"
    api_key: str | None = None
    watch_seconds: float = 5.0
    limits: Limits = field(default_factory=Limits)
    cors_origins: tuple[str, ...] = ()
    """Browser origins allowed to call the API (CORS); none by default."""


# ----------------------------------------------------------------- schemas
class RecommendationsResponse(BaseModel):
    request_id: str
    user_id: str | None
    mode: str
    model_version: str
    items: list[Recommendation]


class SimilarResponse(BaseModel):
    request_id: str
    item_id: str
    items: list[Recommendation]


class FacetValue(BaseModel):
    value: str
    count: int


class SearchResponse(BaseModel):
    request_id: str
    query: str
    hits: list[Hit]
    total: int
    page: int
    per_page: int
    facets: dict[str, list[FacetValue]]
    did_you_mean: str | None
    took_ms: float
    from_cache: bool = Field(
        description="answered from the cache of recent anonymous searches (dropped on any "
        "catalogue change)"
    )


class SuggestionOut(BaseModel):
    text: str
    kind: str
    item_id: str | None
    score: float


def _whole(value: Any) -> Any:
    """``949.0`` as ``949``: JSON Schema counts it an integer, and so does the
    strict validation of the events."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class _Event(BaseModel):
    """What every behaviour event has. ``event_id`` is the idempotency key: send
    the same one on a retry and the event is counted once. Strict types, as the
    spec says: ``true`` is not a timestamp."""

    model_config = ConfigDict(strict=True)

    user_id: Text
    timestamp: Annotated[int, Field(ge=0, le=2**42), BeforeValidator(_whole)] | None = Field(
        None, description="Seconds since 1970."
    )
    session_id: Text | None = None
    request_id: Text | None = Field(None, description="The response this event follows.")
    event_id: Text | None = None


class ItemEvent(_Event):
    """A view, click, cart, fav or purchase of a catalogue item."""

    type: Literal["view", "click", "cart", "fav", "purchase"]
    item_id: Text
    query: Annotated[str, Field(max_length=MAX_QUERY_CHARS)] | None = None


class SearchEvent(_Event):
    """A search, by its query (and the item it was about, if any)."""

    type: Literal["search"]
    query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)]
    item_id: Text | None = None


EventIn = Annotated[ItemEvent | SearchEvent, Field(discriminator="type")]
"""An event; its ``type`` says which fields it needs, in the spec as in validation."""
EventsIn = EventIn | Annotated[list[EventIn], Field(max_length=MAX_EVENTS)]
ADMIN_ONLY = declared(401, "No valid admin key (Authorization: Bearer KEY), or none configured.")
NO_INDEX = declared(404, "This service has no search index.")
Attribute = Annotated[str, Field(pattern=r"^[^:]+:[\s\S]+$")]


class EventsAccepted(BaseModel):
    received: int
    accepted: int
    duplicates: int


class ItemIn(BaseModel):
    model_config = ConfigDict(strict=True)  # as the spec says: ``false`` is not a price

    item_id: Text
    title: Annotated[str, Field(min_length=1, max_length=1000)]
    description: Annotated[str, Field(max_length=20_000)] = ""
    category: Annotated[str, Field(max_length=500)] = ""
    brand: Annotated[str, Field(max_length=200)] = ""
    price: float | None = Field(None, ge=0, le=1e9)
    attributes: dict[str, str] = Field(default_factory=dict)


class ItemsUpserted(BaseModel):
    upserted: int


class UserDeleted(BaseModel):
    user_id: str
    events_deleted: int = Field(description="the user's events removed from the state store")
    files: dict[str, int] = Field(
        description="rows removed from each file (dataset, search profiles, batch lists)"
    )


class Reloaded(BaseModel):
    model_version: str


class ItemDeleted(BaseModel):
    item_id: str
    deleted: bool = Field(description="false when no such item was in the catalogue")


class Health(BaseModel):
    status: str
    model_version: str | None = None


class Readiness(Health):
    replica: str = Field(description="the worker that answered (host:pid:tag)")
    changes_applied: int = Field(description="change log entries this worker has applied")
    changes_behind: int = Field(description="logged changes this worker has yet to apply")


def invalid(loc: list[str | int], message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, naming the field."""
    return HTTPException(422, [{"loc": loc, "msg": message, "type": "value_error"}])


# ----------------------------------------------------------------- state
class Service:
    """Everything a request reads; ``recommender`` is replaced whole on reload.

    Catalogue changes, user deletions and reloads reach this process only
    through the change log (``replica``): a route appends an entry and catches
    up, and so does every other worker sharing the store. The search index is
    this process's own copy of ``settings.index``."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.store = open_store(settings.state)
        self.dataset = Dataset.load(settings.data)
        self.withdrawn_items: set[str] = set()
        self.deleted_users: set[str] = set()
        self.recommender = self._recommender(self._newest())
        self.engine = None
        if settings.index is not None:
            from shopsense.search.engine import SearchEngine
            from shopsense.search.semantic import query_threads

            query_threads()
            self.engine = SearchEngine(private_index_copy(settings.index))
            self.engine.settings.embedding_cache = None  # the copy's own (see private_index_copy)
            self.engine.warm()
        self._reload_lock = threading.Lock()
        self.catalog_ids = set(self.dataset.items["item_id"].astype(str))
        self.metrics = Metrics()
        self.changes = ChangeFollower(self.store, self._apply)
        self.changes.catch_up()  # a new worker replays the log before its first answer

    def _newest(self) -> ModelBundle:
        return ModelBundle(model_versions(self.settings.models)[-1], self.dataset)

    def _recommender(self, bundle: ModelBundle) -> RecommendationService:
        return RecommendationService(
            bundle, self.store, self.settings.mode, self.withdrawn_items, self.deleted_users
        )

    def reload(self) -> str:
        """Load the newest version aside, then swap it in (one reference assignment);
        nothing to do when it is the one served."""
        with self._reload_lock:
            if self.newest_version() == self.recommender.bundle.version:
                return self.recommender.bundle.version
            bundle = self._newest()
            self.recommender = self._recommender(bundle)
            return bundle.version

    def newest_version(self) -> str:
        return model_versions(self.settings.models)[-1].name

    # ------------------------------------------------------------- the change log
    def change(self, kind: str, payload: Any) -> None:
        """Log a change and apply it here before returning (read-your-writes)."""
        self.store.append_change(kind, payload)
        self.changes.catch_up()

    def _apply(self, changes: list[Change]) -> None:
        """Apply log entries in order. A run of catalogue changes is applied as
        one upsert and one delete of each id's last version, so a worker that
        replays a long log embeds and indexes each item once."""
        items: dict[str, dict[str, Any] | None] = {}
        for change in changes:
            if change.kind == "items.upsert":
                items.update((item["item_id"], item) for item in change.payload)
            elif change.kind == "items.delete":
                items.update((item_id, None) for item_id in change.payload)
            else:
                self._apply_items(items)
                items = {}
                if change.kind == "users.delete":
                    self._forget_user(change.payload)
                elif change.kind == "model.reload":
                    self.reload()
        self._apply_items(items)

    def _apply_items(self, items: dict[str, dict[str, Any] | None]) -> None:
        upserted = [item for item in items.values() if item is not None]
        deleted = [item_id for item_id, item in items.items() if item is None]
        if self.engine is not None:
            if upserted:
                self.engine.upsert(pd.DataFrame(upserted))
            if deleted:
                self.engine.delete(deleted)
        ids = [item["item_id"] for item in upserted]
        self.catalog_ids.update(ids)
        self.withdrawn_items.difference_update(ids)
        self.catalog_ids.difference_update(deleted)
        self.withdrawn_items.update(deleted)

    def _forget_user(self, user_id: str) -> None:
        self.deleted_users.add(user_id)
        if self.engine is not None:
            self.engine.erase_user(user_id)
        self.erase_files(user_id)

    def erase_files(self, user_id: str) -> dict[str, int]:
        """Erase the user from the files this machine serves from (``erase_user_files``)."""
        settings = self.settings
        user = self.recommender.bundle.user(user_id)
        return erase_user_files(user_id, user, settings.data, settings.models, settings.index)


class ThreadSlots:
    """A cap on how many worker threads run requests at once, per event loop (a
    limiter belongs to the loop it was made in; tests run several)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._limiters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def limiter(self) -> anyio.CapacityLimiter:
        loop = asyncio.get_running_loop()
        found = self._limiters.get(loop)
        if found is None:
            found = self._limiters[loop] = anyio.CapacityLimiter(self.size)
        return found


def _watch(service: Service, stop: threading.Event) -> None:
    """Swap in a new model version when one appears in the registry folder."""
    while not stop.wait(service.settings.watch_seconds):
        try:
            if service.newest_version() != service.recommender.bundle.version:
                service.reload()
        except Exception as e:  # a version still being written, or a broken one
            LOG.warning(
                "model reload failed, keeping %s: %s", service.recommender.bundle.version, e
            )


def create_app(settings: ServiceSettings) -> FastAPI:
    service = Service(settings)
    cpu_slots = ThreadSlots(usable_cores())

    async def on_a_core(work: Callable[[], T]) -> T:
        """Run ``work`` (a search, a ranking) on a worker thread, at most one per
        core at once: more CPU work at once than cores only trades the GIL."""
        return await anyio.to_thread.run_sync(work, limiter=cpu_slots.limiter())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        stop = threading.Event()
        threading.Thread(target=follow, args=(service.changes, stop), daemon=True).start()
        if settings.watch_seconds > 0:
            threading.Thread(target=_watch, args=(service, stop), daemon=True).start()
        yield
        stop.set()

    app = FastAPI(
        title="shopsense",
        summary="Search and recommendations for an online store.",
        version="1",
        lifespan=lifespan,
        responses=ANY_ROUTE,
    )
    app.state.service = service

    def admin(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> None:
        key = settings.api_key
        if key is None:
            raise HTTPException(401, "the admin API is off: no API key is configured")
        given = b"" if credentials is None else credentials.credentials.encode()
        if not secrets.compare_digest(given, key.encode()):  # constant time: no timing oracle
            raise HTTPException(401, "a valid API key is required (Authorization: Bearer KEY)")

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

    @app.exception_handler(ShopsenseError)
    async def user_error(request: Request, exc: ShopsenseError) -> JSONResponse:
        return JSONResponse({"detail": invalid(["query"], str(exc)).detail}, status_code=422)

    # ------------------------------------------------------------- recommendations
    def recommend(
        user_id: str | None, k: int, category: str | None, exclude_seen: bool
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

    @app.get("/recommendations/{user_id}", response_model=RecommendationsResponse)
    async def recommendations_for_user(
        user_id: Annotated[str, PathParam(min_length=1, max_length=200)],
        k: K = 10,
        category: Category = None,
        exclude_seen: bool = True,
    ) -> RecommendationsResponse:
        """Top-k for a user; a user the model never saw gets their live session's
        neighbours or what is popular (never a 404)."""
        return await on_a_core(partial(recommend, user_id, k, category, exclude_seen))

    @app.get("/recommendations", response_model=RecommendationsResponse)
    async def recommendations_anonymous(
        k: K = 10, category: Category = None
    ) -> RecommendationsResponse:
        """Top-k for an anonymous visitor: what is popular (within ``category``)."""
        return await on_a_core(partial(recommend, None, k, category, False))

    @app.get(
        "/items/{item_id}/similar",
        response_model=SimilarResponse,
        responses=declared(404, "An item the catalogue does not hold."),
    )
    async def similar_items(
        item_id: Annotated[str, PathParam(max_length=200)], k: K = 10
    ) -> SimilarResponse:
        def similar() -> list[Recommendation]:
            service.changes.catch_up()
            return service.recommender.similar(item_id, k)

        try:
            items = await on_a_core(similar)
        except KeyError:
            raise HTTPException(404, f"unknown item {item_id!r}") from None
        return SimilarResponse(
            request_id=uuid.uuid4().hex,
            item_id=item_id,
            items=items,
        )

    # ------------------------------------------------------------- search
    def engine():
        if service.engine is None:
            raise HTTPException(404, "this service has no search index (start it with --index)")
        return service.engine

    @app.get("/search", response_model=SearchResponse, responses=NO_INDEX)
    async def search(
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
    ) -> SearchResponse:
        """Hybrid search with filters (values of one field OR-ed, fields AND-ed),
        disjunctive facets, sorting and pages; personalized with ``user_id``."""
        attributes: dict[str, list[str]] = {}
        for pair in attribute:
            name, sep, value = pair.partition(":")
            if not sep or not name or not value:
                raise invalid(["query", "attribute"], f"{pair!r} is not NAME:VALUE")
            attributes.setdefault(name, []).append(value)
        filters: dict[str, Any] = {"category": category, "brand": brand, "attributes": attributes}
        filters.update(price_min=price_min, price_max=price_max)
        return await on_a_core(partial(personal_search, q, filters, sort, page, per_page, user_id))

    def personal_search(
        q: str, filters: dict[str, Any], sort: str, page: int, per_page: int, user_id: str | None
    ) -> SearchResponse:
        found = engine()
        service.changes.catch_up()
        session = None
        if user_id is not None:  # the state store owns the live session; search reads it
            steps = service.store.recent(user_id)
            session = pd.DataFrame([asdict(s) for s in steps]) if steps else None
        results = found.search(q, filters, sort, page, per_page, user_id=user_id, session=session)
        service.metrics.search_answered(results.from_cache)
        if user_id is not None and q.strip():
            service.store.append_events(
                [
                    Event(
                        uuid.uuid4().hex,
                        user_id,
                        "search",
                        int(time.time()),
                        query=q.strip(),
                        request_id=results.request_id,
                    )
                ]
            )
        return SearchResponse(
            **{k: v for k, v in vars(results).items() if k != "hits"}, hits=results.hits
        )

    @app.get("/suggest", response_model=list[SuggestionOut], responses=NO_INDEX)
    def suggest(
        q: Annotated[str, Query(max_length=MAX_QUERY_CHARS)],
        k: Annotated[int, Query(ge=1, le=20)] = 8,
    ) -> list[SuggestionOut]:
        found = engine()
        service.changes.catch_up()
        return [SuggestionOut(**asdict(s)) for s in found.suggest(q, k)]

    # ------------------------------------------------------------- events
    @app.post(
        "/events",
        response_model=EventsAccepted,
        responses=declared(404, "An event names an item the catalogue does not hold."),
    )
    def post_events(body: EventsIn) -> EventsAccepted:
        """One event or a batch of up to 1,000, stored durably before the answer."""
        events = body if isinstance(body, list) else [body]
        service.changes.catch_up()  # an item added on another worker is known here
        now = int(time.time())
        accepted = []
        for n, e in enumerate(events):
            if e.item_id is not None and e.item_id not in service.catalog_ids:
                which = f"event {n}: " if isinstance(body, list) else ""
                raise HTTPException(404, f"{which}item_id {e.item_id!r} is not in the catalog")
            accepted.append(
                Event(
                    e.event_id or uuid.uuid4().hex,
                    e.user_id,
                    e.type,
                    now if e.timestamp is None else e.timestamp,
                    e.item_id,
                    e.session_id,
                    e.query,
                    e.request_id,
                )
            )
        new = service.store.append_events(accepted)
        service.metrics.events_accepted(new)
        return EventsAccepted(received=len(events), accepted=new, duplicates=len(events) - new)

    # ------------------------------------------------------------- admin
    @app.put(
        "/items", response_model=ItemsUpserted, dependencies=[Depends(admin)], responses=ADMIN_ONLY
    )
    def upsert_items(items: Annotated[list[ItemIn], Field(max_length=MAX_EVENTS)]) -> ItemsUpserted:
        """Add or replace catalog items (searchable at once; recommendable after the
        next model version)."""
        if items:
            service.change("items.upsert", [i.model_dump() for i in items])
        return ItemsUpserted(upserted=len(items))

    @app.delete(
        "/items/{item_id}",
        response_model=ItemDeleted,
        dependencies=[Depends(admin)],
        responses=ADMIN_ONLY,
    )
    def delete_item(
        item_id: Annotated[str, PathParam(min_length=1, max_length=200)],
    ) -> ItemDeleted:
        """Withdraw an item: no longer found, suggested or recommended, on every worker."""
        service.changes.catch_up()
        known = item_id in service.catalog_ids
        if known:
            service.change("items.delete", [item_id])
        return ItemDeleted(item_id=item_id, deleted=known)

    @app.delete(
        "/users/{user_id}",
        response_model=UserDeleted,
        dependencies=[Depends(admin)],
        responses=ADMIN_ONLY,
    )
    def delete_user(user_id: Annotated[str, PathParam(max_length=200)]) -> UserDeleted:
        """Remove the user's events, session, precomputed list and search profile."""
        events = service.store.delete_user(user_id)
        removed = service.erase_files(user_id)
        service.change("users.delete", user_id)
        return UserDeleted(user_id=user_id, events_deleted=events, files=removed)

    @app.post(
        "/admin/reload",
        response_model=Reloaded,
        dependencies=[Depends(admin)],
        responses={**ADMIN_ONLY, **declared(409, "The newest model version cannot be loaded.")},
    )
    def reload() -> Reloaded:
        """Swap in the newest model version from the registry folder, on every worker."""
        try:
            version = service.reload()
        except Exception as e:  # a version still being written, or a broken one
            raise HTTPException(
                409,
                f"the newest model version cannot be loaded ({e}); still serving "
                f"{service.recommender.bundle.version}",
            ) from None
        service.change("model.reload", version)
        return Reloaded(model_version=version)

    @app.get("/users", response_model=list[str])
    def known_users(limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> list[str]:
        """Some user ids the model knows, most active first (the storefront's switcher)."""
        return service.recommender.bundle.active_users(limit)

    # ------------------------------------------------------------- operations
    @app.get("/health/live", response_model=Health)
    def live() -> Health:
        return Health(status="ok")

    @app.get("/health/ready", response_model=Readiness)
    def ready() -> Readiness:
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

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """Prometheus text format."""
        body, content_type = service.metrics.render()
        return PlainTextResponse(body, media_type=content_type)

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
