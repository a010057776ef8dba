"""The synthetic store: deterministic, realistic in shape, and learnable."""

import datetime as dt
import json

import numpy as np
import pandas as pd

from shopsense.data.split import split_dataset
from shopsense.data.synthetic import StoreConfig, generate_store
from shopsense.evaluation.evaluate import evaluate
from shopsense.models.itemknn import ItemKNN
from shopsense.models.pop import Popularity

CFG = StoreConfig(users=300, items=400, days=45, seed=11)


def test_same_seed_same_store_other_seed_other_store():
    a = generate_store(CFG)
    b = generate_store(CFG)
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(x, y)
    c = generate_store(StoreConfig(users=300, items=400, days=45, seed=12))
    assert not a[2]["item_id"].equals(c[2]["item_id"])


def test_catalog_is_rich():
    items, _, _ = generate_store(StoreConfig(users=50, items=3000, days=7, seed=0))
    paths = items["category"].str.split(" > ")
    assert paths.str[0].nunique() >= 8
    assert items["category"].nunique() >= 50
    assert items["title"].str.contains(r"[\u4e00-\u9fff]").mean() > 0.1  # Chinese titles
    assert items["title"].str.contains(r"^[A-Za-z]").mean() > 0.6  # English titles
    assert items["brand"].nunique() >= 40
    assert (items["price"] > 0).all()
    # Prices differ by category: laptops cost more than socks.
    by_leaf = items.groupby("category")["price"].median()
    assert by_leaf["Electronics > Laptops"] > 10 * by_leaf["Clothing > Socks"]
    assert json.loads(items["attributes"].iloc[0])


def test_behaviour_has_the_shapes_of_a_store():
    items, users, events = generate_store(CFG)
    types = events["type"].value_counts()
    assert types["view"] > types["cart"] > types["purchase"] > 0
    assert {"click", "fav", "search"} <= set(types.index)
    # Funnels: each purchase follows a cart of that item by the same user.
    carts = set(
        zip(
            events.loc[events.type == "cart", "user_id"],
            events.loc[events.type == "cart", "item_id"],
            strict=True,
        )
    )
    buys = events[events.type == "purchase"]
    assert all((u, i) in carts for u, i in zip(buys.user_id, buys.item_id, strict=True))
    # Repeat purchases of consumables.
    repeat = buys.groupby(["user_id", "item_id"]).size()
    assert (repeat > 1).sum() > 0
    # A search's words match the first item viewed in that session.
    titles = dict(zip(items.item_id, items.title.str.lower(), strict=True))
    searches = events[events.type == "search"].set_index("session_id")["query"]
    views = events[events.type == "view"].groupby("session_id")["item_id"].first()
    matched = [
        any(word in titles[views[s]] for word in q.split())
        for s, q in searches.items()
        if s in views
    ]
    assert np.mean(matched) > 0.95
    # Evenings busier than early mornings; a long-tail item popularity.
    hours = pd.to_datetime(events["timestamp"], unit="s").dt.hour
    assert (hours == 20).sum() > 3 * (hours == 4).sum()
    counts = events.loc[events.type == "view", "item_id"].value_counts()
    assert counts.iloc[: len(counts) // 10].sum() > 0.3 * counts.sum()
    assert json.loads(users["attributes"].iloc[0]) is not None


def test_holiday_bump():
    cfg = StoreConfig(users=800, items=300, days=30, seed=1, end=dt.date(2026, 11, 20))
    _, _, events = generate_store(cfg)
    day = pd.to_datetime(events["timestamp"], unit="s").dt.date
    per_day = day.value_counts()
    assert per_day[dt.date(2026, 11, 11)] > 1.8 * per_day.median()
    end_ts = dt.datetime(2026, 11, 21, tzinfo=dt.UTC).timestamp()
    assert events["timestamp"].max() < end_ts


def test_itemknn_beats_popularity(store):
    split = split_dataset(store, "loo")
    pop = evaluate(Popularity().fit(split.train), split, ks=(10,))
    knn = evaluate(ItemKNN().fit(split.train), split, ks=(10,))
    assert knn["NDCG@10"] > 2 * pop["NDCG@10"]
    assert knn["Recall@10"] > pop["Recall@10"]


def test_a_catalogue_smaller_than_the_category_tree_is_generated():
    """Sessions are drawn over every leaf category; with five items most leaves
    hold none (this was an IndexError)."""
    items, users, events = generate_store(StoreConfig(users=50, items=5, days=5, seed=1))
    assert len(items) == 5 and len(users) == 50
    assert set(events["item_id"].dropna()) <= set(items["item_id"])
