"""Simulated shoppers: the truth they act by, and the driver that sends them to
a running service over HTTP."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import uvicorn
from click.testing import CliRunner

from shopsense.data.synthetic import (
    TASTES_FILE,
    TRAITS_FILE,
    TRUTH_DIR,
    StoreConfig,
    write_store,
)
from shopsense.data.synthetic_vocab import TOPS
from shopsense.errors import ShopsenseError
from shopsense.models.registry import create_model
from shopsense.search.engine import build_index
from shopsense.serving.app import create_app
from shopsense.serving.service import ServiceSettings
from shopsense.serving.store import open_store
from shopsense.simulation.commands import simulate
from shopsense.simulation.driver import Simulation, loopback_address
from shopsense.simulation.shoppers import ShopperModel
from tests.serving_helpers import free_port

GOLDEN_STORE = StoreConfig(users=120, items=90, days=10, seed=7)
GOLDEN_DIGESTS = {"items": "1e67bd5ba796c1e9", "users": "0a51008a778e372c",
                  "events": "1fe4eb32399a48bc"}  # fmt: skip
"""Taken from the generator before it wrote the truth: the store a seed gives
must not change (change these only when the store is meant to change)."""
LEAF_NOUNS = [(leaf.noun, leaf.noun_zh) for top in TOPS for leaf in top.leaves]


@pytest.fixture(scope="module")
def shoppers(raw_store) -> ShopperModel:
    return ShopperModel.from_raw(raw_store)


def favourites(model: ShopperModel, user_id: str, k: int = 10) -> list[str]:
    """The user's favourite-leaf items of a favourite brand first, from the
    tastes alone (not from the attraction under test)."""
    taste = model.tastes.set_index("user_id").loc[user_id]
    traits = model.traits
    leaf = traits["leaf"].isin([taste.leaf_1, taste.leaf_2, taste.leaf_3])
    brand = traits["brand"].isin([taste.brand_1, taste.brand_2])
    fit = -(traits["price_rank"] - taste.price_band).abs()
    order = np.lexsort((-fit.to_numpy(), -brand.to_numpy(int), -leaf.to_numpy(int)))
    return list(traits["item_id"].to_numpy()[order[:k]])


def frame_digest(frame: pd.DataFrame) -> str:
    """The table's content (not its Parquet bytes, which carry the writer's version)."""
    digest = hashlib.sha256()
    for name in frame.columns:
        column = frame[name]
        digest.update(name.encode())
        if pd.api.types.is_numeric_dtype(column):
            digest.update(str(column.dtype).encode() + column.to_numpy().tobytes())
        else:
            digest.update("\x1f".join("\x00" if pd.isna(v) else str(v) for v in column).encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------- the store's truth
def test_the_store_is_as_before_and_its_truth_beside_it(tmp_path):
    write_store(GOLDEN_STORE, tmp_path)
    tables = {n: pd.read_parquet(tmp_path / f"{n}.parquet") for n in GOLDEN_DIGESTS}
    assert {n: frame_digest(t) for n, t in tables.items()} == GOLDEN_DIGESTS
    tastes = pd.read_parquet(tmp_path / TRUTH_DIR / TASTES_FILE)
    traits = pd.read_parquet(tmp_path / TRUTH_DIR / TRAITS_FILE)
    assert tastes["user_id"].tolist() == tables["users"]["user_id"].tolist()
    assert traits["item_id"].tolist() == tables["items"]["item_id"].tolist()
    assert tastes["price_band"].between(0, 1).all() and (tastes["activity"] > 0).all()
    # An item's brand code names its top category, as its category path does.
    tops = tables["items"]["category"].str.split(" > ").str[0]
    assert (traits["brand"] // 6).map(lambda t: TOPS[t].name).tolist() == tops.tolist()


def test_ingest_reads_none_of_the_truth(store_dir):
    manifest = json.loads((store_dir / "manifest.json").read_text())
    files = sorted(Path(f).name for f in manifest["source"]["files"])
    assert files == ["events.parquet", "items.parquet", "users.parquet"]


def test_a_folder_without_truth_is_a_clear_error(tmp_path):
    with pytest.raises(ShopsenseError, match="truth"):
        ShopperModel.from_raw(tmp_path)


# ------------------------------------------------------------------------ the model
def test_a_list_of_favourites_beats_a_random_list(shoppers):
    rng = np.random.default_rng(0)
    users = list(shoppers.users[:150])
    good = shoppers.expected_many(users, [favourites(shoppers, u) for u in users])
    random = shoppers.expected_many(users, rng.choice(shoppers.items, (len(users), 10)))
    good_ctr, random_ctr = good.clicks.mean(), random.clicks.mean()
    assert 0.01 < good_ctr < 0.3  # clicks per list: what a store sees
    assert random_ctr < good_ctr / 5
    assert good.revenue.mean() > 5 * random.revenue.mean()
    assert shoppers.expected(users[0], favourites(shoppers, users[0])) == good[0]


def test_expected_values_are_the_mean_of_the_draws(shoppers):
    """With eager shoppers (a weak outside option) purchases are common enough
    for the draws to pin each stage's probability down."""
    shoppers = ShopperModel(shoppers.tastes, shoppers.traits, shoppers.catalogue, click_bias=3.0)
    user = shoppers.users[3]
    shown = favourites(shoppers, user)
    n = 40_000
    draws = shoppers.respond_many([user] * n, [shown] * n, np.random.default_rng(1))
    truth = shoppers.expected(user, shown)
    observed = {
        "clicks": draws.clicked.sum(axis=1),
        "carts": draws.carted.sum(axis=1),
        "purchases": draws.purchased.sum(axis=1),
        "revenue": draws.values.sum(axis=1),
        "buy_probability": draws.purchased.any(axis=1),
    }
    for name, values in observed.items():
        error = values.std() / np.sqrt(n)
        assert abs(values.mean() - getattr(truth, name)) < 4 * error + 1e-12, name
    assert truth.clicks > truth.carts > truth.purchases > 0
    one = shoppers.respond(user, shown, np.random.default_rng(2))
    assert set(one.purchased) <= set(one.carted) <= {shown[r] for r in one.clicked}
    prices = dict(zip(shoppers.items, shoppers.prices, strict=True))
    assert one.values == tuple(prices[i] for i in one.purchased)


