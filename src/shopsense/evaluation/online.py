"""Statistics of online experiments, with the user as the unit, done as the field does them.

An arm's metric is ``sum(numerator) / sum(denominator)`` over its users
(:class:`UserMetric`): CTR is clicks / impressions per user, conversion or
revenue per visitor has every denominator 1. One user's impressions are
correlated, so a per-impression binomial variance is too small; every
variance here is over users.

- An arm's standard error is the delta method's (Deng et al. 2018, "Applying
  the Delta Method in Metric Analytics"): the ratio is linearised into one
  value per user, ``R + (num - R * den) / mean(den)``, whose mean is the
  ratio and whose variance over ``n`` is the delta-method variance.
- The lift is tested two-sided with a normal (z) test on the difference of
  the arms' values, with its 95% (``1 - alpha``) interval. The normal
  approximation wants dozens of users an arm; under two users an arm there
  is no variance to estimate, and the test says so (p = 1, no interval).
- The relative lift's interval is Fieller's, on the ratio of the arms'
  values: it excludes 0 exactly when the absolute test rejects, so the two
  never disagree; it is unbounded (``-inf, inf``) when the control's value
  is itself indistinguishable from 0, which is the truth about such data
  (the delta method on the ratio would give a finite, wrong interval).
- CUPED (Deng et al. 2013) regresses each user's linearised value on the
  same metric before the experiment (:attr:`UserMetric.pre`), with one
  ``theta`` for both arms: the one that minimises the variance of the
  difference of the adjusted means. A user without pre-period data (NaN in
  ``pre``) gets the mean of the known values: the covariate is then fixed
  before assignment, so randomisation balances it across arms and the lift
  stays unbiased; a covariate of 0 would be as unbiased but would make
  "has history or not" part of the covariate and fit ``theta`` to it.
  CUPED is skipped (reduction 0) when the arms' shares of users with
  pre-period data differ beyond chance: that covariate is not balanced; and
  with fewer than ``CUPED_MIN_USERS`` users an arm, where ``theta`` fitted
  to a handful of users can take the whole effect away.
- The sequential p-value is the mixture SPRT's (Johari, Pekelis, Walsh,
  "Always Valid Inference", 2017) with a normal mixture N(0, tau^2) on the
  difference, its variance estimated: rejecting the first time it falls
  under ``alpha`` keeps the false-positive rate at ``alpha`` however often
  the dashboard is looked at. ``tau`` is ``mixing_relative_sd`` times the
  value of both arms pooled: the scale of the lifts experiments are run to
  find (10% by default), where the test is most powerful. Pooled, not the
  control's alone: a control near 0 (a weak default against a strong
  challenger) made ``tau`` vanish, and with it the test's power at any
  lift (a 60-fold win read p = 0.98).
- The sample-ratio-mismatch check is a chi-square goodness of fit of the
  users per arm to the declared shares (:data:`SRM_ALPHA`).
- :func:`users_needed` and :func:`power_reached` size the fixed-horizon
  test from baseline data (the per-user variance by the delta method,
  after CUPED when the baseline has a pre-period).

Values a data set cannot give (an arm without users, a ratio over no
denominator, a variance from one user) are NaN here and ``None`` in
:meth:`Comparison.to_dict`; they never raise, so an experiment can be shown
from its first minute. Bad input (NaN or infinite numbers, negative
denominators, misaligned arrays) raises :class:`ShopsenseError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from scipy import stats

from shopsense.errors import ShopsenseError

SRM_ALPHA = 0.001
"""A split is flagged as broken when its chi-square p-value is under this.

