"""Splits: who goes where, determinism, and no leakage of the future into train."""

import numpy as np
import pandas as pd
import pytest

from shopsense.data.dataset import Dataset, event_type_dtype
from shopsense.data.split import split_dataset
from shopsense.errors import ShopsenseError


def tiny(events: list[tuple[int, int, str, int]], n_users: int, n_items: int) -> Dataset:
    frame = pd.DataFrame(events, columns=["user", "item", "type", "timestamp"])
    frame["user"] = frame["user"].astype(np.int32)
    frame["item"] = frame["item"].astype(np.int32)
    frame["type"] = frame["type"].astype(event_type_dtype())
    for col in ("session", "query", "context"):
        frame[col] = None
    frame["value"] = np.nan
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)]})
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(n_users)]})
    return Dataset(items, users, frame, {"name": "tiny"})


def test_leave_one_out_holds_out_new_items_by_first_occurrence():
    ds = tiny(
        [
            (0, 0, "view", 1),
            (0, 1, "view", 2),
            (0, 1, "cart", 3),
            (0, 2, "view", 4),
            (0, 2, "purchase", 5),
            (0, 3, "view", 6),
            (1, 0, "view", 1),
            (1, 4, "view", 2),  # two items: test only
            (2, 1, "view", 1),  # one item: train only
        ],
        n_users=3,
        n_items=5,
    )
    s = split_dataset(ds, "loo")
    assert s.test[["user", "item"]].values.tolist() == [[0, 3], [1, 4]]
    assert s.valid[["user", "item"]].values.tolist() == [[0, 2]]
    train = s.train.interactions
    # User 0's train stops before the first event on the validation item.
    assert train[train.user == 0]["timestamp"].max() == 3
    assert set(train[train.user == 2]["item"]) == {1}


def test_repeat_events_do_not_become_targets():
    ds = tiny(
        [(0, 0, "view", 1), (0, 1, "view", 2), (0, 1, "cart", 3), (0, 1, "purchase", 4)],
        n_users=1,
        n_items=2,
    )
    s = split_dataset(ds, "loo")
    assert s.test["item"].tolist() == [1]
    assert 1 not in set(s.train.interactions["item"])


def test_random_split_counts_match_recbole_rounding(store):
    s = split_dataset(store, "random", seed=1)
    pairs = store.interactions.drop_duplicates(["user", "item"])
    n = pairs.groupby("user").size()
    n_test = s.test.groupby("user").size().reindex(n.index, fill_value=0)
    n_valid = s.valid.groupby("user").size().reindex(n.index, fill_value=0)
    expected = np.floor(0.1 * n.to_numpy())
    train_left = n.to_numpy() - 2 * expected
    bump = (train_left > 1) & (0.1 * n.to_numpy() < 1)
    np.testing.assert_array_equal(n_test.to_numpy(), expected + bump)
    bump_valid = bump & (train_left - bump > 1)
    np.testing.assert_array_equal(n_valid.to_numpy(), expected + bump_valid)


def test_random_split_is_deterministic_and_seed_dependent(store):
    a = split_dataset(store, "random", seed=5).test
    b = split_dataset(store, "random", seed=5).test
    c = split_dataset(store, "random", seed=6).test
    pd.testing.assert_frame_equal(a, b)
    assert not a[["user", "item"]].equals(c[["user", "item"]])


def test_temporal_split_puts_the_future_in_test(store):
    s = split_dataset(store, "temporal")
    assert s.train.interactions["timestamp"].max() <= s.valid["timestamp"].min()
    assert s.valid["timestamp"].max() <= s.test["timestamp"].min()
    n_pairs = len(store.interactions.drop_duplicates(["user", "item"]))
    assert len(s.test) == pytest.approx(0.1 * n_pairs, abs=2)


def test_no_target_is_in_its_history(store):
    for method in ("loo", "random", "temporal"):
        s = split_dataset(store, method)
        overlap = s.history("test").multiply(s.targets("test"))
        assert overlap.nnz == 0, method


def test_bad_split_arguments(store):
    with pytest.raises(ShopsenseError):
        split_dataset(store, "bogus")
    with pytest.raises(ShopsenseError):
        split_dataset(store, "random", ratios=(0.5, 0.1, 0.1))
    ordered = Dataset(store.items, store.users, store.events, {"time_is_order": True})
    with pytest.raises(ShopsenseError):
        split_dataset(ordered, "temporal")


def test_refit_data_is_train_plus_validation(store):
    s = split_dataset(store, "loo")
    refit = s.refit_data()
    assert len(refit.events) == len(s.train.events) + len(s.valid)
    assert refit.n_users == s.train.n_users and refit.n_items == s.train.n_items
    # A model refit on it sees exactly the history test ranks from.
    assert (refit.user_item_matrix() != s.history("test")).nnz == 0


def test_refit_data_can_keep_some_users_validation_steps_out(store):
    s = split_dataset(store, "loo")
    kept_out = s.valid["user"].unique()[:5]
    data = s.refit_data(keep_out=kept_out)
    others = s.valid[~s.valid["user"].isin(kept_out)]
    assert len(data.events) == len(s.train.events) + len(others)
    seen = data.user_item_matrix()
    for user, item in s.valid[["user", "item"]].itertuples(index=False):
        assert seen[user, item] == (0 if user in kept_out else 1)
    assert s.refit_data() is s.refit_data()  # the whole of it is cached, a part is not