def test_examination_falls_with_position(shoppers):
    examined = shoppers.examination(10)
    assert examined[0] == 1.0 and (np.diff(examined) < 0).all()
    assert np.allclose(examined * np.arange(1, 11), 1.0)  # 1 / (r + 1) at eta = 1
    flat = ShopperModel(shoppers.tastes, shoppers.traits, shoppers.catalogue, eta=0.0)
    assert (flat.examination(5) == 1.0).all()
    # The same items lower in a list are clicked less.
    user, shown = shoppers.users[0], favourites(shoppers, shoppers.users[0], 2)
    assert (
        shoppers.click_probability([user], [shown])[0, 0]
        > shoppers.click_probability([user], [shown[::-1]])[0, 1]
    )
    with pytest.raises(ShopsenseError):
        shoppers.examination(-1)


def test_shifted_moves_the_tastes_of_that_fraction_of_users(shoppers):
    before = shoppers.tastes.copy()
    moved = shoppers.shifted(0.25, np.random.default_rng(4))
    after = moved.tastes
    assert shoppers.tastes.equals(before)  # a copy: the model itself stays
    changed = before["leaf_1"] != after["leaf_1"]
    assert changed.sum() == round(0.25 * len(before))
    old = before.loc[changed, ["leaf_1", "leaf_2", "leaf_3"]].to_numpy()
    assert not (old == after.loc[changed, "leaf_1"].to_numpy()[:, None]).any()
    unmoved = before.loc[~changed]
    assert unmoved.equals(after.loc[~changed])
    assert after.loc[changed, ["leaf_2", "leaf_3", "price_band"]].equals(
        before.loc[changed, ["leaf_2", "leaf_3", "price_band"]]
    )
    # The new favourite brand is that of an item of the new favourite leaf.
    pairs = set(zip(shoppers.traits["leaf"], shoppers.traits["brand"], strict=True))
    new = after.loc[changed, ["leaf_1", "brand_1"]].itertuples(index=False)
    assert all((leaf, brand) in pairs for leaf, brand in new)
    # The old favourites' list now does worse for the users who moved.
    users = list(before.loc[changed, "user_id"][:60])
    lists = [favourites(shoppers, u) for u in users]
    old_ctr = shoppers.expected_many(users, lists).clicks.mean()
    assert moved.expected_many(users, lists).clicks.mean() < 0.8 * old_ctr
    assert shoppers.shifted(0.0, np.random.default_rng(4)).tastes.equals(before)
    with pytest.raises(ShopsenseError):
        shoppers.shifted(1.5, np.random.default_rng(4))


