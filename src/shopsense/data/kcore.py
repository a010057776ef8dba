"""Iterative k-core filtering of interactions."""

from __future__ import annotations

import numpy as np


def k_core_mask(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """Events to keep so that every remaining user and item has at least ``k``
    item events. Events without an item (searches) go with their user."""
    keep = np.ones(len(users), bool)
    has_item = items >= 0
    n_users = int(users.max()) + 1 if len(users) else 0
    n_items = int(items.max()) + 1 if len(items) else 0
    while True:
        live = keep & has_item
        user_count = np.bincount(users[live], minlength=n_users)
        item_count = np.bincount(items[live], minlength=max(n_items, 1))
        ok_user = user_count[users] >= k
        ok_item = ~has_item | (item_count[np.maximum(items, 0)] >= k)
        new_keep = keep & ok_user & ok_item
        if new_keep.sum() == keep.sum():
            return new_keep
        keep = new_keep
