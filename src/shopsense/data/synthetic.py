"""The built-in synthetic store: a deterministic, learnable stand-in for real data.

Users have latent tastes (favourite leaf categories, brands, a price band);
they shop in sessions over weeks: a search whose words match what they then
view, views → cart → purchase funnels, repeat purchases of consumables, more
traffic in the evening, at weekends and on holidays, and a long-tailed item
popularity. Everything is vectorized with NumPy, so a million events take
seconds. ``write_store`` writes the generic Parquet layout ``shopsense ingest
--format parquet`` reads, and the latent truth in its ``truth/`` folder (which
ingest does not look into) for the simulated shoppers of
``shopsense.simulation``. The tastes' constants and ``price_fit`` /
``cart_probability`` below are what both the generator and those shoppers use.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shopsense.data.schema import CATEGORY_SEP
from shopsense.data.synthetic_vocab import COLORS, FEATURES, TOPS
from shopsense.errors import ShopsenseError

DAY = 86_400
HOUR_WEIGHTS = np.array(
    [2, 1, 1, 1, 1, 1, 2, 4, 6, 7, 7, 8, 9, 8, 7, 7, 8, 9, 10, 12, 14, 14, 10, 5], float
)
CHINESE_SHARE = 0.2
CANDIDATES = 6  # items drawn per view; the one the user likes best is viewed
VIEW_STOP, MAX_VIEWS = 0.3, 15  # a session's views: geometric, at most MAX_VIEWS
FAVOURITE_SHARES = (0.55, 0.3, 0.15)
"""How often a session is about each of a user's three favourite leaves (unless exploring)."""
EXPLORE_SHARE = 0.12
"""Sessions about the leaf of a random item instead of a favourite."""
SEARCH_SHARE = 0.35
"""Sessions that start with a search."""
BRAND_UTILITY = 1.5
"""What a favourite brand adds to an item's utility (a price fit of 0 is the best)."""
BUY_AFTER_CART = 0.45
HOLIDAY_BUY_BOOST = 0.15
TRUTH_DIR = "truth"
"""The raw folder's subfolder of latent tastes and traits: ingest reads only the
folder's own files, so the truth never becomes events."""
TASTES_FILE = "tastes.parquet"
TRAITS_FILE = "traits.parquet"
FAVOURITE_LEAF_COLUMNS = ("leaf_1", "leaf_2", "leaf_3")
FAVOURITE_BRAND_COLUMNS = ("brand_1", "brand_2")


def price_fit(price_rank: np.ndarray, price_band: np.ndarray) -> np.ndarray:
    """How well an item's price rank in its leaf (0 cheap … 1 dear) suits a
    user's price band: 0 at a perfect fit, down to -3."""
    return -3.0 * np.abs(price_rank - price_band)