def test_unknown_users_are_refused_and_unknown_items_never_clicked(shoppers):
    user = shoppers.users[0]
    with pytest.raises(ShopsenseError, match="unknown users"):
        shoppers.expected("nobody", ["i000001"])
    liked = favourites(shoppers, user, 1)[0]
    assert shoppers.attraction([user], ["zz-new", liked]).tolist()[0][0] == 0.0
    traits = shoppers.traits[shoppers.traits["item_id"] == liked].assign(item_id="zz-new")
    grown = shoppers.with_items(traits.drop(columns="popularity"))
    twins = grown.attraction([user], ["zz-new", liked])[0]
    assert twins[0] == twins[1] > 0  # the same traits, the same attraction
    assert grown.expected(user, ["zz-new"]) == grown.expected(user, [liked])
    with pytest.raises(ShopsenseError, match="already"):
        grown.with_items(traits)


def test_a_query_names_a_favourite_leaf(shoppers):
    rng = np.random.default_rng(5)
    tastes = shoppers.tastes.set_index("user_id")
    hits = 0
    for user in shoppers.users[:60]:
        query = shoppers.query(user, rng)
        nouns = [LEAF_NOUNS[leaf] for leaf in tastes.loc[user, ["leaf_1", "leaf_2", "leaf_3"]]]
        hits += any(en in query or zh in query for en, zh in nouns)
    assert hits >= 55  # a favourite leaf without items falls back to any item


def test_browsing_views_a_few_items_of_a_favourite_leaf_as_the_generator_does(shoppers):
    rng = np.random.default_rng(9)
    tastes = shoppers.tastes.set_index("user_id")
    leaf = shoppers.traits.set_index("item_id")["leaf"]
    counts, in_favourites = [], []
    for user in shoppers.users[:300]:
        viewed = shoppers.browse(user, rng)
        counts.append(len(viewed))
        favourite = set(tastes.loc[user, ["leaf_1", "leaf_2", "leaf_3"]])
        in_favourites += [leaf[item] in favourite for item in viewed]
    assert min(counts) >= 1 and max(counts) <= 15
    assert abs(np.mean(counts) - 1 / 0.3) < 0.5  # geometric(0.3), as the generator's sessions
    assert np.mean(in_favourites) > 0.6  # 12% explore; a leaf without items falls back to any


# ----------------------------------------------------------------------- the driver
@pytest.fixture(scope="module")
def service(store, store_dir, tmp_path_factory):
    """A real service listening on a loopback port (uvicorn in a thread), ALS
    with few factors and a lexical search index."""
    root = tmp_path_factory.mktemp("simulate")
    create_model("als", factors=8, iterations=3).fit(store).save(root / "models" / "v0001")
    build_index(store.items, root / "index", store.source_events(), semantic=False)
    state = str(root / "state.db")
    settings = ServiceSettings(
        data=store_dir, models=root / "models", index=root / "index", state=state, watch_seconds=0
    )
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}", state
    server.should_exit = True
    thread.join(timeout=30)


