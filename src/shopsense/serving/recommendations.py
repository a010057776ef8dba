"""Recommendations as the service gives them: online, from batch lists, or both.

- **online**: the model scores every item for the user with the live session
  (the steps posted since it was trained) added to what it saw in training,
  and the session's likeness to each item is blended in, so a few views of one
  category shift the next answer toward it whatever the model;
- **batch**: the user's precomputed list (``shopsense batch``), filtered;
- **hybrid** (default): the precomputed list re-ranked with the live session and
  filtered, falling back to online when the list is missing or filtered away.

Users the model never saw get the session's neighbours, or what is popular
(within the category asked for): never an error. Every item carries a reason.

Merchandising rules (``search.rules``) apply as in search, but for pins: a
hidden item is never recommended, out-of-stock items are left out or come
after every item in stock (the index's policy), and boosts and buries reorder
the list the model chose without adding to it, so a store-wide promotion
changes what a shopper sees first, not whether the list is theirs. Pins
place items on a search or category page, not in a shopper's own list.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from shopsense.data.dataset import Dataset
from shopsense.data.schema import (
    CATEGORY_SEP,
    EVENT_CODE,
    EVENT_VERBS,
    category_leaf,
    category_levels,
    category_prefixes,
)
from shopsense.data.sequences import Sequences
from shopsense.errors import ShopsenseError
from shopsense.models.base import PARAMS_FILE, Recommender
from shopsense.models.registry import load_model
from shopsense.ranking import top_k
from shopsense.search.catalog import Catalog, Filters, canonical_catalog
from shopsense.search.rules import Merchandising, RulesInEffect, hidden_ids
from shopsense.serving.store import StateStore, Step

MODES = ("online", "batch", "hybrid")
VERSION_DATA = "data"
"""A version's own dataset folder, when it was trained on data the service's
``--data`` does not hold (``retrain`` adds the live events and new items)."""
SESSION_WEIGHT = 0.5
SESSION_STEPS = 5
EXPLAIN_STEPS = 10
SINK = 1e6
"""Taken off an out-of-stock item's score when the policy sinks it: below
every item in stock (scores are at most 1 + ``SESSION_WEIGHT``), in order."""


@dataclass
class Recommendation:
    item_id: str
    title: str
    category: str
    price: float | None
    score: float
    reason: str


def model_versions(models: Path) -> list[Path]:
    """Saved models under a registry folder, oldest first by name (``v0001``,
    a date…); a folder that is itself a saved model is its only version."""
    models = Path(models)
    if (models / PARAMS_FILE).is_file():
        return [models]
    if not models.is_dir():
        raise ShopsenseError(f"model folder {models} not found")
    versions = sorted(p for p in models.iterdir() if (p / PARAMS_FILE).is_file())
    if not versions:
        raise ShopsenseError(f"{models} holds no saved model (train one with `shopsense train`)")
    return versions


class ModelBundle:
    """One model version with the dataset it was trained on (its own ``data``
    folder if it has one, else ``dataset``): what a request reads. Swapping
    versions replaces the whole bundle, so a request never sees half of one."""

    def __init__(self, path: Path, dataset: Dataset) -> None:
        self.path = Path(path)
        self.version = self.path.name
        own = self.path / VERSION_DATA
        if (own / "manifest.json").is_file():  # retrained on more than ``dataset`` (retrain)
            dataset = Dataset.load(own)
        self.model: Recommender = load_model(path)
        if (dataset.n_users, dataset.n_items) != (self.model.n_users_, self.model.n_items_):
            raise ShopsenseError(f"model {path} was not trained on dataset {dataset.path}")
        self.dataset = dataset
        items = dataset.items
        self.item_ids = items["item_id"].astype(str).to_numpy()
        self.titles = items["title"].fillna("").astype(str).to_numpy()
        self.categories = items["category"].fillna("").astype(str).to_numpy()
        leaves = {path: category_leaf(path) or "the store" for path in set(self.categories)}
        self.popular_reasons = np.array([f"popular in {leaves[c]}" for c in self.categories])
        """Each item's reason when nothing the shopper did explains it, made once."""
        self.prices = items["price"].to_numpy(np.float64)
        ev = dataset.interactions  # sorted by user, then time
        counts = np.bincount(ev["item"].to_numpy(), minlength=dataset.n_items)
        self.popular_scores = _unit(np.log1p(counts))
        per_user = np.bincount(ev["user"].to_numpy(), minlength=dataset.n_users)
        self.history_indptr = np.concatenate([[0], np.cumsum(per_user)])
        self.history_items = ev["item"].to_numpy(np.int64)
        self.history_types = np.asarray(ev["type"].cat.categories)[ev["type"].cat.codes.to_numpy()]

    @cached_property
    def _item_row(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids)}

    @cached_property
    def _user_row(self) -> dict[str, int]:
        return {str(u): i for i, u in enumerate(self.dataset.users["user_id"])}

    def item(self, item_id: str) -> int | None:
        return self._item_row.get(item_id)

    def user(self, user_id: str) -> int | None:
        return self._user_row.get(user_id)

    def active_users(self, n: int) -> list[str]:
        top = np.argsort(-np.diff(self.history_indptr), kind="stable")[:n]
        return self.dataset.users["user_id"].astype(str).to_numpy()[top].tolist()

    @cached_property
    def _category_rows(self) -> dict[str, np.ndarray]:
        rows: dict[str, list[int]] = {}
        for i, path in enumerate(self.categories):
            for prefix in category_prefixes(path):
                rows.setdefault(prefix.lower(), []).append(i)
        return {k: np.array(v, np.int64) for k, v in rows.items()}

    def in_category(self, category: str) -> np.ndarray:
        """Items under ``category`` at any level ("Electronics" or "Electronics > Audio")."""
        key = CATEGORY_SEP.join(category_levels(category)).lower()
        return self._category_rows.get(key, np.empty(0, np.int64))

    @cached_property
    def item_rows(self) -> Mapping[str, int]:
        return self._item_row

    @cached_property
    def catalog(self) -> Catalog:
        """The items as search's catalogue reads them, for rules' conditions."""
        return Catalog(canonical_catalog(self.dataset.items))


