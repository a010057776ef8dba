"""Continuous training: a challenger trained on what the store has learnt since
its dataset was ingested, registered only if it serves no worse than the champion.

``retrain`` combines the ingested dataset with the state store's live event
log and catalogue changes (items added or replaced through ``PUT /items``),
re-ingests the whole as the new version's own dataset (``<version>/data``, so
new users and items get dense ids, and the tombstones of erased users are
honoured), and holds out the last ``holdout_days`` of it. The challenger is
fitted on the events before that cutoff; challenger and champion are then
scored on the held-out users as the service serves them (``RecommendationService``
in online mode, each model in its own id space, with the shopper's live
session as it was at the cutoff), so the champion cannot recommend items it
never saw and meets the users it never saw as strangers. A challenger whose
NDCG@k is at least the champion's × (1 − ``margin``) is refitted on all the
combined events and registered as the next version, atomically; otherwise
nothing is written and the champion keeps serving.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shopsense.data.dataset import EVENTS_FILE, ITEMS_FILE, USERS_FILE, Dataset
from shopsense.data.erasure import erased_mask, folder_lock, tombstones
from shopsense.data.ingest import ingest
from shopsense.data.schema import ITEM_COLUMNS, in_stock_flags
from shopsense.errors import ShopsenseError
from shopsense.evaluation.metrics import ranking_metrics
from shopsense.models.base import PARAMS_FILE, Recommender
from shopsense.models.registry import create_model
from shopsense.serving.attribution import logged_events
from shopsense.serving.champion import champion, served_version, version_path
from shopsense.serving.champion import promote as promote_version
from shopsense.serving.erasure import erase_from_version
from shopsense.serving.recommendations import (
    VERSION_DATA,
    ModelBundle,
    RecommendationService,
    model_versions,
)
from shopsense.serving.store import RECENT_STEPS, Event, StateStore, Step

REFUSED_STATUS = 3
"""The exit status of ``shopsense retrain`` when it refuses the challenger."""
DAY_SECONDS = 86_400
PAGE = 1000
VERSION_PREFIX = "v"
VERSION_DIGITS = 4


@dataclass
class CatalogueChanges:
    """What the change log did to the catalogue: the last fields of each item
    upserted (in order of first upsert, with when that was) and the items
    withdrawn and not upserted again since."""

    upserted: dict[str, dict[str, Any]] = field(default_factory=dict)
    first_upserted_at: dict[str, int] = field(default_factory=dict)
    withdrawn: set[str] = field(default_factory=set)


def catalogue_changes(store: StateStore) -> CatalogueChanges:
    """Read the ``items.upsert`` and ``items.delete`` entries of the change log."""
    found = CatalogueChanges()
    after = 0
    while page := store.changes(after=after, limit=PAGE):
        for change in page:
            if change.kind == "items.upsert":
                for item in change.payload["items"]:
                    item_id = str(item["item_id"])
                    found.upserted[item_id] = item
                    found.first_upserted_at.setdefault(item_id, change.timestamp)
                    found.withdrawn.discard(item_id)
            elif change.kind == "items.delete":
                found.withdrawn.update(map(str, change.payload))
        after = page[-1].seq
    return found


@dataclass
class RetrainReport:
    """What a retrain did: the scores, the decision and where the time went."""

    champion: str
    model: str
    params: dict[str, Any]
    k: int
    margin: float
    holdout_days: float
    cutoff: int
    """Events at or after this Unix time are the holdout."""
    holdout_users: int
    champion_scores: dict[str, float]
    challenger_scores: dict[str, float]
    accepted: bool
    dataset: dict[str, int]
    """Counts of the combined dataset: users, items, events, and what the live
    log added (live_events, new_users, new_items)."""
    version: str | None = None
    """The registered version (None when refused)."""
    promoted: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return f"NDCG@{self.k}"

    @property
    def threshold(self) -> float:
        """The challenger's least acceptable score."""
        return self.champion_scores[self.metric] * (1.0 - self.margin)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "metric": self.metric, "threshold": self.threshold}


