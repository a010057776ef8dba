"""Simulated shoppers: the synthetic store's users, acting on lists by the tastes
they were generated with.

A shopper shown a list examines position ``r`` (0 first) with probability
``1 / (r + 1) ** eta`` and clicks an examined item with its *attraction*: the
position-based click model (Craswell et al., 2008), whose examination and
attraction are separate, so that a ranker's worth (attraction) and the
position bias (examination) can each be checked. ``eta = 1`` is the decay that
unbiased learning-to-rank studies simulate by default (Joachims et al., 2017).

The attraction is the generator's own choice of what to view, as a
probability. A session is about a favourite leaf with the shares
``FAVOURITE_SHARES`` or, for ``EXPLORE_SHARE`` of sessions, about the leaf of
a random item; within its leaf an item is liked by the generator's utility
``BRAND_UTILITY × brand match + price fit``. With Gumbel noise (the
generator's) against an outside option "click nothing" of utility
``-click_bias``, the choice is logistic, so

    attraction = P(session about the item's leaf) × sigmoid(utility + click_bias)

A click is a view: it goes into the cart with the generator's
``cart_probability`` and is bought after a cart with ``BUY_AFTER_CART``, at
the catalogue's price. Holidays are left out: a simulation has no calendar.
Every draw is independent, so the expected counts ``expected`` gives are
exactly what ``respond`` draws on average.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from shopsense.data.synthetic import (
    BRAND_UTILITY,
    BUY_AFTER_CART,
    CANDIDATES,
    EXPLORE_SHARE,
    FAVOURITE_BRAND_COLUMNS,
    FAVOURITE_LEAF_COLUMNS,
    FAVOURITE_SHARES,
    MAX_VIEWS,
    TASTES_FILE,
    TRAITS_FILE,
    TRUTH_DIR,
    VIEW_STOP,
    cart_probability,
    price_fit,
    sample_in_leaf,
    search_queries,
)
from shopsense.errors import ShopsenseError

CLICK_BIAS = -3.0
"""The outside option's utility, negated: with it a good model's list has a CTR
(clicks per list) of a few per cent, as stores see, and a random list about a
tenth of that."""
ETA = 1.0
LEAVES = list(FAVOURITE_LEAF_COLUMNS)
BRANDS = list(FAVOURITE_BRAND_COLUMNS)
TASTE_COLUMNS = ["user_id", *LEAVES, *BRANDS, "price_band", "activity"]
TRAIT_COLUMNS = ["item_id", "leaf", "brand", "price_rank", "price", "popularity"]
MEDIAN_POPULARITY = 1.0
"""The median of the generator's popularity (log-normal around 1): what a new
item without one gets."""


@dataclass(frozen=True)
class Outcome:
    """What showing a list to a shopper brings, in expectation."""

    clicks: float
    carts: float
    purchases: float
    revenue: float
    buy_probability: float
    """The chance of at least one purchase (what conversion counts)."""


@dataclass(frozen=True)
class Outcomes:
    """``Outcome``'s figures for many lists at once, one array entry a list."""

    clicks: np.ndarray
    carts: np.ndarray
    purchases: np.ndarray
    revenue: np.ndarray
    buy_probability: np.ndarray

    def __getitem__(self, n: int) -> Outcome:
        return Outcome(*(float(getattr(self, f.name)[n]) for f in fields(self)))


@dataclass(frozen=True)
class Draws:
    """One draw for many lists at once: boolean arrays, a row a list and a
    column a position, and the value of each purchase (0 elsewhere)."""

    clicked: np.ndarray
    carted: np.ndarray
    purchased: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class Response:
    """One draw of what a shopper did with a list."""

    clicked: tuple[int, ...]
    """Positions clicked (0 first)."""
    carted: tuple[str, ...]
    purchased: tuple[str, ...]
    values: tuple[float, ...]
    """Each purchase's value (its price: a quantity of one)."""

    @property
    def revenue(self) -> float:
        return float(sum(self.values))


