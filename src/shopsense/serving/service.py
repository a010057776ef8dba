"""The service object every route works with: settings, the state store, the
served model, the search index copy and the change log that keeps them in
step with the other workers; how a route gets it (``service_of``) and the
admin routes' guard (``admin``)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

import anyio
import numpy as np
import pandas as pd
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shopsense.compute import usable_cores
from shopsense.data.dataset import Dataset
from shopsense.data.erasure import erased_users
from shopsense.data.schema import in_stock_flags
from shopsense.errors import ShopsenseError
from shopsense.evaluation.interleaving import team_draft
from shopsense.search.rules import Merchandising, Rule
from shopsense.serving.analytics import ImpressionCounters
from shopsense.serving.champion import champion, version_path
from shopsense.serving.erasure import erase_user_files
from shopsense.serving.experiments import Experiment, running, search_setting
from shopsense.serving.impressions import ImpressionLog
from shopsense.serving.limits import Limits
from shopsense.serving.metrics import Metrics
from shopsense.serving.recommendations import (
    ModelBundle,
    Recommendation,
    RecommendationService,
    model_versions,
)
from shopsense.serving.replica import ChangeApplyError, ChangeFollower, private_index_copy
from shopsense.serving.store import Change, Impression, StoreUnavailable, open_store

if TYPE_CHECKING:
    from shopsense.search.engine import SearchEngine

LOG = logging.getLogger("shopsense.serving")
T = TypeVar("T")
NEW_ITEM_SLOTS = 2
"""At most this many of a list's places go to items the model has not seen."""
NEW_ITEM_SIMILARITY = 0.5
"""The least cosine (text vectors) between a new item and what the shopper did
lately for it to be shown: MiniLM puts titles of one kind of product above it
and unrelated ones below."""
RECENT_FOR_NEW_ITEMS = 10
BEARER = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Shown(Generic[T]):
    """A list as a shopper sees it, with the experiment arm that made it:
    ``values`` are the arms' values it was ranked with (none: the default),
    ``teams`` names each position's arm in an interleaved list."""

    items: list[T]
    experiment: str | None = None
    arm: str | None = None
    values: tuple[str, ...] = ()
    teams: tuple[str, ...] | None = None


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
    impressions: bool = True
    """Log every list shown (experiments and analytics need it; off only to measure its cost)."""


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
        self.new_items: set[str] = set()
        """Catalogue items added through the API that the served model does not know."""
        items = self.dataset.items
        in_stock = in_stock_flags(items.get("in_stock"), len(items))
        self.out_of_stock_items = set(items["item_id"].astype(str).to_numpy()[~in_stock])
        self.merchandising = (
            Merchandising() if settings.index is None else Merchandising.load(settings.index)
        )
        """The index's rules and out-of-stock policy, as the change log leaves them."""
        self.champion = champion(self.store)
        self.recommender = self._recommender(self._first_loadable())
        self.experiments: dict[str, Experiment] = {}
        self.search_setting: str | None = None
        self._arms: dict[str, RecommendationService] = {}
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
        counters = ImpressionCounters(self.metrics.registry)
        self.impressions = ImpressionLog(self.store, on_written=counters.count)
        self.changes = ChangeFollower(self.store, self._apply)
        self.changes.catch_up()  # a new worker replays the log before its first answer
        self._load_experiments()
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

    def _version(self, name: str) -> Path:
        try:
            return version_path(self.settings.models, name)
        except ShopsenseError:
            raise StoreUnavailable(f"model version {name} is not on this machine (yet)") from None

    def _served(self) -> ModelBundle:
        """The champion's version, or the newest when nothing was promoted."""
        if self.champion is not None:
            return ModelBundle(self._version(self.champion), self.dataset)
        return ModelBundle(model_versions(self.settings.models)[-1], self.dataset)

    def _first_loadable(self) -> ModelBundle:
        """The champion, or the newest version that loads: one still being
        written (or broken) must not keep a worker from starting; the watcher
        swaps it in once whole."""
        if self.champion is not None:
            try:
                return self._served()
            except Exception as e:
                LOG.warning("champion %s cannot be loaded (%s): serving the newest that loads",
                            self.champion, e)  # fmt: skip
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
            bundle, self.store, self.settings.mode, self.withdrawn_items, self.deleted_users,
            self.out_of_stock_items, self.merchandising,
        )  # fmt: skip

    def _scrub(self, bundle: ModelBundle) -> None:
        """A version that still holds rows of erased users (copied in from a
        backup, or written while the deletion ran) loses them before it serves,
        in memory and in its files."""
        rows = set(erased_users(bundle.dataset.users).tolist())
        rows.update(r for r in map(bundle.user, list(self.deleted_users)) if r is not None)
        held = [r for r in sorted(rows) if bundle.model.user_items_[r].nnz]
        if held:
            bundle.model.erase_users_from(bundle.path, np.array(held, np.int64))
            LOG.warning("erased %d deleted users from model version %s", len(held), bundle.version)

    def reload(self) -> str:
        """Load the version to serve aside (``served_version``), then swap it in
        (one reference assignment); nothing to do when it is the one served."""
        with self._reload_lock:
            if self.served_version() == self.recommender.bundle.version:
                return self.recommender.bundle.version
            bundle = self._served()
            self.recommender = self._recommender(bundle)
            self.new_items = {i for i in self.new_items if bundle.item(i) is None}
            return bundle.version

    def model_version_names(self) -> list[str]:
        return [p.name for p in model_versions(self.settings.models)]

    def served_version(self) -> str:
        """The champion, or the newest version when nothing was promoted."""
        return self.champion or model_versions(self.settings.models)[-1].name

    # ------------------------------------------------------------- experiments
    def recommender_for(self, version: str | None) -> RecommendationService:
        """The champion's recommendations (``None``), or those of an experiment
        arm's version, loaded when the experiment was registered here."""
        if version is None:
            return self.recommender
        found = self._arms.get(version)
        if found is None:
            raise StoreUnavailable(f"model version {version} is not loaded here yet")
        return found

    def with_new_items(
        self, user_id: str | None, shown: list[Recommendation], k: int
    ) -> list[Recommendation]:
        """A known shopper's list with items the model cannot score yet (added
        through ``PUT /items`` since it was trained) in its last places, when
        they are like what the shopper did lately: by the search index's text
        vectors, the nearest to the mean of their last steps' items, at least
        ``NEW_ITEM_SIMILARITY``, at most ``NEW_ITEM_SLOTS`` of them."""
        if self.engine is None or not self.new_items or user_id is None:
            return shown
        steps = [s.item_id for s in self.store.recent(user_id)[-RECENT_FOR_NEW_ITEMS:]]
        bundle = self.recommender.bundle
        user = bundle.user(user_id)
        if not steps and user is not None and user_id not in self.deleted_users:
            start, end = bundle.history_indptr[user], bundle.history_indptr[user + 1]
            recent = bundle.history_items[start:end][-RECENT_FOR_NEW_ITEMS:]
            steps = [str(bundle.item_ids[i]) for i in recent]
        candidates = sorted(self.new_items - self.unshown_items() - set(steps))
        if not steps or not candidates:
            return shown
        hits = [h for h in self.engine.nearest_to(steps, candidates, NEW_ITEM_SLOTS)
                if h.score >= NEW_ITEM_SIMILARITY]  # fmt: skip
        kept = [r for r in shown if r.item_id not in {h.item_id for h in hits}]
        new = [Recommendation(h.item_id, h.title, h.category, h.price, h.score,
                              "new, and like what you looked at lately") for h in hits]  # fmt: skip
        return (kept[: k - len(new)] + new)[:k]

    def similar(self, version: str | None, item_id: str, k: int) -> list[Recommendation]:
        """Items like ``item_id``: the model's, or, for an item it does not know
        (added through ``PUT /items`` since it was trained), the search index's
        nearest by text, so a new item has neighbours at once. KeyError for an
        item neither knows."""
        try:
            return self.recommender_for(version).similar(item_id, k)
        except KeyError:
            if self.engine is None or item_id not in self.catalog_ids:
                raise
        unshown = self.unshown_items()
        hits = [h for h in self.engine.similar_items(item_id, k + len(unshown))
                if h.item_id not in unshown][:k]  # fmt: skip
        if not hits:
            raise KeyError(item_id)
        return [
            Recommendation(h.item_id, h.title, h.category, h.price, h.score,
                           "similar by its description (new to the recommender)")
            for h in hits
        ]  # fmt: skip

    def show(
        self,
        placement: str,
        unit: str | None,
        request_id: str,
        rank: Callable[[str | None], list[T]],
        item_id: Callable[[T], str],
        k: int,
    ) -> Shown[T]:
        """The list ``placement`` shows the shopper ``unit``: ``rank(None)`` (the
        default) outside any experiment, ``rank(arm's value)`` in an arm, and
        in an interleaving experiment the team draft of its two arms' lists,
        drawn from ``request_id`` so that a replay gives the same list."""
        experiment = self.experiments.get(placement)
        arm = None if experiment is None else experiment.assign(unit)
        if experiment is None or arm is None:
            return Shown(rank(None))
        if experiment.kind == "ab":
            value = experiment.arms[arm]
            return Shown(rank(value), experiment.name, arm, (value,))
        (a, a_value), (b, b_value) = experiment.arms.items()
        first, second = rank(a_value), rank(b_value)
        by_id = {item_id(x): x for x in (*second, *first)}
        seed = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big")
        merged, teams = team_draft(
            [item_id(x) for x in first], [item_id(x) for x in second], k,
            np.random.default_rng(seed),
        )  # fmt: skip
        named = tuple(a if team == "a" else b for team in teams)
        chosen = [by_id[i] for i in merged]
        return Shown(chosen, experiment.name, arm, (a_value, b_value), named)

    def record(
        self,
        placement: str,
        request_id: str,
        shown: Shown[Any],
        item_ids: Sequence[str],
        user_id: str | None,
        session_id: str | None = None,
        model_version: str | None = None,
        query: str | None = None,
    ) -> None:
        """Queue the impression of a response (written off the request path)."""
        if not self.settings.impressions:
            return
        self.impressions.record(
            Impression(
                request_id, placement, int(time.time()), tuple(item_ids), user_id, session_id,
                model_version, shown.experiment, shown.arm, shown.teams, query,
            )
        )  # fmt: skip

    def _load_experiments(self) -> None:
        """Read the registry's running experiments and load the model versions
        their arms serve (online: batch lists are the champion's alone). An
        experiment whose versions do not load here is left out, with a
        warning: its shoppers see the champion, and the service stays up."""
        arms: dict[str, RecommendationService] = {}
        found = {}
        for placement, experiment in running(self.store).items():
            versions = [] if placement == "search" else list(experiment.arms.values())
            try:
                loaded = {v: self._arms.get(v) or arms.get(v) or self._arm(v) for v in versions}
            except Exception as e:
                LOG.warning("experiment %s is not run here: %s", experiment.name, e)
                continue
            arms.update(loaded)
            found[placement] = experiment
        self._arms = arms
        self.experiments = found
        self.search_setting = search_setting(self.store)

    def _arm(self, version: str) -> RecommendationService:
        bundle = ModelBundle(self._version(version), self.dataset)
        self._scrub(bundle)
        return RecommendationService(
            bundle, self.store, "online", self.withdrawn_items, self.deleted_users,
            self.out_of_stock_items, self.merchandising,
        )  # fmt: skip

    # ------------------------------------------------------------- the change log
    def change(self, kind: str, payload: Any) -> None:
        """Log a change and apply it here before returning (read-your-writes)."""
        self.store.append_change(kind, payload)
        self.in_effect()

    def in_effect(self) -> None:
        """Apply what is logged before returning; if that cannot be done here,
        503 (it is logged: a retry is harmless)."""
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
        # Only the last promotion and registry change of a run take effect: a
        # worker replaying a long log loads each model version once.
        last = {change.kind: change.seq for change in changes}
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
                elif change.kind == "model.promote":
                    self.champion = change.payload["version"]
                    if change.seq == last[change.kind]:
                        self.reload()
                elif change.kind == "experiments.changed" and change.seq == last[change.kind]:
                    self._load_experiments()
                elif change.kind.startswith("rules."):
                    self._apply_rules(change.kind, change.payload)
                done = change.seq
            self._apply_items(items, vectors)
        except Exception as e:
            raise ChangeApplyError(done, e) from e

    # ------------------------------------------------------------- merchandising
    def put_rules(self, rules: list[Rule]) -> None:
        """Add or replace rules on every worker (checked by the caller)."""
        self.change("rules.put", [rule.to_dict() for rule in rules])

    def delete_rule(self, rule_id: str) -> bool:
        """Remove a rule on every worker; False when there is none of that id."""
        self.changes.catch_up()
        if self.merchandising.rule(rule_id) is None:
            return False
        self.change("rules.delete", rule_id)
        return True

    def set_out_of_stock(self, policy: str) -> None:
        self.change("rules.out_of_stock", policy)

    def _apply_rules(self, kind: str, payload: Any) -> None:
        """A logged rule change: in effect for search and every recommender
        here, and saved with this worker's copy of the index's settings."""
        found = self.merchandising
        if kind == "rules.put":
            found = found.with_rules([Rule.from_dict(rule) for rule in payload])
        elif kind == "rules.delete":
            found = found.without(payload)
        elif kind == "rules.out_of_stock":
            found = replace(found, out_of_stock=payload)
        self.merchandising = found
        for recommender in self._recommenders():
            recommender.use_rules(found)
        if self.engine is not None:
            self.engine.use_merchandising(found)
        if self.index_copy is not None:
            found.save(self.index_copy)

    def _recommenders(self) -> list[RecommendationService]:
        return [self.recommender, *self._arms.values()]

    def unshown_items(self) -> set[str]:
        """The items no list may show now: withdrawn, hidden by a rule in effect,
        and out of stock when the policy hides those."""
        out = self.withdrawn_items | self.recommender.hidden(time.time())
        if self.merchandising.out_of_stock == "hide":
            out |= self.out_of_stock_items
        return out

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
        self.new_items.update(i for i in ids if self.recommender.bundle.item(i) is None)
        self.new_items.difference_update(deleted)
        self.catalog_ids.update(ids)
        self.withdrawn_items.difference_update(ids)
        self.catalog_ids.difference_update(deleted)
        self.withdrawn_items.update(deleted)
        stock = in_stock_flags([item.get("in_stock") for item in upserted], len(upserted))
        self.out_of_stock_items.difference_update(ids)
        self.out_of_stock_items.update(np.array(ids, dtype=object)[~stock].tolist())
        for recommender in self._recommenders():
            recommender.catalogue_changed()

    def _forget_user(self, user_id: str) -> None:
        self.deleted_users.add(user_id)
        if self.engine is not None:
            self.engine.erase_user(user_id)
        self.erase_files(user_id)

    def erase_files(self, user_id: str) -> dict[str, int]:
        """Erase the user from the files this machine serves from (``erase_user_files``)."""
        settings = self.settings
        return erase_user_files(user_id, settings.data, settings.models, settings.index)


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
            if service.served_version() != service.recommender.bundle.version:
                service.reload()
        except Exception as e:  # a version still being written, or a broken one
            LOG.warning(
                "model reload failed, keeping %s: %s", service.recommender.bundle.version, e
            )


def service_of(request: Request) -> Service:
    """The service answering ``request``. Routes take the ``Request`` and call
    this rather than declaring the service a FastAPI dependency: solving one
    costs about 80 Python calls a request, a fifth of a cached search's."""
    return request.app.state.service


async def admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> None:
    """The admin routes' guard (async: FastAPI runs a plain ``def`` dependency
    on a worker thread): the configured key, compared in constant time (no
    timing oracle), or 401."""
    key = service_of(request).settings.api_key
    if key is None:
        raise HTTPException(401, "the admin API is off: no API key is configured")
    given = b"" if credentials is None else credentials.credentials.encode()
    if not secrets.compare_digest(given, key.encode()):
        raise HTTPException(401, "a valid API key is required (Authorization: Bearer KEY)")