def test_shoppers_post_events_that_follow_the_lists_they_were_shown(service, raw_store):
    """Eager shoppers (an outside option far less tempting than the store's
    own) so that 30 of them surely click, cart and buy."""
    url, state = service
    shoppers = ShopperModel.from_raw(raw_store, click_bias=1.0)
    report = Simulation(url, shoppers, shoppers=30, seed=1, seconds=60, concurrency=3).run()
    print(report.render())
    assert report.stopped == "done" and report.shoppers == 30 and report.failures == {}
    assert report.searched
    store = open_store(state)
    events = [e for _, e in store.events(limit=100_000) if (e.session_id or "").startswith("sim1-")]
    assert len(events) == report.events_posted > 0
    views = [e for e in events if e.request_id is None]  # their own browsing: follows no list
    assert views and all(e.type == "view" for e in views)
    assert {e.item_id for e in views} <= set(shoppers.items)
    events = [e for e in events if e.request_id is not None]
    impressions: dict[str, tuple[str, ...]] = {}
    deadline = time.monotonic() + 10  # impressions are written off the request path
    while time.monotonic() < deadline:
        impressions = {i.request_id: i.items for _, i in store.impressions(limit=100_000)}
        if all(e.request_id in impressions for e in events):
            break
        time.sleep(0.2)
    assert all(e.item_id in impressions[e.request_id] for e in events)
    prices = dict(zip(shoppers.items, shoppers.prices, strict=True))
    purchases = [e for e in events if e.type == "purchase"]
    assert purchases and all(e.value == prices[e.item_id] for e in purchases)
    arms = {(a["placement"], a["experiment"], a["arm"]): a for a in report.arms}
    assert {p for p, _, _ in arms} == {"recommendations", "search"}
    for kind in ("click", "cart", "purchase"):
        counted = sum(a[f"{kind}s"] for a in arms.values())
        assert counted == sum(e.type == kind for e in events)
    recommended = arms[("recommendations", None, None)]
    assert recommended["shoppers"] == 30 and recommended["impressions"] >= 30
    assert 0 < recommended["true"]["ctr"] < 1 and recommended["true"]["revenue_per_shopper"] > 0
    assert report.requests_per_second > 0 and report.latency_ms["all"]["p99"] > 0


def test_who_shops_is_drawn_by_activity_and_fixed_by_the_seed(shoppers):
    def chosen(seed: int) -> np.ndarray:
        return Simulation("http://127.0.0.1:1", shoppers, 100, seed).chosen()

    assert (chosen(3) == chosen(3)).all() and not (chosen(3) == chosen(4)).all()
    assert len(set(chosen(3))) == 100
    assert shoppers.activity[chosen(3)].mean() > shoppers.activity.mean()


def test_the_command_stops_at_seconds(service, raw_store):
    url, _ = service
    args = ["--url", url, "--data", str(raw_store), "--shoppers", "400", "--seed", "2",
            "--seconds", "0.5", "--concurrency", "1", "--json"]  # fmt: skip
    started = time.monotonic()
    result = CliRunner().invoke(simulate, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["stopped"] == "time" and 0 < report["shoppers"] < 400
    assert time.monotonic() - started < 30  # no longer than a request in flight past 0.5 s
    text = CliRunner().invoke(simulate, args[:-1])
    assert text.exit_code == 0 and "stopped: time" in text.output


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1:8000", "http://example.com", "https://127.0.0.1:8000",
     "http://127.0.0.1.example.com:80", "ftp://localhost/"],
)  # fmt: skip
def test_only_a_service_on_this_machine_is_driven(url, raw_store, shoppers):
    with pytest.raises(ShopsenseError, match="--url"):
        Simulation(url, shoppers, 10)
    result = CliRunner().invoke(simulate, ["--url", url, "--data", str(raw_store)])
    assert result.exit_code == 2 and "--url" in result.output
    assert loopback_address("http://localhost:8000/shop/") == ("localhost", 8000, "/shop")
    assert loopback_address("http://[::1]:9000")[:2] == ("::1", 9000)


def test_nothing_listening_and_bad_bounds_are_clear_errors(shoppers):
    with pytest.raises(ShopsenseError, match="no shopsense service answers"):
        Simulation(f"http://127.0.0.1:{free_port()}", shoppers, 10).run()
    with pytest.raises(ShopsenseError, match="shoppers"):
        Simulation("http://127.0.0.1:1", shoppers, len(shoppers.users) + 1)
    with pytest.raises(ShopsenseError, match="seconds"):
        Simulation("http://127.0.0.1:1", shoppers, 10, seconds=0)