def cart_probability(brand_match: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """The chance a viewed item goes into the cart."""
    return 0.06 + 0.14 * brand_match + 0.1 * np.exp(fit)


@dataclass(frozen=True)
class StoreConfig:
    """Size and time span of the store: ``days`` days up to and including ``end`` (UTC).

    A fixed end date keeps the store the same for a seed whatever today is.
    """

    users: int = 5000
    items: int = 2000
    days: int = 60
    seed: int = 0
    end: dt.date = dt.date(2026, 11, 20)
    sessions_per_week: float = 0.7
    holidays: tuple[dt.date, ...] = ()

    @property
    def start(self) -> dt.date:
        return self.end - dt.timedelta(days=self.days - 1)

    def holiday_dates(self) -> tuple[dt.date, ...]:
        """Given holidays, else Singles' Day, Black Friday and Christmas of the span's years."""
        if self.holidays:
            return self.holidays
        out = []
        for year in {self.start.year, (self.start + dt.timedelta(days=self.days)).year}:
            nov1 = dt.date(year, 11, 1)
            thanksgiving = nov1 + dt.timedelta(days=(3 - nov1.weekday()) % 7 + 21)
            out += [
                dt.date(year, 11, 11),
                thanksgiving + dt.timedelta(days=1),
                dt.date(year, 12, 25),
            ]
        return tuple(sorted(out))


@dataclass
class _Leaves:
    top: np.ndarray
    median: np.ndarray
    consumable: np.ndarray
    names: list[str]


def _leaves() -> _Leaves:
    tops, medians, consumables, names = [], [], [], []
    for t, top in enumerate(TOPS):
        for leaf in top.leaves:
            tops.append(t)
            medians.append(leaf.median_price)
            consumables.append(leaf.consumable)
            names.append(f"{top.name}{CATEGORY_SEP}{leaf.name}")
    return _Leaves(np.array(tops), np.array(medians), np.array(consumables), names)


def _pick(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    return rng.integers(0, n, size)


def _catalog(cfg: StoreConfig, rng: np.random.Generator, leaves: _Leaves) -> pd.DataFrame:
    n = cfg.items
    n_leaves = len(leaves.top)
    leaf_weight = rng.dirichlet(np.full(n_leaves, 2.0))
    leaf = np.sort(rng.choice(n_leaves, size=n, p=leaf_weight))
    top = leaves.top[leaf]
    brand = np.minimum(rng.zipf(1.6, n) - 1, 5)
    price = np.round(leaves.median[leaf] * rng.lognormal(0.0, 0.45, n), 0) - 0.01
    price = np.maximum(price, 0.99)
    chinese = rng.random(n) < CHINESE_SHARE
    adj = _pick(rng, 6, n)
    value = rng.integers(0, 1 << 30, n)
    use = _pick(rng, 3, n)
    feature = _pick(rng, len(FEATURES), n)
    created = cfg_start_ts(cfg) - rng.integers(DAY, 365 * DAY, n)
    titles, descriptions, attributes = [], [], []
    for i in range(n):
        t = TOPS[top[i]]
        lf = t.leaves[leaf[i] - int(np.flatnonzero(leaves.top == top[i])[0])]
        b_en, b_zh = t.brands[brand[i]]
        a_en, a_zh = t.adjectives[adj[i]]
        u_en, u_zh = t.uses[use[i]]
        f_en, f_zh = FEATURES[feature[i]]
        attr_value = t.values[value[i] % len(t.values)]
        model = f"{chr(65 + value[i] % 26)}{value[i] % 900 + 100}"
        if chinese[i]:
            titles.append(f"{b_zh} {a_zh}{lf.noun_zh} {attr_value} {model}")
            descriptions.append(f"{b_zh}{a_zh}{lf.noun_zh}，{f_zh}，适合{u_zh}。")
        else:
            titles.append(f"{b_en} {a_en} {lf.noun} {attr_value} {model}")
            descriptions.append(f"This {a_en} {lf.noun} from {b_en} is made for {u_en}; it {f_en}.")
        attributes.append(
            json.dumps(
                {
                    t.attribute: attr_value,
                    "color": _color(value[i]),
                    "language": "zh" if chinese[i] else "en",
                },
                ensure_ascii=False,
            )
        )
    return pd.DataFrame(
        {
            "item_id": [f"i{i:06d}" for i in range(n)],
            "title": titles,
            "description": descriptions,
            "category": [leaves.names[x] for x in leaf],
            "brand": [TOPS[t].brands[b][0] for t, b in zip(top, brand, strict=True)],
            "price": price,
            "attributes": attributes,
            "created_at": created,
            "_leaf": leaf,
            "_brand": top * 6 + brand,
        }
    )


def _color(v: int) -> str:
    return COLORS[(v >> 5) % len(COLORS)]


def cfg_start_ts(cfg: StoreConfig) -> int:
    return int(dt.datetime.combine(cfg.start, dt.time(), dt.UTC).timestamp())


def _users(
    cfg: StoreConfig, rng: np.random.Generator, leaves: _Leaves
) -> tuple[pd.DataFrame, dict]:
    n = cfg.users
    n_leaves = len(leaves.top)
    fav_top = rng.integers(0, len(TOPS), (n, 2))
    # Three favourite leaves, mostly inside the two favourite top categories.
    leaf_of_top = [np.flatnonzero(leaves.top == t) for t in range(len(TOPS))]
    pick_top = fav_top[np.arange(n)[:, None], rng.integers(0, 2, (n, 3))]
    fav_leaf = np.array(
        [[leaf_of_top[t][rng.integers(0, len(leaf_of_top[t]))] for t in row] for row in pick_top]
    )
    stray = rng.random((n, 3)) < 0.1
    fav_leaf[stray] = rng.integers(0, n_leaves, stray.sum())
    fav_brand = fav_top * 6 + np.minimum(rng.zipf(1.8, (n, 2)) - 1, 5)
    price_band = rng.beta(2.0, 2.0, n)
    activity = rng.lognormal(0.0, 0.7, n)
    ages = np.array(["18-24", "25-34", "35-44", "45-54", "55+"])
    genders = np.array(["f", "m"])
    regions = np.array(["north", "south", "east", "west", "central"])
    age = ages[rng.integers(0, 5, n)]
    gender = genders[rng.integers(0, 2, n)]
    region = regions[rng.integers(0, 5, n)]
    known = rng.random(n) < 0.7  # demographics are optional: 30% of users gave none
    attributes = [
        json.dumps({"age": a, "gender": g, "region": r}) if k else "{}"
        for a, g, r, k in zip(age, gender, region, known, strict=True)
    ]
    users = pd.DataFrame({"user_id": [f"u{u:06d}" for u in range(n)], "attributes": attributes})
    taste = {"leaf": fav_leaf, "brand": fav_brand, "price": price_band, "activity": activity}
    return users, taste


def _day_weights(cfg: StoreConfig) -> np.ndarray:
    days = [cfg.start + dt.timedelta(days=d) for d in range(cfg.days)]
    holidays = set(cfg.holiday_dates())
    w = np.array([1.3 if d.weekday() >= 5 else 1.0 for d in days])
    for i, d in enumerate(days):
        if d in holidays:
            w[i] *= 3.0
        elif d + dt.timedelta(days=1) in holidays or d + dt.timedelta(days=2) in holidays:
            w[i] *= 1.6
    return w / w.sum()


def sample_in_leaf(
    rng: np.random.Generator, leaf: np.ndarray, items_leaf: np.ndarray, popularity: np.ndarray
) -> np.ndarray:
    """Items drawn within each given leaf in proportion to popularity (any
    item for a leaf without items).

    ``items_leaf`` is sorted (the catalogue is sorted by leaf), so each leaf's
    cumulative popularity is shifted to ``[leaf, leaf + 1)`` and one
    ``searchsorted`` serves every leaf at once.
    """
    n_leaves = int(max(items_leaf.max(), leaf.max(initial=0))) + 1  # leaves may have no items
    totals = np.bincount(items_leaf, weights=popularity, minlength=n_leaves)
    within = np.cumsum(popularity) - np.concatenate(([0.0], np.cumsum(totals)))[items_leaf]
    keys = items_leaf + within / totals[items_leaf]
    counts = np.bincount(items_leaf, minlength=n_leaves)
    empty = counts[leaf] == 0
    leaf = np.where(empty, items_leaf[rng.integers(0, len(items_leaf), len(leaf))], leaf)
    pos = np.searchsorted(keys, leaf + rng.random(len(leaf)) * (1 - 1e-9))
    return np.minimum(pos, len(items_leaf) - 1)


def generate_store(cfg: StoreConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(items, users, events)`` with source ids, ready for ``write_store``."""
    items, users, events, _, _ = _generate(cfg)
    return items, users, events


def _generate(
    cfg: StoreConfig,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(items, users, events, tastes, traits)``: the store and its latent truth,
    one row per user and per item (``write_store`` says what the columns are)."""
    if cfg.users < 1 or cfg.items < 1 or cfg.days < 1:
        raise ShopsenseError("users, items and days must each be at least 1")
    rng = np.random.default_rng(cfg.seed)
    leaves = _leaves()
    items = _catalog(cfg, rng, leaves)
    users, taste = _users(cfg, rng, leaves)
    item_leaf = items.pop("_leaf").to_numpy()
    item_brand = items.pop("_brand").to_numpy()
    popularity = rng.lognormal(0.0, 1.2, cfg.items)
    leaf_median = np.array(
        [
            np.median(items["price"].to_numpy()[item_leaf == x]) if (item_leaf == x).any() else 1.0
            for x in range(len(leaves.top))
        ]
    )
    price_rank = 1.0 / (
        1.0 + np.exp(-3.0 * np.log(items["price"].to_numpy() / leaf_median[item_leaf]))
    )

    # Sessions: how many per user, when, and which leaf each is about.
    rate = taste["activity"] * cfg.sessions_per_week * cfg.days / 7.0
    n_sessions = rng.poisson(rate) + 1
    s_user = np.repeat(np.arange(cfg.users), n_sessions)
    n_s = len(s_user)
    day = rng.choice(cfg.days, size=n_s, p=_day_weights(cfg))
    hour = rng.choice(24, size=n_s, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    s_start = cfg_start_ts(cfg) + day * DAY + hour * 3600 + rng.integers(0, 3600, n_s)
    fav_pick = rng.choice(3, size=n_s, p=FAVOURITE_SHARES)
    s_leaf = taste["leaf"][s_user, fav_pick]
    explore = rng.random(n_s) < EXPLORE_SHARE
    s_leaf[explore] = item_leaf[rng.integers(0, cfg.items, explore.sum())]
    s_views = np.minimum(rng.geometric(VIEW_STOP, n_s), MAX_VIEWS)
    s_search = rng.random(n_s) < SEARCH_SHARE
    holiday_days = {(d - cfg.start).days for d in cfg.holiday_dates()}
    s_holiday = np.isin(day, list(holiday_days))

    # Views: the best of a few popularity-drawn candidates by the user's taste.
    v_session = np.repeat(np.arange(n_s), s_views)
    v_user = s_user[v_session]
    n_v = len(v_session)
    cand = sample_in_leaf(rng, np.repeat(s_leaf[v_session], CANDIDATES), item_leaf, popularity)
    cand = cand.reshape(n_v, CANDIDATES)
    brand_match = (item_brand[cand][:, :, None] == taste["brand"][v_user][:, None, :]).any(axis=2)
    fit = price_fit(price_rank[cand], taste["price"][v_user][:, None])
    utility = BRAND_UTILITY * brand_match + fit + rng.gumbel(size=cand.shape)
    best = utility.argmax(axis=1)
    v_item = cand[np.arange(n_v), best]
    v_match = brand_match[np.arange(n_v), best]
    v_fit = fit[np.arange(n_v), best]
    v_step = np.arange(n_v) - np.repeat(np.cumsum(s_views) - s_views, s_views)
    v_time = s_start[v_session] + 30 + v_step * 45 + rng.integers(0, 40, n_v)

    v_cart = rng.random(n_v) < cart_probability(v_match, v_fit)
    v_fav = rng.random(n_v) < 0.03 + 0.05 * v_match
    p_buy = BUY_AFTER_CART + HOLIDAY_BUY_BOOST * s_holiday[v_session]
    v_buy = v_cart & (rng.random(n_v) < p_buy)
    v_click = s_search[v_session] & (v_step < 3) & (rng.random(n_v) < 0.7)

    # Repeat purchases of consumables a week or a few later.
    again = v_buy & leaves.consumable[item_leaf[v_item]] & (rng.random(n_v) < 0.5)
    r_time = v_time[again] + rng.integers(7 * DAY, 28 * DAY, again.sum())
    end = cfg_start_ts(cfg) + cfg.days * DAY
    r_keep = r_time < end
    r_user, r_item, r_time = v_user[again][r_keep], v_item[again][r_keep], r_time[r_keep]
    r_session = n_s + np.arange(len(r_user))

    # Searches: words of the first viewed item (its noun, sometimes brand or adjective).
    first_view = np.cumsum(s_views) - s_views
    q_sessions = np.flatnonzero(s_search)
    queries = search_queries(rng, items, v_item[first_view[q_sessions]], item_leaf)

    parts = [
        (
            s_user[q_sessions],
            np.full(len(q_sessions), -1),
            "search",
            s_start[q_sessions],
            q_sessions,
            queries,
        ),
        (v_user[v_click], v_item[v_click], "click", v_time[v_click] - 5, v_session[v_click], None),
        (v_user, v_item, "view", v_time, v_session, None),
        (v_user[v_fav], v_item[v_fav], "fav", v_time[v_fav] + 10, v_session[v_fav], None),
        (v_user[v_cart], v_item[v_cart], "cart", v_time[v_cart] + 20, v_session[v_cart], None),
        (
            v_user[v_buy],
            v_item[v_buy],
            "purchase",
            s_start[v_session[v_buy]] + s_views[v_session[v_buy]] * 45 + 120,
            v_session[v_buy],
            None,
        ),
        (r_user, r_item, "view", r_time, r_session, None),
        (r_user, r_item, "cart", r_time + 30, r_session, None),
        (r_user, r_item, "purchase", r_time + 90, r_session, None),
    ]
    events = _assemble(parts, items, users, rng)
    tastes = pd.DataFrame(
        {
            "user_id": users["user_id"],
            **{name: taste["leaf"][:, k] for k, name in enumerate(FAVOURITE_LEAF_COLUMNS)},
            **{name: taste["brand"][:, k] for k, name in enumerate(FAVOURITE_BRAND_COLUMNS)},
            "price_band": taste["price"],
            "activity": taste["activity"],
        }
    )
    traits = pd.DataFrame(
        {
            "item_id": items["item_id"],
            "leaf": item_leaf,
            "brand": item_brand,
            "price_rank": price_rank,
            "popularity": popularity,
        }
    )
    return items, users, events, tastes, traits


def search_queries(
    rng: np.random.Generator, items: pd.DataFrame, first_items: np.ndarray, item_leaf: np.ndarray
) -> np.ndarray:
    """What a shopper types to find each of ``first_items`` (rows of the
    catalogue ``items``, whose leaves ``item_leaf`` gives): the leaf's noun, in
    the item's language, sometimes with its brand or a "cheap"/"best"."""
    leaves = _leaves()
    leaf_objs = [leaf for top in TOPS for leaf in top.leaves]
    attrs = items["attributes"].to_numpy()
    brands = items["brand"].to_numpy()
    roll = rng.random((len(first_items), 2))
    out = np.empty(len(first_items), dtype=object)
    for i, item in enumerate(first_items):
        lf = leaf_objs[item_leaf[item]]
        if '"zh"' in attrs[item]:
            brand_zh = dict(TOPS[leaves.top[item_leaf[item]]].brands)[brands[item]]
            out[i] = (brand_zh if roll[i, 0] < 0.4 else "") + lf.noun_zh
            continue
        words = [lf.noun]
        if roll[i, 0] < 0.4:
            words.insert(0, brands[item].lower())
        if roll[i, 1] < 0.15:
            words.append("cheap" if roll[i, 1] < 0.07 else "best")
        out[i] = " ".join(words)
    return out


def _assemble(parts, items: pd.DataFrame, users: pd.DataFrame, rng) -> pd.DataFrame:
    user = np.concatenate([p[0] for p in parts])
    item = np.concatenate([p[1] for p in parts])
    kinds = np.concatenate([np.full(len(p[0]), p[2], dtype=object) for p in parts])
    ts = np.concatenate([p[3] for p in parts]).astype(np.int64)
    session = np.concatenate([p[4] for p in parts])
    query = np.concatenate(
        [p[5] if p[5] is not None else np.full(len(p[0]), None, object) for p in parts]
    )
    order = np.lexsort((ts, user))
    user, item, kinds, ts, session, query = (
        a[order] for a in (user, item, kinds, ts, session, query)
    )
    item_ids = items["item_id"].to_numpy()
    price = items["price"].to_numpy()
    uniq_sessions, session_code = np.unique(session, return_inverse=True)
    mobile = (rng.random(len(uniq_sessions)) < 0.65)[session_code]
    session_names = np.array([f"s{s:07d}" for s in range(len(uniq_sessions))], dtype=object)
    return pd.DataFrame(
        {
            "user_id": users["user_id"].to_numpy()[user],
            "item_id": np.where(item >= 0, item_ids[np.maximum(item, 0)], None),
            "type": kinds,
            "timestamp": ts,
            "session_id": session_names[session_code],
            "query": query,
            "value": np.where(kinds == "purchase", price[np.maximum(item, 0)], np.nan),
            "context": np.where(mobile, '{"device": "mobile"}', '{"device": "desktop"}'),
        }
    )


def write_store(cfg: StoreConfig, out: str | Path) -> dict[str, int]:
    """Generate and write ``items.parquet``, ``users.parquet``, ``events.parquet``,
    and the latent truth under ``truth/``.

    ``truth/tastes.parquet``, a row per user: ``leaf_1..3`` the favourite leaf
    categories (most favoured first, shares ``FAVOURITE_SHARES``), ``brand_1..2``
    the favourite brands, ``price_band`` in [0, 1], ``activity`` (the session
    rate's multiplier). ``truth/traits.parquet``, a row per item: ``leaf``,
    ``brand``, ``price_rank`` (0 cheapest … 1 dearest within its leaf) and
    ``popularity`` (how often it is drawn as a candidate). Leaves and brands
    are the generator's codes: a leaf indexes the vocabulary's leaves in order,
    a brand is ``6 × top category + brand``.
    """
    out = Path(out)
    (out / TRUTH_DIR).mkdir(parents=True, exist_ok=True)
    items, users, events, tastes, traits = _generate(cfg)
    items.to_parquet(out / "items.parquet", index=False)
    users.to_parquet(out / "users.parquet", index=False)
    events.to_parquet(out / "events.parquet", index=False)
    tastes.to_parquet(out / TRUTH_DIR / TASTES_FILE, index=False)
    traits.to_parquet(out / TRUTH_DIR / TRAITS_FILE, index=False)
    return {"users": len(users), "items": len(items), "events": len(events)}