def retrain(
    data: Path,
    store: StateStore,
    models: Path,
    model: str | None = None,
    params: dict[str, Any] | None = None,
    holdout_days: float = 1.0,
    margin: float = 0.02,
    k: int = 10,
    promote: bool = False,
) -> RetrainReport:
    """Train a challenger on ``data`` plus ``store``'s live events and catalogue
    changes, score it against the champion of the registry ``models`` on the
    last ``holdout_days``, and register it as the next version if its NDCG@``k``
    is at least the champion's × (1 − ``margin``); with ``promote``, make it
    the champion. ``model=None`` retrains the champion's kind with its saved
    parameters (``params`` then overrides some of them). A refused or failed
    retrain writes nothing the service reads."""
    if holdout_days <= 0:
        raise ShopsenseError(f"the holdout must be a positive number of days, got {holdout_days}")
    if not 0 <= margin < 1:
        raise ShopsenseError(f"the margin is a fraction in [0, 1), got {margin}")
    if k < 1:
        raise ShopsenseError(f"k must be at least 1, got {k}")
    data, models = Path(data), Path(models)
    if (models / PARAMS_FILE).is_file():
        raise ShopsenseError(f"{models} is one saved model, not a registry folder of versions")
    base = Dataset.load(data)
    current = served_version(store, models)
    current_path = version_path(models, current)
    name, fit_params = _challenger_kind(current_path, model, params)
    erased_before = tombstones(data)
    seconds: dict[str, float] = {}
    with _work_folder(models) as work:
        clock = _Clock(seconds)
        live = list(logged_events(store))
        catalogue = catalogue_changes(store)
        raw = work / "raw"
        _write_combined(base, live, catalogue, raw)
        clock.lap("combine")
        ingest("parquet", [raw], work / VERSION_DATA, tombstones=erased_before, progress=False)
        shutil.rmtree(raw)
        combined = Dataset.load(work / VERSION_DATA)
        clock.lap("ingest")
        holdout = Holdout(combined, live, holdout_days)
        challenger = create_model(name, **fit_params).fit(holdout.train)
        clock.lap("fit")
        challenger.save(work / ".holdout-model")
        challenger_bundle = ModelBundle(work / ".holdout-model", holdout.train)
        champion_bundle = ModelBundle(current_path, base)
        holdout.leave_out_known(champion_bundle)
        withdrawn = catalogue.withdrawn
        champion_scores = holdout.score(champion_bundle, withdrawn, k)
        challenger_scores = holdout.score(challenger_bundle, withdrawn, k)
        shutil.rmtree(work / ".holdout-model")
        clock.lap("score")
        report = RetrainReport(
            champion=current, model=name, params=challenger.get_params(), k=k, margin=margin,
            holdout_days=holdout_days, cutoff=holdout.cutoff, holdout_users=holdout.n_users,
            champion_scores=champion_scores, challenger_scores=challenger_scores,
            accepted=False, dataset=_counts(combined, base, live), seconds=seconds,
        )  # fmt: skip
        metric = report.metric
        report.accepted = challenger_scores[metric] >= report.threshold
        if not report.accepted:
            return report
        final = create_model(name, **fit_params).fit(combined)
        clock.lap("refit")
        version = next_version(models)
        own_data = (models / version / VERSION_DATA).resolve()
        meta = {"data": str(own_data), "base_data": str(data.resolve()), "retrained_from": current,
                "holdout": {"cutoff": holdout.cutoff, "champion": champion_scores,
                            "challenger": challenger_scores},
                "fit_seconds": seconds["refit"]}  # fmt: skip
        final.save(work, meta=meta)
        report.version = _register(work, store, data, models, version, erased_before)
        clock.lap("register")
    if promote:
        promote_version(store, models, report.version)
        report.promoted = True
    return report


