"""Team-draft interleaving of two rankers, and the preference test over users.

Interleaving shows one list merged from rankers ``a`` and ``b`` and credits
each click to the ranker that contributed the clicked item, so both rankers
are judged on the same shopper at the same moment; it needs one to two
orders of magnitude less traffic than an A/B test (Chapelle et al. 2012,
"Large-scale validation and analysis of interleaved search evaluation").

- :func:`team_draft` is Radlinski, Kurup and Joachims's team draft (2008):
  the team with fewer picks picks next, a coin decides when they are even,
  and each team contributes its highest-ranked item not yet shown.
- :func:`preference_test` counts, per user over all their interleaved
  impressions, which ranker earned more clicks. The preference is
  ``(prefer_b - prefer_a) / (users with a preference)``, in [-1, 1],
  positive when ``b`` is better; its test is the exact two-sided sign
  (binomial) test of "each preferring user is as likely to prefer either",
  and its interval the exact (Clopper-Pearson) one of that binomial,
  rescaled. Users whose clicks credit both equally, or who did not click,
  say nothing about which ranker is better and are counted apart, not
  halved into the preference as Chapelle et al.'s Delta does: it would only
  shrink the figure towards 0, not change the test's verdict.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from shopsense.errors import ShopsenseError
from shopsense.evaluation.online import finite_values, json_ready

TEAMS = ("a", "b")


def team_draft(
    a: Sequence[str], b: Sequence[str], k: int, rng: np.random.Generator
) -> tuple[list[str], list[str]]:
    """Team-draft interleaving (Radlinski et al. 2008): the merged top-k and, per position,
    the team ("a" or "b") that contributed it; duplicates skipped.

    When one ranking runs out, the other fills the list; it is shorter than
    ``k`` only when both have run out.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
        raise ShopsenseError(f"k must be a non-negative integer, got {k!r}")
    rankings = {"a": a, "b": b}
    next_rank = {"a": 0, "b": 0}
    picks = {"a": 0, "b": 0}
    merged: list[str] = []
    teams: list[str] = []
    shown: set[str] = set()
    while len(merged) < k:
        for team in TEAMS:
            ranking = rankings[team]
            while next_rank[team] < len(ranking) and ranking[next_rank[team]] in shown:
                next_rank[team] += 1
        open_teams = [team for team in TEAMS if next_rank[team] < len(rankings[team])]
        if not open_teams:
            break
        if len(open_teams) == 1:
            team = open_teams[0]
        elif picks["a"] != picks["b"]:
            team = "a" if picks["a"] < picks["b"] else "b"
        else:
            team = "a" if rng.random() < 0.5 else "b"
        item = rankings[team][next_rank[team]]
        merged.append(item)
        teams.append(team)
        shown.add(item)
        picks[team] += 1
    return merged, teams


def credit(teams: Sequence[str], clicked_positions: Iterable[int]) -> tuple[int, int]:
    """Clicks credited to a, to b: each click goes to the team of its (0-based) position."""
    credited = {"a": 0, "b": 0}
    for position in clicked_positions:
        if isinstance(position, bool) or not isinstance(position, int | np.integer):
            raise ShopsenseError(f"a clicked position must be an integer, got {position!r}")
        if not 0 <= position < len(teams):
            raise ShopsenseError(
                f"clicked position {position} is outside the {len(teams)} interleaved items"
            )
        team = teams[position]
        if team not in credited:
            raise ShopsenseError(f"team must be 'a' or 'b', got {team!r}")
        credited[team] += 1
    return credited["a"], credited["b"]


@dataclass(frozen=True)
class Preference:
    """Which ranker the users preferred. ``preference`` is ``(prefer_b - prefer_a) /
    (prefer_a + prefer_b)``: positive when b is better, NaN when no user had a preference."""

    users: int
    prefer_a: int
    prefer_b: int
    ties: int  # users who clicked, crediting both equally
    without_clicks: int
    preference: float
    ci: tuple[float, float]
    p_value: float
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the interval as a list, NaN as None."""
        return json_ready(asdict(self))


def _click_counts(values: Any, name: str) -> np.ndarray:
    counts = finite_values(values, name)
    if (counts < 0).any():
        raise ShopsenseError(f"{name} must be non-negative click counts")
    return counts


def preference_test(credit_a: np.ndarray, credit_b: np.ndarray, alpha: float = 0.05) -> Preference:
    """Per user (arrays aligned by user: clicks credited to a and to b over all their
    interleaved impressions): who wins; a two-sided test over users."""
    if not 0 < alpha < 1:
        raise ShopsenseError(f"alpha must lie in (0, 1), got {alpha}")
    clicks_a = _click_counts(credit_a, "credit_a")
    clicks_b = _click_counts(credit_b, "credit_b")
    if len(clicks_a) != len(clicks_b):
        raise ShopsenseError(f"{len(clicks_a)} users credited to a but {len(clicks_b)} to b")
    prefer_a = int((clicks_a > clicks_b).sum())
    prefer_b = int((clicks_b > clicks_a).sum())
    without_clicks = int(((clicks_a == 0) & (clicks_b == 0)).sum())
    ties = len(clicks_a) - prefer_a - prefer_b - without_clicks
    preferring = prefer_a + prefer_b
    if preferring == 0:
        preference, ci, p_value = math.nan, (-1.0, 1.0), 1.0
    else:
        test = stats.binomtest(prefer_b, preferring, 0.5)
        share_ci = test.proportion_ci(confidence_level=1 - alpha, method="exact")
        preference = (prefer_b - prefer_a) / preferring
        ci = (2 * share_ci.low - 1, 2 * share_ci.high - 1)
        p_value = float(test.pvalue)
    return Preference(
        users=len(clicks_a),
        prefer_a=prefer_a,
        prefer_b=prefer_b,
        ties=ties,
        without_clicks=without_clicks,
        preference=preference,
        ci=(float(ci[0]), float(ci[1])),
        p_value=p_value,
        alpha=alpha,
    )
