"""Personalization: a known user's results lean toward the categories and
brands of what they did (the index's profile and their live session).

The relevance scores are min-max scaled to 0..1 and the user's affinity,
scaled so their best item has 1, is added times ``strength``: the two are on
one scale whatever the retrievers' or the ranker's score range, so one
strength means the same for every query.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shopsense.search.catalog import Catalog
from shopsense.search.profiles import UserProfiles


def personalize(
    rows: np.ndarray,
    score: np.ndarray,
    user_id: str | None,
    session: pd.DataFrame | None,
    strength: float,
    profiles: UserProfiles,
    catalog: Catalog,
) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` re-ordered by relevance plus ``strength`` times affinity; as
    they are for an anonymous or unknown user, or a strength of 0."""
    known = user_id is not None and (user_id in profiles or session is not None)
    if not (known and strength > 0 and len(rows)):
        return rows, score
    affinity = profiles.affinity(user_id, catalog, rows, session)
    span = score.max() - score.min()
    base = (score - score.min()) / span if span > 0 else np.ones(len(score))
    top = affinity.max()
    score = base + strength * (affinity / top if top > 0 else affinity)
    order = np.argsort(-score, kind="stable")
    return rows[order], score[order]