def _challenger_kind(
    champion_path: Path, model: str | None, params: dict[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """The challenger's model name and parameters: those asked for, or the
    champion's saved ones (overridden by ``params``)."""
    if model is not None:
        return model, dict(params or {})
    doc = Recommender.read_doc(champion_path)
    return doc["model"], {**doc["params"], **(params or {})}


class _Clock:
    """Seconds per phase, written into ``seconds`` as each phase ends."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = round(now - self._last, 3)
        self._last = now


@contextmanager
def _work_folder(models: Path) -> Iterator[Path]:
    """A hidden folder beside the registry (not in it: the service would list a
    half-written version there), on the same file system so that registering
    is a rename; removed unless it became a version."""
    models.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{models.name}.retrain.", dir=models.parent))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def next_version(models: Path) -> str:
    """The name after the registry's newest ``vNNNN`` (``v0001`` in a registry
    without one)."""
    numbers = [
        int(p.name[len(VERSION_PREFIX) :])
        for p in model_versions(models)
        if p.name.startswith(VERSION_PREFIX) and p.name[len(VERSION_PREFIX) :].isdigit()
    ]
    return f"{VERSION_PREFIX}{max(numbers, default=0) + 1:0{VERSION_DIGITS}d}"


def _register(
    work: Path, store: StateStore, data: Path, models: Path, version: str, erased_before: set[str]
) -> str:
    """Move the finished version ``work`` into the registry as ``version``.

    With nothing promoted yet, the version served now is promoted first: the
    service serves the newest version of an unpromoted registry, and the new
    one must wait for ``promote``. The move is made under the registry's lock,
    which ``erase_user_files`` holds while it erases: a user deleted while
    this retrain ran (tombstoned in ``data`` since) is erased from the version
    before it moves, and one deleted later finds it in the registry."""
    if champion(store) is None:
        promote_version(store, models, served_version(store, models))
    target = models / version
    os.chmod(work, models.stat().st_mode & 0o777)  # mkdtemp's folder is the owner's alone
    with folder_lock(models):
        erased_since = tombstones(data) - erased_before
        if erased_since:
            users = pd.read_parquet(work / VERSION_DATA / USERS_FILE, columns=["user_id"])
            ids = users["user_id"].astype(str)
            for user_id in ids[erased_mask(ids, erased_since)]:
                erase_from_version(work, user_id)
        if target.exists():
            raise ShopsenseError(f"{target} appeared while retraining: run retrain again")
        os.rename(work, target)
    return version


def _write_combined(
    base: Dataset, live: list[Event], catalogue: CatalogueChanges, out: Path
) -> None:
    """The ingested dataset, the live events and the catalogue changes as a
    raw Parquet folder (``shopsense ingest --format parquet`` layout). Items
    and users keep the dataset's order, so its dense ids stay those of the
    combined dataset; withdrawn items stay in the catalogue (their events are
    signal; the service never recommends them)."""
    out.mkdir(parents=True)
    _combined_items(base.items, catalogue).to_parquet(out / ITEMS_FILE, index=False)
    base.users.to_parquet(out / USERS_FILE, index=False)
    past = base.source_events().assign(
        value=base.events["value"].to_numpy(), context=base.events["context"].to_numpy()
    )
    recent = pd.DataFrame(
        {
            "user_id": [e.user_id for e in live],
            "item_id": [e.item_id for e in live],
            "type": [e.type for e in live],
            "timestamp": np.array([e.timestamp for e in live], np.int64),
            "session_id": [e.session_id for e in live],
            "query": [e.query for e in live],
            "value": np.array([np.nan if e.value is None else e.value for e in live], float),
            "context": [None] * len(live),
        }
    )
    events = pd.concat([past, recent], ignore_index=True) if len(recent) else past
    for column in ("user_id", "item_id", "session_id", "query", "context"):
        events[column] = events[column].astype(object).where(events[column].notna(), None)
    events.to_parquet(out / EVENTS_FILE, index=False)


def _combined_items(items: pd.DataFrame, catalogue: CatalogueChanges) -> pd.DataFrame:
    """The catalogue with the upserts applied: a replaced item keeps its row
    (and its ``created_at``), a new one is appended, created when first upserted."""
    if not catalogue.upserted:
        return items
    upserts = pd.DataFrame(list(catalogue.upserted.values()))
    for column in ITEM_COLUMNS:
        if column not in upserts.columns:
            upserts[column] = None
    upserts["item_id"] = upserts["item_id"].astype(str)
    upserts["in_stock"] = in_stock_flags(upserts["in_stock"], len(upserts))
    upserts["attributes"] = upserts["attributes"].map(_attributes_text)
    upserts["created_at"] = upserts["item_id"].map(catalogue.first_upserted_at)
    table = items.set_index(items["item_id"].astype(str)).drop(columns="item_id")
    upserts = upserts.set_index("item_id")[[c for c in ITEM_COLUMNS if c != "item_id"]]
    known = upserts.index.isin(table.index)
    replaced = [c for c in upserts.columns if c != "created_at"]
    table.loc[upserts.index[known], replaced] = upserts.loc[known, replaced].to_numpy()
    table = pd.concat([table.astype(object), upserts[~known].astype(object)])
    table = table.rename_axis("item_id").reset_index()
    table["price"] = pd.to_numeric(table["price"], errors="coerce")
    table["created_at"] = pd.array(table["created_at"], dtype="Int64")
    return table[list(ITEM_COLUMNS)]


def _attributes_text(value: Any) -> str | None:
    """An upsert's attributes (a dict) as the JSON text a catalogue file holds."""
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


def _counts(combined: Dataset, base: Dataset, live: list[Event]) -> dict[str, int]:
    return {
        **combined.counts(),
        "live_events": len(live),
        "new_users": combined.n_users - base.n_users,
        "new_items": combined.n_items - base.n_items,
    }


class _Sessions:
    """The live steps each shopper had posted by the cutoff: what the state
    store's ``recent`` answered then (the only part of a store the online
    recommendations read)."""

    def __init__(self, steps: dict[str, list[Step]]) -> None:
        self.steps = steps

    def recent(self, user_id: str, n: int = RECENT_STEPS) -> list[Step]:
        return self.steps.get(user_id, [])[-n:]


class Holdout:
    """The combined dataset cut at ``days`` before its last event:
    ``train`` holds every event before the cutoff; a held-out user's targets
    are the items they first had after it (items had before are excluded
    from their ranking, as in ``shopsense evaluate``)."""

    def __init__(self, combined: Dataset, live: list[Event], days: float) -> None:
        inter = combined.interactions
        if not len(inter):
            raise ShopsenseError("the combined dataset has no interactions to train on")
        self.cutoff = int(inter["timestamp"].max() - days * DAY_SECONDS)
        before = inter["timestamp"].to_numpy() < self.cutoff
        if not before.any():
            raise ShopsenseError(
                f"every event falls in the last {days} days: nothing to train on "
                "(shorten --holdout-days)"
            )
        self.train = combined.with_events(
            combined.events[combined.events["timestamp"] < self.cutoff]
        )
        user_ids = combined.users["user_id"].astype(str).to_numpy()
        item_ids = combined.items["item_id"].astype(str).to_numpy()
        had = inter[before]
        new = inter[~before]
        new = new[~pd.MultiIndex.from_frame(new[["user", "item"]]).isin(
            pd.MultiIndex.from_frame(had[["user", "item"]]))]  # fmt: skip
        self.targets = _items_by_user(new, user_ids, item_ids)
        self.seen = _items_by_user(had[had["user"].isin(new["user"])], user_ids, item_ids)
        steps: dict[str, list[Step]] = {}
        for event in sorted(live, key=lambda e: e.timestamp):
            if event.item_id is not None and event.timestamp < self.cutoff:
                steps.setdefault(event.user_id, []).append(
                    Step(event.item_id, event.type, event.timestamp)
                )
        self.sessions = _Sessions(steps)
        if not self.targets:
            raise ShopsenseError(
                f"no shopper had a new item in the last {days} days: nothing to "
                "score the challenger on (lengthen --holdout-days)"
            )

    @property
    def n_users(self) -> int:
        return len(self.targets)

    def leave_out_known(self, bundle: ModelBundle) -> None:
        """Drop the targets ``bundle``'s model trained on (a champion retrained
        after the cutoff saw some of the holdout): it could never be credited
        for them, since the service does not recommend what a user had."""
        model = bundle.model
        for user_id in list(self.targets):
            row = bundle.user(user_id)
            if row is None:
                continue
            trained = set(bundle.item_ids[model.user_items_[row].indices].tolist())
            self.targets[user_id] -= trained
            if not self.targets[user_id]:
                del self.targets[user_id]
        if not self.targets:
            raise ShopsenseError(
                f"the champion {bundle.version} was trained on every held-out event: "
                "nothing to compare it on (retrain once new events have come in)"
            )

    def score(self, bundle: ModelBundle, withdrawn: set[str], k: int) -> dict[str, float]:
        """NDCG@k and Recall@k of ``bundle`` as served (online), over the held-out users."""
        sessions: Any = self.sessions  # online recommendations read a store's ``recent`` only
        service = RecommendationService(bundle, sessions, "online", withdrawn_items=set(withdrawn))
        users = sorted(self.targets)
        hits = np.zeros((len(users), k), bool)
        for row, user_id in enumerate(users):
            seen = self.seen.get(user_id, set())
            wanted = min(k + len(seen), bundle.model.n_items_)
            shown = [r.item_id for r in service.recommend(user_id, wanted) if r.item_id not in seen]
            targets = self.targets[user_id]
            hits[row, : min(k, len(shown))] = [item in targets for item in shown[:k]]
        n_targets = np.array([len(self.targets[u]) for u in users])
        values = ranking_metrics(hits, n_targets, (k,))
        return {name: float(values[name].mean()) for name in (f"NDCG@{k}", f"Recall@{k}")}


def _items_by_user(
    interactions: pd.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray
) -> dict[str, set[str]]:
    """Each user's items in ``interactions``, as source ids."""
    users = user_ids[interactions["user"].to_numpy()]
    items = item_ids[interactions["item"].to_numpy()]
    found: dict[str, set[str]] = {}
    for user, item in zip(users.tolist(), items.tolist(), strict=True):
        found.setdefault(user, set()).add(item)
    return found