The check runs at every look at every experiment, so a false alarm (which
stops an experiment) must be rare: 1 in 1,000 looks. A broken split leaves
p-values far below it (a 45/55 split of a declared 50/50 gives about 1e-5
at 2,000 users), so the small threshold costs little power.
"""

DEFAULT_MIXING_RELATIVE_SD = 0.1
CUPED_MIN_USERS = 100
_NORMAL = NormalDist()  # for scalars: scipy.stats.norm's overhead per call would dominate compare


@dataclass(frozen=True)
class UserMetric:
    """One arm's per-user aggregates for one metric. The arm's value is
    sum(numerator) / sum(denominator): a ratio metric with the user as the unit
    (CTR: clicks / impressions per user), or, with every denominator 1, a per-user
    mean (conversion: 1 if the visitor bought; revenue per visitor).

    ``pre`` is each user's value of the same metric before the experiment
    (CUPED's covariate), aligned with the users; NaN marks a user without
    pre-period data, ``None`` that no user has any.
    """

    numerator: np.ndarray
    denominator: np.ndarray
    pre: np.ndarray | None = None


@dataclass(frozen=True)
class ArmEstimate:
    """One arm's value (``sum(num) / sum(den)``), its delta-method standard error and CI."""

    users: int
    value: float
    ci: tuple[float, float]
    std_error: float


@dataclass(frozen=True)
class Comparison:
    """Treatment against control. Arm values are raw; lifts, CIs and p-values are
    CUPED-adjusted when ``cuped_variance_reduction`` is not 0."""

    control: ArmEstimate
    treatment: ArmEstimate
    absolute_lift: float
    absolute_ci: tuple[float, float]
    relative_lift: float
    relative_ci: tuple[float, float]
    p_value: float
    sequential_p_value: float
    cuped_variance_reduction: float
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples as lists, NaN and infinities (undeterminable) as None."""
        return json_ready(asdict(self))


def json_ready(value: Any) -> Any:
    """Dataclass fields as JSON: tuples as lists, NaN and infinities (undeterminable) as None."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def finite_values(values: Any, name: str, allow_nan: bool = False) -> np.ndarray:
    """``values`` as a flat float array, or a ShopsenseError naming ``name``."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ShopsenseError(f"{name} must be numbers: {error}") from None
    if array.ndim != 1:
        raise ShopsenseError(f"{name} must be a flat list of numbers, got shape {array.shape}")
    bad = np.isinf(array) if allow_nan else ~np.isfinite(array)
    if bad.any():
        raise ShopsenseError(
            f"{name} holds {int(bad.sum())} {'infinite' if allow_nan else 'NaN or infinite'} "
            f"value(s), first at index {int(np.argmax(bad))}"
        )
    return array


@dataclass(frozen=True)
class _Arm:
    """An arm's users, value, linearised per-user values (mean = value) and covariate."""

    users: int
    value: float
    linearized: np.ndarray
    pre: np.ndarray | None
    nonnegative: bool
    """Every numerator is at least 0 (counts, revenue): the value cannot be below 0."""

    @property
    def std_error(self) -> float:
        return _std_error_of_mean(self.linearized)


def _std_error_of_mean(values: np.ndarray) -> float:
    """NaN under two users: one user's value says nothing about the spread."""
    if len(values) < 2:
        return math.nan
    return float(np.sqrt(values.var(ddof=1) / len(values)))


def _fill_missing(pre: np.ndarray, fill: float) -> np.ndarray:
    """The covariate with users without pre-period data (NaN) given ``fill``."""
    return np.where(np.isnan(pre), fill, pre)


def _arm(metric: UserMetric, name: str) -> _Arm:
    if not isinstance(metric, UserMetric):
        raise ShopsenseError(f"{name} must be a UserMetric, got {type(metric).__name__}")
    numerator = finite_values(metric.numerator, f"{name} numerator")
    denominator = finite_values(metric.denominator, f"{name} denominator")
    if len(numerator) != len(denominator):
        raise ShopsenseError(
            f"{name}: {len(numerator)} numerators but {len(denominator)} denominators"
        )
    if (denominator < 0).any():
        raise ShopsenseError(f"{name} denominator must not be negative")
    pre = None
    if metric.pre is not None:
        pre = finite_values(metric.pre, f"{name} pre", allow_nan=True)
        if len(pre) != len(numerator):
            raise ShopsenseError(f"{name}: {len(pre)} pre values for {len(numerator)} users")
    users = len(numerator)
    mean_denominator = float(denominator.mean()) if users else 0.0
    if mean_denominator == 0.0:
        return _Arm(users, math.nan, np.full(users, math.nan), pre, bool((numerator >= 0).all()))
    value = float(numerator.sum() / denominator.sum())
    linearized = value + (numerator - value * denominator) / mean_denominator
    return _Arm(users, value, linearized, pre, bool((numerator >= 0).all()))


def _interval(center: float, std_error: float, alpha: float) -> tuple[float, float]:
    if not (math.isfinite(center) and math.isfinite(std_error)):
        return (math.nan, math.nan)
    half = _NORMAL.inv_cdf(1 - alpha / 2) * std_error
    return (center - half, center + half)


def _arm_estimate(arm: _Arm, alpha: float) -> ArmEstimate:
    """The normal interval, cut at 0 for a metric that cannot be negative."""
    low, high = _interval(arm.value, arm.std_error, alpha)
    if arm.nonnegative and low < 0:
        low = 0.0
    return ArmEstimate(arm.users, arm.value, (low, high), arm.std_error)


def estimate(metric: UserMetric, alpha: float = 0.05) -> ArmEstimate:
    """One arm's (or one placement's) value with its delta-method CI."""
    _check_alpha(alpha)
    return _arm_estimate(_arm(metric, "metric"), alpha)


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ShopsenseError(f"alpha must lie in (0, 1), got {alpha}")


def _cuped_theta(control: _Arm, treatment: _Arm) -> tuple[float, np.ndarray, np.ndarray] | None:
    """``theta`` and each arm's centred covariate, or None when CUPED cannot apply.

    It does not apply when an arm has under two users with pre-period data, or
    when the share of users with it differs between the arms beyond chance
    (p < SRM_ALPHA): randomisation cannot have done that, the covariate is not
    balanced, and the variance of the adjusted lift would be misstated.
    """
    if control.pre is None or treatment.pre is None:
        return None
    has_pre = [~np.isnan(arm.pre) for arm in (control, treatment)]
    with_pre = [int(known.sum()) for known in has_pre]
    if min(with_pre) < 2:
        return None
    without_pre = [control.users - with_pre[0], treatment.users - with_pre[1]]
    if (
        sum(without_pre)
        and stats.chi2_contingency([with_pre, without_pre], correction=False).pvalue < SRM_ALPHA
    ):
        return None
    fill = float(np.concatenate([control.pre[has_pre[0]], treatment.pre[has_pre[1]]]).mean())
    covariates = [_fill_missing(arm.pre, fill) - fill for arm in (control, treatment)]
    covariance = 0.0
    variance = 0.0
    for arm, x in zip((control, treatment), covariates, strict=True):
        covariance += float(np.cov(arm.linearized, x, ddof=1)[0, 1]) / arm.users
        variance += float(x.var(ddof=1)) / arm.users
    if variance == 0.0:
        return None
    return covariance / variance, covariates[0], covariates[1]


def _z_p_value(difference: float, variance: float) -> float:
    if not (math.isfinite(difference) and math.isfinite(variance)):
        return 1.0
    if variance == 0.0:
        return 1.0 if difference == 0.0 else 0.0
    return 2 * _NORMAL.cdf(-abs(difference) / math.sqrt(variance))


def msprt_p_value(difference: float, variance: float, tau: float) -> float:
    """The normal-mixture SPRT's p-value, ``min(1, 1 / Lambda)``, for an estimated
    difference with the given variance and mixing standard deviation ``tau``.

    ``Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))``
    (Johari et al. 2017). Rejecting the first time it falls under alpha is
    valid at any stopping time.
    """
    if not all(math.isfinite(v) for v in (difference, variance, tau)) or tau <= 0:
        return 1.0
    if variance == 0.0:
        return 1.0 if difference == 0.0 else 0.0
    tau2 = tau * tau
    log_likelihood_ratio = 0.5 * math.log(variance / (variance + tau2)) + tau2 * difference**2 / (
        2 * variance * (variance + tau2)
    )
    return float(min(1.0, math.exp(-log_likelihood_ratio)))


def _fieller(
    treatment: float, control: float, se_treatment: float, se_control: float, alpha: float
) -> tuple[float, float]:
    """Fieller's interval for ``treatment / control - 1`` from independent estimates."""
    if not all(math.isfinite(v) for v in (treatment, control, se_treatment, se_control)):
        return (math.nan, math.nan)
    z2 = _NORMAL.inv_cdf(1 - alpha / 2) ** 2
    a = control**2 - z2 * se_control**2
    if a <= 0:
        return (-math.inf, math.inf)
    spread = math.sqrt(
        z2
        * (
            treatment**2 * se_control**2
            + control**2 * se_treatment**2
            - z2 * se_control**2 * se_treatment**2
        )
    )
    return ((treatment * control - spread) / a - 1, (treatment * control + spread) / a - 1)


def compare(
    control: UserMetric,
    treatment: UserMetric,
    alpha: float = 0.05,
    cuped: bool = True,
    mixing_relative_sd: float = DEFAULT_MIXING_RELATIVE_SD,
) -> Comparison:
    """Treatment against control: lifts with CIs, fixed-horizon and sequential p-values.

    CUPED applies when ``cuped`` and both arms carry ``pre`` with some
    variation. ``mixing_relative_sd`` is the mSPRT's mixing standard
    deviation as a fraction of both arms' pooled value.
    """
    _check_alpha(alpha)
    if not mixing_relative_sd > 0:
        raise ShopsenseError(f"mixing_relative_sd must be positive, got {mixing_relative_sd}")
    control_arm = _arm(control, "control")
    treatment_arm = _arm(treatment, "treatment")
    adjusted = [control_arm.linearized, treatment_arm.linearized]
    enough = min(len(control.numerator), len(treatment.numerator)) >= CUPED_MIN_USERS
    fitted = _cuped_theta(control_arm, treatment_arm) if cuped and enough else None
    if fitted is not None:
        theta, control_x, treatment_x = fitted
        adjusted = [
            control_arm.linearized - theta * control_x,
            treatment_arm.linearized - theta * treatment_x,
        ]
    means = [float(values.mean()) if len(values) else math.nan for values in adjusted]
    std_errors = [_std_error_of_mean(values) for values in adjusted]
    difference = means[1] - means[0]
    variance = std_errors[0] ** 2 + std_errors[1] ** 2
    reduction = 0.0
    if fitted is not None:
        raw_variance = control_arm.std_error**2 + treatment_arm.std_error**2
        reduction = 1 - variance / raw_variance if raw_variance > 0 else 0.0
    relative = means[1] / means[0] - 1 if means[0] else math.nan
    return Comparison(
        control=_arm_estimate(control_arm, alpha),
        treatment=_arm_estimate(treatment_arm, alpha),
        absolute_lift=difference,
        absolute_ci=_interval(difference, math.sqrt(variance), alpha),
        relative_lift=relative,
        relative_ci=_at_least_all_lost(
            _fieller(means[1], means[0], std_errors[1], std_errors[0], alpha),
            control_arm.nonnegative and treatment_arm.nonnegative,
        ),
        p_value=_z_p_value(difference, variance),
        sequential_p_value=msprt_p_value(
            difference, variance, mixing_relative_sd * abs(_pooled(control, treatment))
        ),
        cuped_variance_reduction=reduction,
        alpha=alpha,
    )


def _at_least_all_lost(ci: tuple[float, float], nonnegative: bool) -> tuple[float, float]:
    """A relative lift of a metric that cannot be negative is at least -100%."""
    low, high = ci
    return (max(low, -1.0), high) if nonnegative and not math.isnan(low) else ci


def _pooled(control: UserMetric, treatment: UserMetric) -> float:
    """Both arms' value together (``sum(num) / sum(den)``), 0 with no data."""
    denominator = float(control.denominator.sum() + treatment.denominator.sum())
    numerator = float(control.numerator.sum() + treatment.numerator.sum())
    return numerator / denominator if denominator > 0 else 0.0


def sample_ratio_p_value(users_per_arm: Sequence[int], shares: Sequence[float]) -> float:
    """Chi-square goodness-of-fit p-value of the users per arm against the declared
    shares (normalised to sum 1); 1.0 before any user arrives."""
    observed = finite_values(users_per_arm, "users_per_arm")
    expected_shares = finite_values(shares, "shares")
    if len(observed) < 2 or len(observed) != len(expected_shares):
        raise ShopsenseError(
            f"need one share per arm and at least two arms: {len(observed)} arms, "
            f"{len(expected_shares)} shares"
        )
    if (observed < 0).any() or (observed != np.round(observed)).any():
        raise ShopsenseError("users_per_arm must be counts (non-negative integers)")
    if (expected_shares <= 0).any():
        raise ShopsenseError("every arm's share must be positive")
    total = observed.sum()
    if total == 0:
        return 1.0
    expected = total * expected_shares / expected_shares.sum()
    return float(stats.chisquare(observed, expected).pvalue)


def _per_user_variance(baseline: UserMetric, cuped: bool) -> tuple[float, float]:
    """The baseline's value and its per-user (linearised) variance, after CUPED if it applies."""
    arm = _arm(baseline, "baseline")
    if arm.users < 2 or not math.isfinite(arm.value) or arm.value == 0:
        raise ShopsenseError(
            "the baseline needs at least two users and a non-zero value to size an experiment"
        )
    values = arm.linearized
    if cuped and arm.pre is not None and not np.isnan(arm.pre).all():
        x = _fill_missing(arm.pre, float(np.nanmean(arm.pre)))
        if x.var() > 0:
            values = values - np.cov(values, x, ddof=1)[0, 1] / x.var(ddof=1) * x
    return arm.value, float(values.var(ddof=1))


def _design(
    baseline: UserMetric,
    relative_mde: float,
    alpha: float,
    shares: Sequence[float],
    cuped: bool,
) -> tuple[float, float]:
    """The absolute effect to detect and ``users`` times the variance of the lift.

    The treatment's per-user variance is the baseline's times ``(1 + mde)^2``:
    a multiplicative lift keeps the coefficient of variation. Equal variances,
    the textbook's assumption, leave a +20% lift's experiment short of its power.
    """
    _check_alpha(alpha)
    if not (math.isfinite(relative_mde) and relative_mde != 0 and relative_mde > -1):
        raise ShopsenseError(
            f"relative_mde must be a non-zero fraction above -1, got {relative_mde}"
        )
    if len(shares) != 2 or min(shares) <= 0 or sum(shares) > 1 + 1e-9:
        raise ShopsenseError(
            f"shares must be the control's and the treatment's positive fractions of the "
            f"users, summing to at most 1; got {tuple(shares)}"
        )
    value, variance = _per_user_variance(baseline, cuped)
    lift_variance = variance * (1 / shares[0] + (1 + relative_mde) ** 2 / shares[1])
    return relative_mde * value, lift_variance


def users_needed(
    baseline: UserMetric,
    relative_mde: float,
    alpha: float = 0.05,
    power: float = 0.8,
    shares: Sequence[float] = (0.5, 0.5),
    cuped: bool = True,
) -> int:
    """Total users an experiment needs to detect a relative lift of relative_mde with the
    given power (fixed-horizon two-sided test), its per-user variance estimated (delta
    method) from baseline data (pre-period or an arm's data).

    ``shares`` are the control's and treatment's fractions of all users; when
    they sum under 1 the total counts the users outside the experiment too.
    With ``cuped`` and a baseline ``pre``, the variance is CUPED's residual.
    The sequential test needs more users than this for the same power.
    """
    if not 0 < power < 1:
        raise ShopsenseError(f"power must lie in (0, 1), got {power}")
    effect, lift_variance = _design(baseline, relative_mde, alpha, shares, cuped)
    z = _NORMAL.inv_cdf(1 - alpha / 2) + _NORMAL.inv_cdf(power)
    return max(math.ceil(z**2 * lift_variance / effect**2), math.ceil(2 / min(shares)))


def power_reached(
    baseline: UserMetric,
    relative_mde: float,
    users: int,
    alpha: float = 0.05,
    shares: Sequence[float] = (0.5, 0.5),
    cuped: bool = True,
) -> float:
    """The power a fixed-horizon test over ``users`` (counted as in :func:`users_needed`)
    has to detect a relative lift of ``relative_mde``."""
    if users < 0:
        raise ShopsenseError(f"users must not be negative, got {users}")
    effect, lift_variance = _design(baseline, relative_mde, alpha, shares, cuped)
    if users == 0:
        return 0.0
    std_error = math.sqrt(lift_variance / users)
    if std_error == 0:
        return 1.0
    z = _NORMAL.inv_cdf(1 - alpha / 2)
    shift = abs(effect) / std_error
    return _NORMAL.cdf(shift - z) + _NORMAL.cdf(-shift - z)
