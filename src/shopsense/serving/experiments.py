"""Online experiments: what one is, who sees which arm, and the registry in
the state store that every worker and machine reads.

An experiment runs on one placement (``recommendations``, ``similar`` or
``search``) with two or more arms. An arm of a recommendation placement is a
model version; an arm of search is a ranking setting (``SEARCH_SETTINGS``). The
first arm is the control every other arm is compared with.

Assignment is a pure function of (the experiment's salt, the shopper's user id
or session id), so every process that shares the store agrees without
talking: the hash's first 8 bytes are a number ``u`` in [0, 1); an arm owns a
slice of [0, 1) as wide as its share, and ``u`` past the last slice sees the
default (the champion). With ``kind="interleaving"`` the shoppers inside the
experiment's share see one list merged from the first two arms by team draft.

The registry is a collection of the store's documents; a change to it is
logged as ``experiments.changed``, so workers reload it as they apply the log.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from shopsense.errors import ShopsenseError
from shopsense.serving.champion import promote
from shopsense.serving.store import StateStore

COLLECTION = "experiments"
SETTINGS = "settings"
"""The collection of the served settings that experiments promote (search's setting)."""
PLACEMENTS = ("recommendations", "similar", "search")
METRICS = ("ctr", "conversion", "revenue")
KINDS = ("ab", "interleaving")
STATUSES = ("running", "stopped", "promoted")
SEARCH_SETTINGS = ("personalized", "unpersonalized")
"""The search arms: the index's personalization as it is set, or none."""
ATTRIBUTION_SECONDS = 24 * 3600
MAX_ATTRIBUTION_HOURS = 24 * 90
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Experiment:
    name: str
    placement: str
    arms: dict[str, str]
    """Arm name → model version (or search setting), the control first."""
    shares: dict[str, float]
    """Arm name → the share of shoppers it gets; the rest see the champion."""
    metric: str = "ctr"
    guardrails: tuple[str, ...] = ()
    kind: str = "ab"
    salt: str = field(default_factory=lambda: secrets.token_hex(8))
    status: str = "running"
    started: int = field(default_factory=lambda: int(time.time()))
    stopped: int | None = None
    winner: str | None = None
    attribution_seconds: int = ATTRIBUTION_SECONDS

    def __post_init__(self) -> None:
        problems = []
        if not NAME.match(self.name):
            problems.append(f"name {self.name!r}: letters, digits, '.', '_' or '-', 1-64 long")
        if self.placement not in PLACEMENTS:
            problems.append(f"placement must be one of {', '.join(PLACEMENTS)}")
        if self.kind not in KINDS:
            problems.append(f"kind must be one of {', '.join(KINDS)}")
        if self.metric not in METRICS or any(g not in METRICS for g in self.guardrails):
            problems.append(f"metrics must be among {', '.join(METRICS)}")
        if self.status not in STATUSES:
            problems.append(f"status must be one of {', '.join(STATUSES)}")
        if len(self.arms) < 2 or (self.kind == "interleaving" and len(self.arms) != 2):
            problems.append("an experiment needs two arms or more (interleaving: exactly two)")
        if set(self.shares) != set(self.arms):
            problems.append("give every arm a share, and no share without an arm")
        shares = list(self.shares.values())
        if any(not 0 < s <= 1 for s in shares) or sum(shares) > 1 + 1e-9:
            problems.append("shares must each be in (0, 1] and add up to at most 1")
        if self.placement == "search" and any(v not in SEARCH_SETTINGS for v in self.arms.values()):
            problems.append(f"a search arm is one of {', '.join(SEARCH_SETTINGS)}")
        if not 1 <= self.attribution_seconds <= MAX_ATTRIBUTION_HOURS * 3600:
            problems.append(f"the attribution window must be 1 s to {MAX_ATTRIBUTION_HOURS} h")
        if problems:
            raise ShopsenseError(f"experiment {self.name!r}: " + "; ".join(problems))

    @property
    def control(self) -> str:
        return next(iter(self.arms))

    def assign(self, unit: str | None) -> str | None:
        """The arm of the shopper ``unit`` (user id, else session id), or None
        for the champion: an anonymous visitor without a session, or one
        outside the shares."""
        if unit is None:
            return None
        digest = hashlib.sha256(f"{self.salt}:{unit}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        if self.kind == "interleaving":
            return "interleaved" if u < sum(self.shares.values()) else None
        edge = 0.0
        for arm, share in self.shares.items():
            edge += share
            if u < edge:
                return arm
        return None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["guardrails"] = list(self.guardrails)
        return out

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> Experiment:
        return cls(**{**fields, "guardrails": tuple(fields.get("guardrails", ()))})


def parse_shares(arms: dict[str, str], traffic: str | None) -> dict[str, float]:
    """``"0.5/0.5"`` → the arms' shares in their order; none given: an equal
    split of every shopper."""
    if traffic is None:
        return {arm: 1.0 / len(arms) for arm in arms}
    try:
        shares = [float(s) for s in traffic.split("/")]
    except ValueError:
        raise ShopsenseError(f"traffic {traffic!r}: give shares like 0.5/0.5") from None
    if len(shares) != len(arms):
        raise ShopsenseError(f"traffic {traffic!r}: one share per arm ({len(arms)})")
    return dict(zip(arms, shares, strict=True))


def experiments(store: StateStore) -> dict[str, Experiment]:
    """Every experiment in the registry, by name, oldest first."""
    found = [Experiment.from_dict(d) for d in store.documents(COLLECTION).values()]
    return {e.name: e for e in sorted(found, key=lambda e: (e.started, e.name))}


def running(store: StateStore) -> dict[str, Experiment]:
    """The running experiment of each placement that has one."""
    return {e.placement: e for e in experiments(store).values() if e.status == "running"}


def get_experiment(store: StateStore, name: str) -> Experiment:
    found = experiments(store).get(name)
    if found is None:
        raise ShopsenseError(f"no experiment named {name!r}")
    return found


def create_experiment(store: StateStore, experiment: Experiment) -> Experiment:
    """Register a new running experiment: one per placement at a time (the
    placement is claimed in the store, atomically), so a shopper is in at
    most one experiment of a placement."""
    if experiment.name in experiments(store):
        raise ShopsenseError(f"an experiment named {experiment.name!r} exists already")
    holder = store.claim(_placement_key(experiment.placement), experiment.name)
    if holder != experiment.name:  # the claim, not a read, decides a race of two creates
        raise ShopsenseError(
            f"experiment {holder!r} is running on {experiment.placement}: stop it first"
        )
    return _save(store, replace(experiment, status="running", stopped=None, winner=None))


def _placement_key(placement: str) -> str:
    return f"experiments.running.{placement}"


def stop_experiment(store: StateStore, name: str, winner: str | None = None) -> Experiment:
    """Stop it (every shopper sees the champion again); with ``winner``, mark
    the arm promoted. Its impressions stay for the analysis."""
    found = get_experiment(store, name)
    if winner is not None and winner not in found.arms:
        raise ShopsenseError(f"experiment {name!r} has no arm {winner!r}")
    if found.status != "running" and winner is None:
        return found
    status = "promoted" if winner is not None else "stopped"
    stopped = found.stopped or int(time.time())
    saved = _save(store, replace(found, status=status, stopped=stopped, winner=winner))
    store.release(_placement_key(found.placement), name)
    return saved


def _save(store: StateStore, experiment: Experiment) -> Experiment:
    store.put_document(COLLECTION, experiment.name, experiment.to_dict())
    store.append_change("experiments.changed", experiment.name)
    return experiment


def search_setting(store: StateStore) -> str | None:
    """The search setting an experiment promoted (None: the index's own)."""
    return store.documents(SETTINGS).get("search", {}).get("setting")


def promote_search_setting(store: StateStore, setting: str) -> None:
    if setting not in SEARCH_SETTINGS:
        raise ShopsenseError(f"a search setting is one of {', '.join(SEARCH_SETTINGS)}")
    store.put_document(SETTINGS, "search", {"setting": setting})


def promote_arm(store: StateStore, models: Path, name: str, arm: str) -> Experiment:
    """Serve the arm ``arm`` of experiment ``name`` to everyone and stop the
    experiment: its model version becomes the champion (or, for search, its
    setting the served one). Every worker swaps as it applies the log."""
    found = get_experiment(store, name)
    if arm not in found.arms:
        raise ShopsenseError(
            f"experiment {name!r} has no arm {arm!r} (it has {', '.join(found.arms)})"
        )
    if found.placement == "search":
        promote_search_setting(store, found.arms[arm])
    else:
        promote(store, models, found.arms[arm])
    return stop_experiment(store, name, winner=arm)