class BundleRules:
    """A bundle's items as merchandising rules read them (``RuleTable``): a
    rule's condition is matched over every item once, when first asked for,
    not on every request; ``in_stock`` is the live flags."""

    def __init__(self, bundle: ModelBundle, in_stock: np.ndarray) -> None:
        self.bundle = bundle
        self.row_of = bundle.item_rows
        self.in_stock = in_stock
        self._masks: dict[str, np.ndarray] = {}

    def mask(self, rows: np.ndarray, filters: Filters) -> np.ndarray:
        key = repr(filters)
        full = self._masks.get(key)
        if full is None:
            catalog = self.bundle.catalog
            full = self._masks[key] = catalog.mask(np.arange(catalog.n_rows), filters)
        return full[rows]


class RecommendationService:
    """Answers ``recommend`` and ``similar`` for one bundle and a state store."""

    def __init__(
        self,
        bundle: ModelBundle,
        store: StateStore,
        mode: str = "hybrid",
        withdrawn_items: set[str] | None = None,
        deleted_users: set[str] | None = None,
        out_of_stock_items: set[str] | None = None,
        merchandising: Merchandising | None = None,
    ) -> None:
        """``withdrawn_items`` (deleted from the catalogue since training) are never
        recommended; ``deleted_users`` are strangers to the model, whatever it
        learnt of them; ``out_of_stock_items`` are left out or sunk as
        ``merchandising`` says, whose rules apply too. The sets are the
        service's own, read live; after a change to the withdrawn or
        out-of-stock items it calls ``catalogue_changed``, and ``use_rules``
        with new rules."""
        if mode not in MODES:
            raise ShopsenseError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.bundle = bundle
        self.store = store
        self.mode = mode
        self.withdrawn_items = set() if withdrawn_items is None else withdrawn_items
        self.deleted_users = set() if deleted_users is None else deleted_users
        self.out_of_stock_items = set() if out_of_stock_items is None else out_of_stock_items
        self.merchandising = Merchandising() if merchandising is None else merchandising
        self.catalogue_changed()

    def catalogue_changed(self) -> None:
        """Find the rows of the withdrawn and out-of-stock items once, not on every request."""
        self._withdrawn = self._rows(self.withdrawn_items)
        self._out_of_stock = self._rows(self.out_of_stock_items)
        in_stock = np.ones(self.bundle.model.n_items_, bool)
        in_stock[self._out_of_stock] = False
        self._rule_table = BundleRules(self.bundle, in_stock)

    def use_rules(self, merchandising: Merchandising) -> None:
        self.merchandising = merchandising

    def hidden(self, now: float) -> set[str]:
        """The items the rules in effect at ``now`` hide from every list."""
        return hidden_ids(self.merchandising.in_effect(now, None, None))

    def _rows(self, item_ids: set[str]) -> np.ndarray:
        rows = [self.bundle.item(i) for i in list(item_ids)]  # a copy: it may grow
        return np.array([r for r in rows if r is not None], np.int64)

    # ------------------------------------------------------------- recommend
    def recommend(
        self, user_id: str | None, k: int = 10, category: str | None = None, exclude_seen=True
    ) -> list[Recommendation]:
        return self.recommend_with_rules(user_id, k, category, exclude_seen)[0]

    def recommend_with_rules(
        self, user_id: str | None, k: int = 10, category: str | None = None, exclude_seen=True
    ) -> tuple[list[Recommendation], list[str]]:
        """The top ``k`` for a user (or a visitor: None), with the ids of the
        merchandising rules that changed the list."""
        b = self.bundle
        user = None if user_id is None or user_id in self.deleted_users else b.user(user_id)
        live = [] if user_id is None else self._live(self.store.recent(user_id))
        allowed = None if category is None else b.in_category(category)
        if self.mode == "online" or user_id is None:
            scores = self._online_scores(user, live)
        else:
            scores = self._batch_scores(user_id, live if self.mode == "hybrid" else [])
            if self.mode == "batch" and scores is None:
                scores = self._online_scores(None, [])  # popularity: no model call in batch mode
            elif self.mode == "hybrid" and (scores is None or not self._enough(scores, allowed, k)):
                scores = self._online_scores(user, live)
        if allowed is not None:
            masked = np.full_like(scores, -np.inf)
            masked[allowed] = scores[allowed]
            scores = masked
        if exclude_seen:
            scores[self._seen(user, live)] = -np.inf
        scores[self._withdrawn] = -np.inf
        now = time.time()
        in_effect = RulesInEffect(self.merchandising, self._rule_table, now, category=category)
        rules = in_effect.rules
        key = self._stocked(scores)
        hides = [(r.id, row) for r in rules if r.action == "hide"
                 for row in (b.item(r.item_id or ""),) if row is not None]  # fmt: skip
        hidden_rows = np.array([row for _, row in hides], np.int64)
        would_show = key[hidden_rows]  # a copy: what each hidden item would have scored
        key[hidden_rows] = -np.inf
        ids, values = top_k(key[None, :], k)
        keep = np.isfinite(values[0])
        rows = ids[0][keep]
        if not rules:  # most requests: the stock policy is in ``key`` already
            return self._explain(rows, scores[rows], user, live), []
        least = values[0][keep][-1] if len(rows) == k else -np.inf
        rows, applied = in_effect.apply(rows, pins=False)
        changed = set(applied).union(
            rule_id for (rule_id, _), score in zip(hides, would_show, strict=True) if score > least
        )
        named = [r.id for r in rules if r.id in changed]
        return self._explain(rows, scores[rows], user, live), named

    def _stocked(self, scores: np.ndarray) -> np.ndarray:
        """The scores to rank by: out-of-stock items left out (in place) or sunk
        below every item in stock (a copy), by the policy."""
        if not len(self._out_of_stock):
            return scores
        if self.merchandising.out_of_stock == "hide":
            scores[self._out_of_stock] = -np.inf
            return scores
        key = scores.copy()
        key[self._out_of_stock] -= SINK
        return key

    def _live(self, steps: list[Step]) -> list[tuple[int, str]]:
        """The session's steps on items this model knows, as (row, type)."""
        out = []
        for step in steps:
            row = self.bundle.item(step.item_id)
            if row is not None:
                out.append((row, step.type))
        return out

    def _online_scores(self, user: int | None, live: list[tuple[int, str]]) -> np.ndarray:
        b = self.bundle
        model = b.model
        if not live and user is None:
            return b.popular_scores.copy()  # callers mask it in place
        if user is None:
            base = np.zeros(model.n_items_, np.float32)
        elif model.uses_sequences:
            known = model.sequences_.rows(np.array([user]))
            items = np.concatenate([known.items, [r for r, _ in live]]).astype(np.int32)
            types = np.concatenate([known.types, [EVENT_CODE[t] for _, t in live]]).astype(np.int8)
            seq = Sequences(np.array([0, len(items)]), items, types)
            base = model.score(np.array([user]), sequences=seq)[0]
        elif not live:  # what it was trained on: its own state, no fold-in
            base = model.score(np.array([user]))[0]
        else:
            history = model.user_items_[user].tolil()
            for row, _ in live:
                history[0, row] = 1.0
            base = model.score(np.array([user]), user_items=sp.csr_matrix(history))[0]
        score = _unit(base)
        if live:
            score = score + SESSION_WEIGHT * self._session_likeness(live)
        return score

    def _session_likeness(
        self, live: list[tuple[int, str]], candidates: np.ndarray | None = None
    ) -> np.ndarray:
        """How alike each item (or each of ``candidates``) is to the last few
        session steps, recent ones weighing more."""
        model = self.bundle.model
        rows = np.array([r for r, _ in live[-SESSION_STEPS:]])
        if candidates is None:
            sims = model.similar_scores(rows)
        else:
            sims = model.similarity_between(rows, candidates)
        weights = 0.5 ** np.arange(len(rows))[::-1]
        return _unit(weights @ np.nan_to_num(sims, neginf=0.0) / weights.sum())

    def _batch_scores(self, user_id: str, live: list[tuple[int, str]]) -> np.ndarray | None:
        listed = self.store.batch(user_id)
        if not listed:
            return None
        b = self.bundle
        rows, values = [], []
        for item_id, value in listed:
            row = b.item(item_id)
            if row is not None:
                rows.append(row)
                values.append(value)
        scores = np.full(b.model.n_items_, -np.inf, np.float32)
        if rows:
            scores[rows] = _unit(np.array(values, np.float32))
            if live:
                rows_array = np.array(rows)
                scores[rows_array] += SESSION_WEIGHT * self._session_likeness(live, rows_array)
        return scores

    def _enough(self, scores: np.ndarray, allowed: np.ndarray | None, k: int) -> bool:
        finite = np.isfinite(scores) if allowed is None else np.isfinite(scores[allowed])
        return int(finite.sum()) >= k

    def _seen(self, user: int | None, live: list[tuple[int, str]]) -> np.ndarray:
        seen = [r for r, _ in live]
        if user is not None:
            seen.extend(self.bundle.model.user_items_[user].indices.tolist())
        return np.array(seen, np.int64)

    def _history(self, user: int | None, live: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """The user's latest steps, training ones first, for explanations."""
        past: list[tuple[int, str]] = []
        if user is not None:
            b = self.bundle
            start, stop = b.history_indptr[user], b.history_indptr[user + 1]
            start = max(start, stop - EXPLAIN_STEPS)
            past = list(
                zip(
                    b.history_items[start:stop].tolist(),
                    b.history_types[start:stop].tolist(),
                    strict=True,
                )
            )
        return (past + live)[-EXPLAIN_STEPS:]

    def _explain(
        self, rows: np.ndarray, scores: np.ndarray, user: int | None, live: list[tuple[int, str]]
    ) -> list[Recommendation]:
        b = self.bundle
        history = self._history(user, live)
        because = None
        if history and len(rows):
            sims = b.model.similarity_between(np.array([r for r, _ in history]), rows)
            because = np.nan_to_num(sims, neginf=0.0)
        out = []
        for i, row in enumerate(rows.tolist()):
            reason = str(b.popular_reasons[row])
            if because is not None and because[:, i].max() > 0:
                past, kind = history[int(because[:, i].argmax())]
                reason = f"because you {EVENT_VERBS.get(kind, 'viewed')} {b.titles[past]}"
            price = float(b.prices[row])
            out.append(
                Recommendation(
                    item_id=str(b.item_ids[row]),
                    title=str(b.titles[row]),
                    category=str(b.categories[row]),
                    price=price if np.isfinite(price) else None,
                    score=round(float(scores[i]), 6),
                    reason=reason,
                )
            )
        return out

    # ------------------------------------------------------------- similar
    def similar(self, item_id: str, k: int = 10) -> list[Recommendation]:
        b = self.bundle
        row = None if item_id in self.withdrawn_items else b.item(item_id)
        if row is None:
            raise KeyError(item_id)
        now = time.time()
        left_out = [self._withdrawn, self._rows(self.hidden(now))]
        if self.merchandising.out_of_stock == "hide":
            left_out.append(self._out_of_stock)
        unshown = np.concatenate(left_out)
        wanted = min(k + len(unshown), b.model.n_items_)
        ids, values = b.model.similar_items(np.array([row]), k=wanted)
        keep = np.isfinite(values[0]) & ~np.isin(ids[0], unshown)
        keep &= np.cumsum(keep) <= k
        score_of = dict(zip(ids[0][keep].tolist(), values[0][keep].tolist(), strict=True))
        rows, _ = RulesInEffect(self.merchandising, self._rule_table, now).apply(
            ids[0][keep], pins=False
        )
        out = self._explain(rows, np.array([score_of[r] for r in rows.tolist()]), None, [])
        for rec in out:
            rec.reason = f"similar to {b.titles[row]}"
        return out


def _unit(values: np.ndarray) -> np.ndarray:
    """Finite values scaled to [0, 1] (order kept); -inf stays -inf."""
    values = np.asarray(values, np.float32)
    finite = np.isfinite(values)
    if not finite.any():
        return values
    low, high = values[finite].min(), values[finite].max()
    span = high - low
    out = np.where(finite, (values - low) / span if span > 0 else 1.0, -np.inf)
    return out.astype(np.float32)
