"""Experiment statistics checked by simulation (calibration, coverage, power) and on edge cases.

The simulated shoppers are clustered: each user has their own click
probability (Beta, mean 5%), so one user's impressions are correlated, as
in a store. Every simulation is NumPy, seeded, and sized to a few seconds.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate

from shopsense.errors import ShopsenseError
from shopsense.evaluation.online import (
    SRM_ALPHA,
    UserMetric,
    compare,
    estimate,
    msprt_p_value,
    power_reached,
    sample_ratio_p_value,
    users_needed,
)

ALPHA = 0.05
BASE_CTR = 0.05  # the mean of the Beta below: every arm's true CTR before a lift


def simulated_arm(
    rng: np.random.Generator,
    users: int,
    lift: float = 1.0,
    impressions: int = 10,
    missing_pre: float = 0.0,
) -> UserMetric:
    """Clicks / impressions per user; ``pre`` is the user's CTR on earlier impressions
    (NaN for a share ``missing_pre`` of users: new shoppers)."""
    click_probability = rng.beta(0.5, 9.5, users)
    shown = 1 + rng.poisson(impressions - 1, users)
    clicks = rng.binomial(shown, np.minimum(click_probability * lift, 1.0))
    shown_before = 1 + rng.poisson(impressions - 1, users)
    pre = rng.binomial(shown_before, click_probability) / shown_before
    pre[rng.random(users) < missing_pre] = np.nan
    return UserMetric(clicks.astype(float), shown.astype(float), pre)


def head(metric: UserMetric, users: int) -> UserMetric:
    """The first ``users`` users: the data at an earlier look."""
    pre = None if metric.pre is None else metric.pre[:users]
    return UserMetric(metric.numerator[:users], metric.denominator[:users], pre)


# --- the delta method -----------------------------------------------------------------


def test_delta_method_matches_the_formula_of_deng_et_al():
    numerator = np.array([1.0, 0.0, 2.0, 5.0, 0.0])
    denominator = np.array([2.0, 1.0, 1.0, 9.0, 3.0])
    n = len(numerator)
    mx, my = numerator.mean(), denominator.mean()
    cov = np.cov(numerator, denominator, ddof=1)
    variance = (cov[0, 0] / my**2 - 2 * mx * cov[0, 1] / my**3 + mx**2 * cov[1, 1] / my**4) / n
    arm = estimate(UserMetric(numerator, denominator))
    assert arm.value == pytest.approx(numerator.sum() / denominator.sum())
    assert arm.std_error == pytest.approx(math.sqrt(variance))
    assert arm.ci[1] - arm.value == pytest.approx(1.959964 * arm.std_error, rel=1e-5)


def test_a_per_user_mean_gets_the_standard_error_of_a_mean():
    revenue = np.random.default_rng(1).exponential(30.0, 500)
    arm = estimate(UserMetric(revenue, np.ones_like(revenue)))
    assert arm.value == pytest.approx(revenue.mean())
    assert arm.std_error == pytest.approx(revenue.std(ddof=1) / math.sqrt(500))


def test_delta_method_variance_agrees_with_a_bootstrap_over_users_and_binomial_is_too_small():
    rng = np.random.default_rng(7)
    metric = simulated_arm(rng, 3000, impressions=20)
    resampled = rng.integers(0, 3000, (600, 3000))
    ratios = metric.numerator[resampled].sum(axis=1) / metric.denominator[resampled].sum(axis=1)
    bootstrap = ratios.std(ddof=1)
    arm = estimate(metric)
    assert arm.std_error == pytest.approx(bootstrap, rel=0.1)
    naive_binomial = math.sqrt(arm.value * (1 - arm.value) / metric.denominator.sum())
    assert naive_binomial < 0.8 * bootstrap


# --- calibration by simulation --------------------------------------------------------

LOOKS = 10
USERS_PER_LOOK = 200  # per arm


@pytest.fixture(scope="module")
def aa_looks() -> tuple[np.ndarray, np.ndarray]:
    """400 A/A experiments looked at after every 200 users an arm: fixed-horizon and
    sequential p-values, shape (experiments, looks)."""
    rng = np.random.default_rng(2024)
    fixed = np.empty((400, LOOKS))
    sequential = np.empty((400, LOOKS))
    for run in range(400):
        control = simulated_arm(rng, LOOKS * USERS_PER_LOOK)
        treatment = simulated_arm(rng, LOOKS * USERS_PER_LOOK)
        for look in range(LOOKS):
            users = (look + 1) * USERS_PER_LOOK
            result = compare(head(control, users), head(treatment, users), ALPHA, cuped=False)
            fixed[run, look] = result.p_value
            sequential[run, look] = result.sequential_p_value
    return fixed, sequential


def test_aa_fixed_horizon_false_positive_rate_is_alpha(aa_looks):
    fixed, _ = aa_looks
    assert 0.025 <= (fixed[:, -1] < ALPHA).mean() <= 0.08


def test_aa_sequential_test_stays_under_alpha_when_looked_at_after_every_batch(aa_looks):
    fixed, sequential = aa_looks
    sequential_rate = (sequential < ALPHA).any(axis=1).mean()
    peeked_fixed_rate = (fixed < ALPHA).any(axis=1).mean()
    assert sequential_rate <= ALPHA
    # Peeking at the fixed-horizon test is why the sequential one exists.
    assert peeked_fixed_rate > 0.08
    assert peeked_fixed_rate > 2 * sequential_rate


@pytest.fixture(scope="module")
def ab_runs() -> list[tuple]:
    """400 A/B experiments with a true lift of +10%, a third of users without pre-period
    data: (CUPED comparison, plain comparison)."""
    rng = np.random.default_rng(99)
    runs = []
    for _ in range(400):
        control = simulated_arm(rng, 3000, missing_pre=0.3)
        treatment = simulated_arm(rng, 3000, lift=1.1, missing_pre=0.3)
        runs.append((compare(control, treatment), compare(control, treatment, cuped=False)))
    return runs


TRUE_RELATIVE_LIFT = 0.1
TRUE_ABSOLUTE_LIFT = BASE_CTR * TRUE_RELATIVE_LIFT


def covered(interval: tuple[float, float], truth: float) -> bool:
    return interval[0] <= truth <= interval[1]


@pytest.mark.parametrize("adjusted", [True, False], ids=["cuped", "plain"])
def test_confidence_intervals_cover_the_true_lift_95_percent_of_the_time(ab_runs, adjusted):
    results = [run[0] if adjusted else run[1] for run in ab_runs]
    absolute = np.mean([covered(r.absolute_ci, TRUE_ABSOLUTE_LIFT) for r in results])
    relative = np.mean([covered(r.relative_ci, TRUE_RELATIVE_LIFT) for r in results])
    arm = np.mean([covered(r.control.ci, BASE_CTR) for r in results])
    assert 0.92 <= absolute <= 0.975
    assert 0.92 <= relative <= 0.975
    assert 0.92 <= arm <= 0.975


def test_fieller_relative_interval_excludes_zero_exactly_when_the_test_rejects(ab_runs):
    for result, _ in ab_runs:
        excludes_zero = result.relative_ci[0] > 0 or result.relative_ci[1] < 0
        assert excludes_zero == (result.p_value < ALPHA)


def test_cuped_reduces_variance_without_biasing_the_lift(ab_runs):
    cuped = np.array([run[0].absolute_lift for run in ab_runs])
    plain = np.array([run[1].absolute_lift for run in ab_runs])
    reduction = np.mean([run[0].cuped_variance_reduction for run in ab_runs])
    assert reduction > 0.1
    assert all(run[1].cuped_variance_reduction == 0.0 for run in ab_runs)
    # The reduction reported is the one seen across experiments.
    assert cuped.var() < (1 - reduction / 2) * plain.var()
    standard_error = cuped.std(ddof=1) / math.sqrt(len(cuped))
    assert abs(cuped.mean() - TRUE_ABSOLUTE_LIFT) < 3 * standard_error


def test_cuped_is_skipped_without_balanced_pre_period_data():
    rng = np.random.default_rng(3)
    control = simulated_arm(rng, 500, missing_pre=1.0)
    treatment = simulated_arm(rng, 500)
    assert compare(control, treatment).cuped_variance_reduction == 0.0
    # Half the control's users lost their history, none of the treatment's: not chance.
    control = simulated_arm(rng, 500, missing_pre=0.5)
    assert compare(control, treatment).cuped_variance_reduction == 0.0
    assert compare(control, simulated_arm(rng, 500, missing_pre=0.5)).cuped_variance_reduction > 0
    no_pre = UserMetric(treatment.numerator, treatment.denominator)
    assert compare(control, no_pre) == compare(control, treatment, cuped=False)


# --- sample ratio mismatch ------------------------------------------------------------


def test_srm_flags_a_45_55_split_of_a_declared_50_50():
    assert sample_ratio_p_value([900, 1100], [0.5, 0.5]) < SRM_ALPHA
    assert sample_ratio_p_value([900, 1100], [0.45, 0.55]) > 0.5
    assert sample_ratio_p_value([250, 250, 500], [1, 1, 2]) == pytest.approx(1.0)


def test_srm_rarely_flags_a_fair_split():
    rng = np.random.default_rng(5)
    control = rng.binomial(2000, 0.5, 3000)
    flags = [sample_ratio_p_value([c, 2000 - c], [0.5, 0.5]) < SRM_ALPHA for c in control.tolist()]
    assert np.mean(flags) <= 0.004


def test_srm_bad_input():
    assert sample_ratio_p_value([0, 0], [0.5, 0.5]) == 1.0
    for users, shares in [([10], [1.0]), ([10, 10], [0.5]), ([-1, 3], [1, 1]), ([10, 10], [1, 0])]:
        with pytest.raises(ShopsenseError):
            sample_ratio_p_value(users, shares)
    with pytest.raises(ShopsenseError):
        sample_ratio_p_value([1.5, 3], [1, 1])


# --- power ----------------------------------------------------------------------------


@pytest.mark.parametrize("cuped", [False, True], ids=["plain", "cuped"])
def test_an_experiment_sized_by_users_needed_detects_the_mde_80_percent_of_the_time(cuped):
    rng = np.random.default_rng(11 + cuped)
    relative_mde = 0.2
    baseline = simulated_arm(rng, 20_000)
    total = users_needed(baseline, relative_mde, cuped=cuped)
    assert power_reached(baseline, relative_mde, total, cuped=cuped) == pytest.approx(0.8, abs=0.01)
    detected = []
    for _ in range(300):
        control = simulated_arm(rng, total // 2)
        treatment = simulated_arm(rng, total // 2, lift=1 + relative_mde)
        result = compare(control, treatment, cuped=cuped)
        detected.append(result.p_value < ALPHA and result.absolute_lift > 0)
    assert 0.72 <= np.mean(detected) <= 0.88


def test_users_needed_shrinks_with_cuped_and_grows_with_uneven_shares_and_smaller_effects():
    baseline = simulated_arm(np.random.default_rng(4), 10_000)
    plain = users_needed(baseline, 0.1, cuped=False)
    assert users_needed(baseline, 0.1) < plain
    # Half the effect: about four times the users (a little under: a smaller lift
    # adds less to the treatment's variance).
    assert 3.6 * plain < users_needed(baseline, 0.05, cuped=False) < 4 * plain
    assert users_needed(baseline, 0.1, shares=(0.2, 0.8), cuped=False) > plain
    # Half the traffic in the experiment: twice the visitors.
    half = users_needed(baseline, 0.1, shares=(0.25, 0.25), cuped=False)
    assert half == pytest.approx(2 * plain, rel=0.01)
    assert power_reached(baseline, 0.1, 0) == 0.0
    assert power_reached(baseline, 0.1, 10 * plain) > 0.99


def test_users_needed_bad_input():
    baseline = simulated_arm(np.random.default_rng(4), 100)
    for kwargs in [
        {"relative_mde": 0.0},
        {"relative_mde": math.nan},
        {"relative_mde": -1.0},
        {"relative_mde": 0.1, "alpha": 1.5},
        {"relative_mde": 0.1, "power": 1.0},
        {"relative_mde": 0.1, "shares": (0.7, 0.7)},
        {"relative_mde": 0.1, "shares": (0.5, 0.3, 0.2)},
    ]:
        with pytest.raises(ShopsenseError):
            users_needed(baseline, **kwargs)
    zero = UserMetric(np.zeros(50), np.ones(50))
    with pytest.raises(ShopsenseError, match="non-zero value"):
        users_needed(zero, 0.1)
    with pytest.raises(ShopsenseError, match="two users"):
        users_needed(head(baseline, 1), 0.1)


# --- the mixture SPRT -----------------------------------------------------------------


@pytest.mark.parametrize(("difference", "variance", "tau"), [(0.3, 0.04, 0.5), (0.0, 1.0, 0.2)])
def test_msprt_is_the_normal_mixture_likelihood_ratio(difference, variance, tau):
    def likelihood_ratio(theta: float) -> float:
        log_ratio = (difference**2 - (difference - theta) ** 2) / (2 * variance)
        return (
            math.exp(log_ratio)
            * math.exp(-(theta**2) / (2 * tau**2))
            / (tau * math.sqrt(2 * math.pi))
        )

    mixture, _ = integrate.quad(likelihood_ratio, -20 * tau, 20 * tau)
    assert msprt_p_value(difference, variance, tau) == pytest.approx(min(1.0, 1 / mixture))


def test_the_sequential_test_detects_a_real_lift_given_enough_users():
    rng = np.random.default_rng(8)
    control = simulated_arm(rng, 20_000)
    treatment = simulated_arm(rng, 20_000, lift=1.2)
    assert compare(control, treatment).sequential_p_value < ALPHA
    wider = compare(control, treatment, mixing_relative_sd=0.5).sequential_p_value
    assert wider != compare(control, treatment).sequential_p_value


# --- edge cases -----------------------------------------------------------------------


def as_json(result) -> dict:
    return json.loads(json.dumps(result.to_dict(), allow_nan=False))


def test_an_arm_without_users_or_denominators_gives_no_lift_and_no_evidence():
    control = simulated_arm(np.random.default_rng(0), 100)
    for empty in [
        UserMetric(np.zeros(0), np.zeros(0)),
        UserMetric(np.zeros(5), np.zeros(5)),
    ]:
        result = compare(control, empty)
        assert result.p_value == 1.0 and result.sequential_p_value == 1.0
        assert math.isnan(result.absolute_lift) and math.isnan(result.treatment.value)
        out = as_json(result)
        assert out["treatment"]["value"] is None and out["absolute_ci"] == [None, None]
        assert out["control"]["value"] == pytest.approx(
            control.numerator.sum() / control.denominator.sum()
        )
    nothing = UserMetric(np.zeros(0), np.zeros(0))
    assert compare(nothing, nothing).p_value == 1.0


def test_users_with_no_denominator_count_as_users():
    result = estimate(UserMetric(np.array([1.0, 0.0, 0.0]), np.array([4.0, 0.0, 2.0])))
    assert result.users == 3 and result.value == pytest.approx(1 / 6)
    assert math.isfinite(result.std_error)


def test_all_zero_numerators_give_p_value_one_and_finite_interval():
    zero = UserMetric(np.zeros(40), np.full(40, 3.0), pre=np.zeros(40))
    result = compare(zero, zero)
    assert result.p_value == 1.0 and result.sequential_p_value == 1.0
    assert result.absolute_lift == 0.0 and result.absolute_ci == (0.0, 0.0)
    assert result.control.ci == (0.0, 0.0)
    assert math.isnan(result.relative_lift)
    assert as_json(result)["relative_lift"] is None


def test_a_single_user_per_arm_gives_no_interval_and_no_evidence():
    one = UserMetric(np.array([1.0]), np.array([3.0]), pre=np.array([0.5]))
    other = UserMetric(np.array([3.0]), np.array([3.0]), pre=np.array([0.2]))
    result = compare(one, other)
    assert result.absolute_lift == pytest.approx(2 / 3)
    assert result.p_value == 1.0 and result.sequential_p_value == 1.0
    assert all(math.isnan(v) for v in (*result.absolute_ci, *result.control.ci))
    assert result.cuped_variance_reduction == 0.0
    as_json(result)


def test_identical_arms_of_constant_users_have_no_variance_and_no_difference():
    constant = UserMetric(np.ones(10), np.full(10, 2.0))
    result = compare(constant, constant)
    assert result.p_value == 1.0 and result.relative_ci == (0.0, 0.0)
    differing = compare(constant, UserMetric(np.full(10, 2.0), np.full(10, 2.0)))
    assert differing.p_value == 0.0 and differing.relative_lift == pytest.approx(1.0)


@pytest.mark.parametrize(
    "metric",
    [
        UserMetric(np.array([1.0, math.nan]), np.array([1.0, 1.0])),
        UserMetric(np.array([1.0, 2.0]), np.array([1.0, math.inf])),
        UserMetric(np.array([1.0, 2.0]), np.array([1.0, -1.0])),
        UserMetric(np.array([1.0, 2.0]), np.array([1.0])),
        UserMetric(np.array([[1.0, 2.0]]), np.array([[1.0, 1.0]])),
        UserMetric(np.array([1.0, 2.0]), np.array([1.0, 1.0]), pre=np.array([math.inf, 0])),
        UserMetric(np.array([1.0, 2.0]), np.array([1.0, 1.0]), pre=np.array([1.0])),
        UserMetric(np.array(["a", "b"]), np.array([1.0, 1.0])),
    ],
    ids=["nan", "inf", "negative", "lengths", "2d", "pre-inf", "pre-length", "strings"],
)
def test_bad_input_is_a_clear_error(metric):
    good = UserMetric(np.ones(3), np.ones(3))
    with pytest.raises(ShopsenseError):
        compare(good, metric)
    with pytest.raises(ShopsenseError):
        estimate(metric)


def test_bad_parameters_are_clear_errors():
    good = UserMetric(np.ones(3), np.ones(3))
    with pytest.raises(ShopsenseError, match="alpha"):
        compare(good, good, alpha=0.0)
    with pytest.raises(ShopsenseError, match="mixing"):
        compare(good, good, mixing_relative_sd=-1.0)
    with pytest.raises(ShopsenseError, match="UserMetric"):
        compare(good, {"numerator": [1]})


def test_the_always_valid_test_sees_a_large_win_over_a_control_near_zero():
    """A weak default (CTR 0.05%) against a strong challenger (3.5%) over 1,000
    shoppers an arm: z ≈ 10 must be significant at any look (the mixing scale
    is the arms' pooled value, not the control's, which all but vanished)."""
    rng = np.random.default_rng(0)
    impressions = rng.integers(1, 5, (2, 1000)).astype(float)
    control = UserMetric(
        rng.binomial(impressions[0].astype(int), 0.0005).astype(float), impressions[0]
    )
    treatment = UserMetric(
        rng.binomial(impressions[1].astype(int), 0.035).astype(float), impressions[1]
    )
    result = compare(control, treatment)
    assert result.p_value < 1e-6 and result.sequential_p_value < 0.01  # was 0.98


def test_cuped_waits_for_enough_shoppers_to_fit_theta():
    """One shopper with a pre-period click and the only click: a theta fitted to
    a handful of shoppers would take the whole effect away."""
    pre = np.zeros(20)
    pre[3] = 1.0
    clicks = np.zeros(20)
    clicks[3] = 1.0
    control = UserMetric(np.zeros(20), np.ones(20), np.zeros(20))
    treatment = UserMetric(clicks, np.ones(20), pre)
    result = compare(control, treatment)
    assert result.cuped_variance_reduction == 0.0 and result.absolute_lift == 0.05


def test_intervals_stay_where_a_count_metric_can_be():
    """Rare clicks: an arm's interval does not reach below 0, and a relative
    lift's not below -100% (the trial saw CTR [-0.02%, 0.13%] and -102%)."""
    rng = np.random.default_rng(3)
    impressions = np.ones(300)
    control = UserMetric(rng.binomial(1, 0.01, 300).astype(float), impressions)
    treatment = UserMetric(np.zeros(300), impressions)
    treatment.numerator[0] = 1.0
    result = compare(control, treatment)
    assert result.control.ci[0] >= 0 and result.treatment.ci[0] >= 0
    assert result.relative_ci[0] >= -1.0
    assert estimate(treatment).ci[0] == 0.0
    signed = UserMetric(
        np.array([-2.0, 1.0, 0.5, -1.0]), np.ones(4)
    )  # a metric that can be negative
    assert estimate(signed).ci[0] < 0
