"""Team-draft interleaving's properties, and its preference test on simulated clicks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from shopsense.errors import ShopsenseError
from shopsense.evaluation.interleaving import credit, preference_test, team_draft

CATALOGUE = [f"item{i}" for i in range(60)]


def random_ranking(rng: np.random.Generator, length: int = 20) -> list[str]:
    return [CATALOGUE[i] for i in rng.permutation(len(CATALOGUE))[:length]]


def test_team_draft_balances_the_teams_skips_duplicates_and_keeps_each_rankers_order():
    for seed in range(300):
        rng = np.random.default_rng(seed)
        a, b = random_ranking(rng), random_ranking(rng)
        merged, teams = team_draft(a, b, 10, rng)
        assert len(merged) == 10 == len(set(merged)) == len(teams)
        for prefix in range(1, 11):
            assert abs(teams[:prefix].count("a") - teams[:prefix].count("b")) <= 1
        for position, (item, team) in enumerate(zip(merged, teams, strict=True)):
            ranking = a if team == "a" else b
            # Each team contributes its best item not shown yet.
            assert item == next(i for i in ranking if i not in merged[:position])


def test_the_first_pick_goes_to_either_team_evenly_over_seeds():
    a, b = CATALOGUE[:10], CATALOGUE[5:15]
    first = [team_draft(a, b, 4, np.random.default_rng(seed))[1] for seed in range(2000)]
    share_a_first = np.mean([teams[0] == "a" for teams in first])
    assert 0.46 <= share_a_first <= 0.54
    # The pair that follows goes one to each team, in either order.
    assert all(sorted(teams[2:4]) == ["a", "b"] for teams in first)
    assert 0.46 <= np.mean([teams[2] == "a" for teams in first]) <= 0.54


def test_team_draft_when_rankings_overlap_run_out_or_repeat_themselves():
    rng = np.random.default_rng(0)
    merged, teams = team_draft(["x", "y"], ["x", "y"], 5, rng)
    assert sorted(merged) == ["x", "y"] and sorted(teams) == ["a", "b"]
    merged, teams = team_draft(["x"], ["y", "z", "w"], 4, rng)
    assert sorted(merged) == ["w", "x", "y", "z"] and teams.count("b") == 3
    merged, _ = team_draft(["x", "x", "y"], [], 3, rng)
    assert merged == ["x", "y"]
    assert team_draft(["x"], ["y"], 0, rng) == ([], [])
    for k in (-1, 2.5, True):
        with pytest.raises(ShopsenseError):
            team_draft(["x"], ["y"], k, rng)


def test_credit_counts_clicks_by_the_team_at_their_position():
    teams = ["a", "b", "b", "a", "b"]
    assert credit(teams, [1, 3, 4, 4]) == (1, 3)
    assert credit(teams, []) == (0, 0)
    for positions in ([5], [-1], [1.0]):
        with pytest.raises(ShopsenseError):
            credit(teams, positions)
    with pytest.raises(ShopsenseError):
        credit(["a", "c"], [1])


def test_preference_counts_users_by_who_won():
    result = preference_test(np.array([1, 0, 2, 0, 0, 3]), np.array([0, 1, 2, 3, 0, 4]))
    assert (result.prefer_a, result.prefer_b, result.ties, result.without_clicks) == (1, 3, 1, 1)
    assert result.users == 6
    assert result.preference == pytest.approx(0.5)
    # Four preferring users cannot make a two-sided sign test significant.
    assert result.p_value > 0.5
    assert result.ci[0] < 0 < result.ci[1]


def simulate_users(
    rng: np.random.Generator,
    ranker_a,
    ranker_b,
    users: int,
    impressions: int = 4,
    k: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Clicks credited to a and b per user under a position-based click model:
    position ``r`` is examined with probability 1 / (r + 1), an examined item is
    clicked with its relevance to the user."""
    examined = 1.0 / np.arange(1, k + 1)
    credit_a = np.zeros(users)
    credit_b = np.zeros(users)
    for user in range(users):
        relevance = rng.beta(0.6, 2.0, len(CATALOGUE))
        for _ in range(impressions):
            merged, teams = team_draft(ranker_a(relevance, rng), ranker_b(relevance, rng), k, rng)
            chance = examined[: len(merged)] * relevance[[CATALOGUE.index(i) for i in merged]]
            clicked = np.flatnonzero(rng.random(len(merged)) < chance)
            a, b = credit(teams, clicked.tolist())
            credit_a[user] += a
            credit_b[user] += b
    return credit_a, credit_b


def ranker(noise: float):
    """A ranker that orders the catalogue by the user's relevance plus noise."""

    def rank(relevance: np.ndarray, rng: np.random.Generator) -> list[str]:
        scores = relevance + noise * rng.standard_normal(len(relevance))
        return [CATALOGUE[i] for i in np.argsort(-scores)[:20]]

    return rank


def test_identical_rankers_give_no_significant_preference():
    rng = np.random.default_rng(42)
    same = ranker(0.3)
    significant = []
    for _ in range(60):
        credit_a, credit_b = simulate_users(rng, same, same, 80, impressions=2)
        significant.append(preference_test(credit_a, credit_b).p_value < 0.05)
    # An exact sign test is at most as often significant as alpha says.
    assert np.mean(significant) <= 0.1


def test_a_better_ranker_wins():
    rng = np.random.default_rng(7)
    credit_a, credit_b = simulate_users(rng, ranker(0.4), ranker(0.2), 300)
    result = preference_test(credit_a, credit_b)
    assert result.prefer_b > result.prefer_a
    assert result.preference > 0 and result.ci[0] > 0
    assert result.p_value < 0.01
    swapped = preference_test(credit_b, credit_a)
    assert swapped.preference == pytest.approx(-result.preference)
    assert swapped.p_value == pytest.approx(result.p_value)


def test_preference_interval_covers_the_true_preference():
    rng = np.random.default_rng(3)
    true_share_b = 0.6  # of users with a preference
    covered = []
    for _ in range(400):
        prefers_b = rng.random(150) < true_share_b
        result = preference_test((~prefers_b).astype(float), prefers_b.astype(float))
        covered.append(result.ci[0] <= 2 * true_share_b - 1 <= result.ci[1])
    assert 0.93 <= np.mean(covered) <= 0.99


def test_no_users_or_no_clicks_give_no_preference_and_valid_json():
    for clicks in (np.zeros(0), np.zeros(5)):
        result = preference_test(clicks, clicks)
        assert math.isnan(result.preference) and result.p_value == 1.0
        assert result.ci == (-1.0, 1.0)
        out = json.loads(json.dumps(result.to_dict(), allow_nan=False))
        assert out["preference"] is None and out["users"] == len(clicks)


@pytest.mark.parametrize(
    ("credit_a", "credit_b"),
    [([1.0, math.nan], [0.0, 1.0]), ([1, -1], [0, 1]), ([1, 2], [1]), ([[1]], [[1]])],
    ids=["nan", "negative", "lengths", "2d"],
)
def test_bad_credit_is_a_clear_error(credit_a, credit_b):
    with pytest.raises(ShopsenseError):
        preference_test(np.array(credit_a), np.array(credit_b))


def test_bad_alpha_is_a_clear_error():
    with pytest.raises(ShopsenseError, match="alpha"):
        preference_test(np.ones(3), np.ones(3), alpha=1.0)
