"""The service object every route depends on: settings, the state store, the
served model, the search index copy and the change log that keeps them in
step with the other workers; and the dependencies routes declare to get it
(``ServiceDep``, ``admin``)."""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
import numpy as np
import pandas as pd
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shopsense.compute import usable_cores
from shopsense.data.dataset import Dataset
from shopsense.data.erasure import erased_users
from shopsense.serving.erasure import erase_user_files
from shopsense.serving.limits import Limits
from shopsense.serving.metrics import Metrics
from shopsense.serving.recommendations import ModelBundle, RecommendationService, model_versions
from shopsense.serving.replica import ChangeApplyError, ChangeFollower, private_index_copy
from shopsense.serving.store import Change, StoreUnavailable, open_store

if TYPE_CHECKING:
    from shopsense.search.engine import SearchEngine

LOG = logging.getLogger("shopsense.serving")
T = TypeVar("T")
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
        self.recommender = self._recommender(self._first_loadable())
        self.engine = None
        self.index_copy: Path | None = None
        if settings.index is not None:
            from shopsense.search.engine import SearchEngine
            from shopsense.search.semantic import query_threads

            query_threads()
            self.index_copy = private_index_copy(settings.index)
            self.engine = SearchEngine(self.index_copy)
            self.engine.settings.embedding_cache = None  # the copy's own (see private_index_copy)
            self.engine.warm()
        self._reload_lock = threading.Lock()
        self.catalog_ids = set(self.dataset.items["item_id"].astype(str))
        self.metrics = Metrics()
        self.changes = ChangeFollower(self.store, self._apply)
        self.changes.catch_up()  # a new worker replays the log before its first answer
        self.cpu_slots = ThreadSlots(usable_cores())

    def search_engine(self) -> SearchEngine:
        """The index, or 404 for a service started without one."""
        if self.engine is None:
            raise HTTPException(404, "this service has no search index (start it with --index)")
        return self.engine

    async def on_a_core(self, work: Callable[[], T]) -> T:
        """Run ``work`` (a search, a ranking) on a worker thread, at most one per
        core at once: more CPU work at once than cores only trades the GIL."""
        return await anyio.to_thread.run_sync(work, limiter=self.cpu_slots.limiter())

    def _newest(self) -> ModelBundle:
        return ModelBundle(model_versions(self.settings.models)[-1], self.dataset)

    def _first_loadable(self) -> ModelBundle:
        """The newest version that loads: one still being written (or broken)
        must not keep a worker from starting; the watcher swaps it in once whole."""
        *newer, oldest = reversed(model_versions(self.settings.models))
        for version in newer:
            try:
                return ModelBundle(version, self.dataset)
            except Exception as e:
                LOG.warning("model version %s cannot be loaded (%s): trying the one before",
                            version.name, e)  # fmt: skip
        return ModelBundle(oldest, self.dataset)

    def _recommender(self, bundle: ModelBundle) -> RecommendationService:
        self._scrub(bundle)
        return RecommendationService(
            bundle, self.store, self.settings.mode, self.withdrawn_items, self.deleted_users
        )

    def _scrub(self, bundle: ModelBundle) -> None:
        """A version that still holds rows of erased users (copied in from a
        backup, or written while the deletion ran) loses them before it serves,
        in memory and in its files."""
        rows = set(erased_users(self.dataset.users).tolist())
        rows.update(r for r in map(bundle.user, list(self.deleted_users)) if r is not None)
        held = [r for r in sorted(rows) if bundle.model.user_items_[r].nnz]
        if held:
            bundle.model.erase_users_from(bundle.path, np.array(held, np.int64))
            LOG.warning("erased %d deleted users from model version %s", len(held), bundle.version)

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
        """Log a change and apply it here before returning (read-your-writes);
        if it cannot be applied here, 503 (it is logged: a retry is harmless)."""
        self.store.append_change(kind, payload)
        self.changes.catch_up(retry=True)
        if self.changes.problem is not None:
            raise StoreUnavailable(
                f"logged, but not in effect on this worker: {self.changes.problem}"
            )

    def _apply(self, changes: list[Change]) -> None:
        """Apply log entries in order. A run of catalogue changes is applied as
        one upsert and one delete of each id's last version, so a worker that
        replays a long log embeds and indexes each item once. On a failure,
        ``ChangeApplyError`` says the last entry fully in effect."""
        done = changes[0].seq - 1
        items: dict[str, dict[str, Any] | None] = {}
        vectors: dict[str, np.ndarray] = {}
        try:
            for change in changes:
                if change.kind == "items.upsert":
                    upserted = change.payload["items"]
                    items.update((item["item_id"], item) for item in upserted)
                    for item in upserted:
                        vectors.pop(item["item_id"], None)
                    vectors.update(self._logged_vectors(change.payload))
                    continue
                if change.kind == "items.delete":
                    items.update((item_id, None) for item_id in change.payload)
                    continue
                self._apply_items(items, vectors)
                items, vectors, done = {}, {}, change.seq - 1
                if change.kind == "users.delete":
                    self._forget_user(change.payload)
                elif change.kind == "model.reload":
                    self._reload_newest()
                done = change.seq
            self._apply_items(items, vectors)
        except Exception as e:
            raise ChangeApplyError(done, e) from e

    def upsert_items(self, items: list[dict[str, Any]]) -> None:
        """Log a catalogue upsert with the items' vectors, embedded here before
        it is logged and outside every lock: the other workers then index it
        without embedding it, so they answer at once meanwhile."""
        payload: dict[str, Any] = {"items": items}
        if self.engine is not None:
            vectors = self.engine.embed(pd.DataFrame(items))
            if vectors:
                ids = list(vectors)
                data = np.stack([vectors[i] for i in ids]).astype(np.float32).tobytes()
                payload["vectors"] = {"encoder": self.engine.encoder_tag, "ids": ids,
                                      "data": base64.b64encode(data).decode()}  # fmt: skip
        self.change("items.upsert", payload)

    def _logged_vectors(self, payload: dict[str, Any]) -> dict[str, np.ndarray]:
        """The vectors a logged upsert carries, if they are this index's encoder's."""
        logged = payload.get("vectors")
        if self.engine is None or not logged or logged["encoder"] != self.engine.encoder_tag:
            return {}
        data = np.frombuffer(base64.b64decode(logged["data"]), np.float32)
        return dict(zip(logged["ids"], data.reshape(len(logged["ids"]), -1), strict=True))

    def _reload_newest(self) -> None:
        """A logged reload: the newest version if it loads here; if it does not
        (still being copied to this machine), the watcher takes it later."""
        try:
            self.reload()
        except Exception as e:
            LOG.warning("logged reload: keeping %s: %s", self.recommender.bundle.version, e)

    def _apply_items(
        self, items: dict[str, dict[str, Any] | None], vectors: dict[str, np.ndarray]
    ) -> None:
        if not items:
            return
        upserted = [item for item in items.values() if item is not None]
        deleted = [item_id for item_id, item in items.items() if item is None]
        if self.engine is not None:
            if upserted:
                self.engine.upsert(pd.DataFrame(upserted), vectors=vectors)
            if deleted:
                self.engine.delete(deleted)
        ids = [item["item_id"] for item in upserted]
        self.catalog_ids.update(ids)
        self.withdrawn_items.difference_update(ids)
        self.catalog_ids.difference_update(deleted)
        self.withdrawn_items.update(deleted)
        self.recommender.withdrawn_changed()

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


def watch_versions(service: Service, stop: threading.Event) -> None:
    """Swap in a new model version when one appears in the registry folder."""
    while not stop.wait(service.settings.watch_seconds):
        try:
            if service.newest_version() != service.recommender.bundle.version:
                service.reload()
        except Exception as e:  # a version still being written, or a broken one
            LOG.warning(
                "model reload failed, keeping %s: %s", service.recommender.bundle.version, e
            )


async def service_of(request: Request) -> Service:
    """Async, as every dependency here: FastAPI runs a plain ``def`` dependency
    on a worker thread, a hop that cost a cached search a third of its time."""
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(service_of)]


async def admin(
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> None:
    """The admin routes' guard: the configured key, compared in constant time
    (no timing oracle), or 401."""
    key = service.settings.api_key
    if key is None:
        raise HTTPException(401, "the admin API is off: no API key is configured")
    given = b"" if credentials is None else credentials.credentials.encode()
    if not secrets.compare_digest(given, key.encode()):
        raise HTTPException(401, "a valid API key is required (Authorization: Bearer KEY)")