class ShopperModel:
    """The true behaviour of a synthetic store's users (see the module's docstring).

    ``tastes`` has ``TASTE_COLUMNS`` (one row per user), ``traits`` has
    ``TRAIT_COLUMNS`` (one row per item; ``popularity`` may be left out),
    ``catalogue`` the raw ``items.parquet`` rows whose titles searches are made
    from. An item the truth does not know (one added later through the API)
    has attraction 0: give it traits with ``with_items``. An unknown user is
    an error: a simulation only has the users it was generated with.
    """

    def __init__(
        self,
        tastes: pd.DataFrame,
        traits: pd.DataFrame,
        catalogue: pd.DataFrame,
        eta: float = ETA,
        click_bias: float = CLICK_BIAS,
    ) -> None:
        if "popularity" not in traits.columns:
            traits = traits.assign(popularity=MEDIAN_POPULARITY)
        _require(tastes, TASTE_COLUMNS, "tastes")
        _require(traits, TRAIT_COLUMNS, "traits")
        _require(catalogue, ["item_id", "brand", "attributes"], "catalogue")
        if eta < 0:
            raise ShopsenseError(f"eta must be at least 0, got {eta}")
        self.eta = eta
        self.click_bias = click_bias
        self.tastes = tastes[TASTE_COLUMNS].reset_index(drop=True)
        self.traits = traits[TRAIT_COLUMNS].reset_index(drop=True)
        self.catalogue = catalogue.reset_index(drop=True)
        self.users = self.tastes["user_id"].to_numpy(str)
        self.items = self.traits["item_id"].to_numpy(str)
        self._user_rows = {u: r for r, u in enumerate(self.users)}
        self._item_rows = {i: r for r, i in enumerate(self.items)}
        self.activity = self.tastes["activity"].to_numpy(float)
        self._favourite_leaves = self.tastes[LEAVES].to_numpy(np.int64)
        self._favourite_brands = self.tastes[BRANDS].to_numpy(np.int64)
        self._price_band = self.tastes["price_band"].to_numpy(float)
        self._leaf = self.traits["leaf"].to_numpy(np.int64)
        self._brand = self.traits["brand"].to_numpy(np.int64)
        self._price_rank = self.traits["price_rank"].to_numpy(float)
        self.prices = self.traits["price"].to_numpy(float)
        self._popularity = self.traits["popularity"].to_numpy(float)
        n_leaves = int(max(self._leaf.max(initial=0), self._favourite_leaves.max(initial=0))) + 1
        self._leaf_share = np.bincount(self._leaf, minlength=n_leaves) / max(len(self._leaf), 1)
        catalogue_rows = self._rows_of_items(self.catalogue["item_id"])
        if (catalogue_rows < 0).any():
            raise ShopsenseError("every catalogue item needs traits")
        self._catalogue_rows = catalogue_rows
        self._catalogue_by_leaf = np.argsort(self._leaf[catalogue_rows], kind="stable")

    @classmethod
    def from_raw(
        cls, raw: str | Path, eta: float = ETA, click_bias: float = CLICK_BIAS
    ) -> ShopperModel:
        """The shoppers of a folder ``shopsense generate`` (``write_store``) wrote."""
        raw = Path(raw)
        truth = raw / TRUTH_DIR
        paths = [raw / "items.parquet", truth / TASTES_FILE, truth / TRAITS_FILE]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ShopsenseError(
                f"{raw} holds no synthetic store's truth (missing {', '.join(missing)}): "
                "simulated shoppers need a folder written by `shopsense generate`"
            )
        catalogue, tastes, traits = (pd.read_parquet(p) for p in paths)
        traits = traits.merge(catalogue[["item_id", "price"]], on="item_id", how="left")
        return cls(tastes, traits, catalogue, eta=eta, click_bias=click_bias)

    # ----------------------------------------------------------------- the model
    def examination(self, n_positions: int) -> np.ndarray:
        """P(a shopper examines position r), r = 0 … n_positions - 1: ``1 / (r + 1) ** eta``."""
        if n_positions < 0:
            raise ShopsenseError(f"n_positions must be at least 0, got {n_positions}")
        return 1.0 / (np.arange(n_positions) + 1.0) ** self.eta

    def attraction(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        """P(click | examined), shape (users, items); 0 for items without traits."""
        users = self._users_of(user_ids)[:, None]
        return self._funnel(users, self._rows_of_items(item_ids)[None, :])[0]

    def click_probability(
        self, user_ids: Sequence[str], lists: Sequence[Sequence[str]]
    ) -> np.ndarray:
        """P(click) at each position of each user's list (examination ×
        attraction), shape (users, list length)."""
        return self._stages(user_ids, lists)[0]

    def expected(self, user_id: str, shown: Sequence[str]) -> Outcome:
        """The true expected clicks, carts, purchases and revenue of showing
        ``shown`` (best first) to the user: what an experiment estimates."""
        return self.expected_many([user_id], [shown])[0]

    def expected_many(self, user_ids: Sequence[str], lists: Sequence[Sequence[str]]) -> Outcomes:
        """``expected`` for each user and list (lists of one length; pad a short
        one with ids the truth does not know, e.g. "")."""
        click, cart, prices = self._stages(user_ids, lists)
        bought = click * cart * BUY_AFTER_CART
        return Outcomes(
            clicks=click.sum(axis=1),
            carts=(click * cart).sum(axis=1),
            purchases=bought.sum(axis=1),
            revenue=(bought * prices).sum(axis=1),
            buy_probability=1.0 - np.prod(1.0 - bought, axis=1),
        )

    def respond(self, user_id: str, shown: Sequence[str], rng: np.random.Generator) -> Response:
        """One draw of what the user does with ``shown``."""
        draws = self.respond_many([user_id], [shown], rng)
        ids = np.asarray(shown, dtype=object)
        return Response(
            clicked=tuple(int(r) for r in np.flatnonzero(draws.clicked[0])),
            carted=tuple(ids[draws.carted[0]]),
            purchased=tuple(ids[draws.purchased[0]]),
            values=tuple(float(v) for v in draws.values[0][draws.purchased[0]]),
        )

    def respond_many(
        self, user_ids: Sequence[str], lists: Sequence[Sequence[str]], rng: np.random.Generator
    ) -> Draws:
        """``respond`` for each user and list: three uniforms a position (click,
        cart, purchase), so a draw depends on the rng alone."""
        click, cart, prices = self._stages(user_ids, lists)
        uniforms = rng.random((3, *click.shape))
        clicked = uniforms[0] < click
        carted = clicked & (uniforms[1] < cart)
        purchased = carted & (uniforms[2] < BUY_AFTER_CART)
        return Draws(clicked, carted, purchased, np.where(purchased, prices, 0.0))

    def browse(self, user_id: str, rng: np.random.Generator) -> list[str]:
        """What the user views in a session browsing on their own (category
        pages, not a list the service chose), as the generator's sessions
        view: a favourite leaf by the favourites' shares (a random item's leaf
        for ``EXPLORE_SHARE`` of sessions), then ``geometric(VIEW_STOP)``
        views, each the best by the utility (with its Gumbel noise) of
        ``CANDIDATES`` items of the leaf drawn by popularity."""
        user = self._users_of([user_id])[0]
        rows = self._catalogue_rows[self._catalogue_by_leaf]
        if rng.random() < EXPLORE_SHARE:
            leaf = self._leaf[rows[rng.integers(len(rows))]]
        else:
            leaf = self._favourite_leaves[
                user, rng.choice(len(FAVOURITE_SHARES), p=FAVOURITE_SHARES)
            ]
        views = min(int(rng.geometric(VIEW_STOP)), MAX_VIEWS)
        drawn = sample_in_leaf(rng, np.full(views * CANDIDATES, leaf), self._leaf[rows],
                               self._popularity[rows])  # fmt: skip
        candidates = rows[drawn].reshape(views, CANDIDATES)
        brand_match = (self._brand[candidates][..., None] == self._favourite_brands[user]).any(-1)
        fit = price_fit(self._price_rank[candidates], self._price_band[user])
        utility = BRAND_UTILITY * brand_match + fit + rng.gumbel(size=candidates.shape)
        best = candidates[np.arange(views), utility.argmax(axis=1)]
        return [str(item) for item in self.items[best]]

    def query(self, user_id: str, rng: np.random.Generator) -> str:
        """A search the user would type: the words of a catalogue item of a
        favourite leaf (drawn by the favourites' shares, the item by its
        popularity), as the generator's searches are made."""
        user = self._users_of([user_id])[0]
        leaf = self._favourite_leaves[user, rng.choice(len(FAVOURITE_SHARES), p=FAVOURITE_SHARES)]
        rows = self._catalogue_by_leaf
        leaves = self._leaf[self._catalogue_rows]
        popularity = self._popularity[self._catalogue_rows]
        row = rows[sample_in_leaf(rng, np.array([leaf]), leaves[rows], popularity[rows])[0]]
        return str(search_queries(rng, self.catalogue, np.array([row]), leaves)[0])

    # -------------------------------------------------------------- new versions
    def with_items(self, traits: pd.DataFrame) -> ShopperModel:
        """A copy that also knows ``traits``' items (``TRAIT_COLUMNS``; leaf and
        brand are the generator's codes: copy them from ``self.traits``)."""
        known = np.intersect1d(traits["item_id"].to_numpy(str), self.items)
        if len(known):
            raise ShopsenseError(f"items already have traits: {', '.join(known[:5])}")
        if "popularity" not in traits.columns:
            traits = traits.assign(popularity=MEDIAN_POPULARITY)
        _require(traits, TRAIT_COLUMNS, "traits")
        merged = pd.concat([self.traits, traits[TRAIT_COLUMNS]], ignore_index=True)
        return self._copy(self.tastes, merged)

    def restocked(
        self, withdrawn: Sequence[str], traits: pd.DataFrame, catalogue: pd.DataFrame
    ) -> ShopperModel:
        """A copy for a catalogue that changed: the ``withdrawn`` items are gone
        (never browsed, searched or clicked again) and the new items, rows of
        ``catalogue`` (as ``items.parquet`` holds them) with their ``traits``,
        are browsed and searched like the rest."""
        added = self.with_items(traits)
        gone = set(withdrawn)
        traits = added.traits[~added.traits["item_id"].isin(gone)]
        kept = self.catalogue[~self.catalogue["item_id"].isin(gone)]
        shelves = pd.concat([kept, catalogue], ignore_index=True)
        return ShopperModel(self.tastes, traits, shelves, self.eta, self.click_bias)

    def shifted(self, fraction: float, rng: np.random.Generator) -> ShopperModel:
        """A copy where ``round(fraction × users)`` users, drawn at random, took
        a new first favourite leaf (one not among their favourites, drawn by
        the leaves' shares of the catalogue) and a new first favourite brand
        (that of one of the leaf's items, by popularity); the rest of their
        tastes stay. What a retrained model has to catch up with."""
        if not 0.0 <= fraction <= 1.0:
            raise ShopsenseError(f"fraction must be within [0, 1], got {fraction}")
        moved = rng.choice(len(self.users), size=round(fraction * len(self.users)), replace=False)
        with np.errstate(divide="ignore"):  # leaves without items: never drawn
            scores = np.log(self._leaf_share) + rng.gumbel(size=(len(moved), len(self._leaf_share)))
        np.put_along_axis(scores, self._favourite_leaves[moved], -np.inf, axis=1)
        if np.isneginf(scores.max(axis=1, initial=0.0)).any():
            raise ShopsenseError("no leaf with items lies outside some shopper's favourites")
        new_leaf = scores.argmax(axis=1)
        by_leaf = np.argsort(self._leaf, kind="stable")
        picked = sample_in_leaf(rng, new_leaf, self._leaf[by_leaf], self._popularity[by_leaf])
        tastes = self.tastes.copy()
        tastes.loc[moved, LEAVES[0]] = new_leaf
        tastes.loc[moved, BRANDS[0]] = self._brand[by_leaf[picked]]
        return self._copy(tastes, self.traits)

    # ----------------------------------------------------------------- internals
    def _copy(self, tastes: pd.DataFrame, traits: pd.DataFrame) -> ShopperModel:
        return ShopperModel(tastes, traits, self.catalogue, self.eta, self.click_bias)

    def _users_of(self, user_ids: Sequence[str]) -> np.ndarray:
        rows = np.fromiter((self._user_rows.get(u, -1) for u in user_ids), np.int64)
        if (rows < 0).any():
            unknown = [u for u, r in zip(user_ids, rows, strict=True) if r < 0][:5]
            raise ShopsenseError(f"unknown users (not in the store's truth): {', '.join(unknown)}")
        return rows

    def _funnel(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(attraction, P(cart | click)) of users × item rows (broadcast
        together: a column of users against a row of items, or a user a row
        against their list); item row -1 has attraction 0."""
        known = items >= 0
        items = np.where(known, items, 0)
        leaf, brand = self._leaf[items][..., None], self._brand[items][..., None]
        favourite = self._favourite_leaves[users] == leaf  # the tastes' axis last
        in_session = (1.0 - EXPLORE_SHARE) * (favourite * np.asarray(FAVOURITE_SHARES)).sum(-1)
        in_session += EXPLORE_SHARE * self._leaf_share[leaf[..., 0]]
        brand_match = (self._favourite_brands[users] == brand).any(-1)
        fit = price_fit(self._price_rank[items], self._price_band[users])
        liked = 1.0 / (1.0 + np.exp(-(BRAND_UTILITY * brand_match + fit + self.click_bias)))
        return np.where(known, in_session * liked, 0.0), cart_probability(brand_match, fit)

    def _stages(
        self, user_ids: Sequence[str], lists: Sequence[Sequence[str]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per list and position: P(click), P(cart | click) and the price."""
        shown = np.asarray(lists, dtype=object)
        if shown.ndim != 2 or len(shown) != len(user_ids):
            raise ShopsenseError("give one list of item ids a user, all of one length")
        items = self._rows_of_items(shown.ravel()).reshape(shown.shape)
        attraction, cart = self._funnel(self._users_of(user_ids)[:, None], items)
        prices = np.where(items >= 0, self.prices[np.maximum(items, 0)], 0.0)
        return self.examination(shown.shape[1]) * attraction, cart, prices

    def _rows_of_items(self, item_ids: Sequence[str]) -> np.ndarray:
        """Each item's row, -1 for an item without traits."""
        return np.fromiter((self._item_rows.get(i, -1) for i in item_ids), np.int64)


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ShopsenseError(f"{what} lacks the columns {', '.join(missing)}")
    ids = frame[columns[0]]
    if columns[0].endswith("_id") and ids.duplicated().any():
        raise ShopsenseError(
            f"{what} has duplicate {columns[0]}s, e.g. {ids[ids.duplicated()].iloc[0]}"
        )
