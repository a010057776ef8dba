"""What personalizes a search: each user's recent events, read as affinity
for the categories and brands of the items they touched.

A user's profile is their last ``RECENT`` events (item id and behaviour
weight, a purchase counting more than a view). An item's affinity is the
share of that weight on its leaf category, half the share on its top-level
category, plus the share on its brand. Profiles hold item ids, not rows, so
they survive catalog updates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shopsense.data.erasure import replace_file
from shopsense.data.schema import DEFAULT_EVENT_WEIGHTS
from shopsense.search.catalog import Catalog

RECENT = 50


class UserProfiles:
    """Every user's recent events, read as affinity.

    The users from the index are one frame sorted by user, each user a slice of
    it: a hundred thousand users are a few arrays, not a hundred thousand small
    frames (gigabytes, and millions of objects for the garbage collector to walk).
    Events since the index was built are not kept here: the service owns each
    user's live session (its state store) and passes it with each search."""

    def __init__(self, events: pd.DataFrame) -> None:
        """``events``: user_id, item_id, weight, timestamp."""
        if not len(events):
            events = pd.DataFrame(
                {"user_id": [], "item_id": [], "weight": [], "timestamp": np.empty(0, np.int64)}
            )
        users = events["user_id"].astype(str).to_numpy()
        order = np.argsort(users, kind="stable")
        users = users[order]
        # Item ids as codes into the distinct ids: millions of events, thousands of items.
        codes, names = pd.factorize(events["item_id"].astype(str))
        self._item_names = np.asarray(names, object)
        self._item_codes = codes.astype(np.int32)[order]
        self._weights = events["weight"].to_numpy(np.float64)[order]
        self._timestamps = events["timestamp"].to_numpy(np.int64)[order]
        firsts = np.r_[True, users[1:] != users[:-1]] if len(users) else np.empty(0, bool)
        starts = np.flatnonzero(firsts)
        ends = np.r_[starts[1:], len(users)].astype(np.int64)[: len(starts)]
        self._slices = {
            u: (a, b) for u, a, b in zip(users[starts], starts.tolist(), ends.tolist(), strict=True)
        }

    @classmethod
    def from_events(cls, events: pd.DataFrame) -> UserProfiles:
        """From source-id events (user_id, item_id, type, timestamp)."""
        weights = events["type"].map(DEFAULT_EVENT_WEIGHTS)
        keep = weights.notna() & events["item_id"].notna()
        frame = pd.DataFrame(
            {
                "user_id": events["user_id"][keep].astype(str).to_numpy(),
                "item_id": events["item_id"][keep].astype(str).to_numpy(),
                "weight": weights[keep].to_numpy(np.float64),
                "timestamp": events["timestamp"][keep].to_numpy(np.int64),
            }
        )
        frame = frame.sort_values(["user_id", "timestamp"], kind="stable")
        frame = frame.groupby("user_id", sort=False).tail(RECENT).reset_index(drop=True)
        return cls(frame)

    def recent(self, user_id: str, session: pd.DataFrame | None = None) -> pd.DataFrame | None:
        """The user's last ``RECENT`` events (item_id, weight, timestamp), oldest
        first: those of the index, then ``session`` (item_id, type, timestamp:
        the events since), or None when there are none."""
        span = self._slices.get(user_id)
        known = None
        if span is not None:
            a, b = span
            known = pd.DataFrame(
                {
                    "item_id": self._item_names[self._item_codes[a:b]],
                    "weight": self._weights[a:b],
                    "timestamp": self._timestamps[a:b],
                }
            )
        if session is None or not len(session):
            return known
        fresh = pd.DataFrame(
            {
                "item_id": session["item_id"].astype(str).to_numpy(),
                "weight": session["type"].map(DEFAULT_EVENT_WEIGHTS).fillna(0.0).to_numpy(),
                "timestamp": session["timestamp"].to_numpy(np.int64),
            }
        )
        both = fresh if known is None else pd.concat([known, fresh], ignore_index=True)
        both = both.drop_duplicates(["item_id", "timestamp"], keep="last")
        return both.sort_values("timestamp", kind="stable").tail(RECENT)

    def forget(self, user_id: str) -> None:
        self._slices.pop(user_id, None)

    def __contains__(self, user_id: str) -> bool:
        return user_id in self._slices

    def affinity(
        self, user_id: str, catalog: Catalog, rows: np.ndarray, session: pd.DataFrame | None = None
    ) -> np.ndarray:
        """Each row's affinity for the user (with their live ``session``, as in
        ``recent``), 0 for a user with no events."""
        out = np.zeros(len(rows), np.float64)
        events = self.recent(user_id, session)
        if events is None or not len(rows):
            return out
        seen = [catalog.row_of.get(i, -1) for i in events["item_id"]]
        seen_rows = np.array(seen, np.int64)
        weight = events["weight"].to_numpy()[seen_rows >= 0]
        seen_rows = seen_rows[seen_rows >= 0]
        total = weight.sum()
        if total <= 0:
            return out
        path_codes, _, per_path, _ = catalog.paths
        top = np.array([p[0] if p else -1 for p in per_path] + [-1], np.int64)
        brand_codes, _ = catalog.brand_codes
        for codes, scale in ((path_codes, 1.0), (top[path_codes], 0.5), (brand_codes, 1.0)):
            share = pd.Series(weight).groupby(codes[seen_rows]).sum() / total
            share = share[share.index >= 0]
            out += scale * pd.Series(codes[rows]).map(share).fillna(0.0).to_numpy()
        return out

    def save(self, path: Path) -> None:
        """The index's events (not the live ones) of the users not forgotten."""
        spans = np.array(list(self._slices.values()), np.int64).reshape(-1, 2)
        lengths = spans[:, 1] - spans[:, 0]
        rows = np.concatenate([np.arange(a, b) for a, b in spans] + [np.empty(0, np.int64)])
        frame = pd.DataFrame(
            {
                "user_id": np.repeat(np.array(list(self._slices), object), lengths),
                "item_id": self._item_names[self._item_codes[rows]],
                "weight": self._weights[rows],
                "timestamp": self._timestamps[rows],
            }
        )
        frame.to_parquet(path, index=False)

    def erase(self, user_id: str, path: Path) -> int:
        """Forget the user and rewrite the index's file ``path`` without them;
        returns how many of their events the file held."""
        span = self._slices.get(user_id)
        self.forget(user_id)
        if span is None:
            return 0
        replace_file(path, self.save)
        return span[1] - span[0]

    @classmethod
    def load(cls, path: Path) -> UserProfiles:
        return cls(pd.read_parquet(path) if path.is_file() else pd.DataFrame())
