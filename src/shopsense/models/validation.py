"""Validation during training on a fixed sample of users.

A validation pass ranks the whole catalogue for every user it covers; on a
store of tens of thousands of users that pass can cost as much as an epoch.
Choosing the best epoch needs epochs compared, not every user scored: the
sample is fixed (the same users after every epoch, drawn from the seed), so
each comparison is paired and the sample's noise mostly cancels out of it.
"""

from __future__ import annotations

import numpy as np

from shopsense.data.split import Split


def validation_sample(split: Split, n_users: int | None, seed: int) -> Split:
    """``split`` with its validation part cut to ``n_users`` users drawn with
    ``seed`` (``split`` itself when it has no more, or ``n_users`` is None).
    The training part and the histories it implies are the same."""
    users = np.unique(split.valid["user"].to_numpy())
    if n_users is None or len(users) <= n_users:
        return split
    chosen = np.random.default_rng(seed).choice(users, n_users, replace=False)
    valid = split.valid[split.valid["user"].isin(chosen)]
    return Split(split.train, valid, split.test, split.method)


def validation_users(split: Split) -> int:
    """How many users a validation pass on ``split`` covers."""
    return int(split.valid["user"].nunique())
