"""An experiment's figures: per arm what shoppers saw and did, and for each
arm against the control the lift with its interval and p-values, the
sample-ratio check and, for interleaving, the preference test.

The unit is the shopper (``attribution``): CTR is each arm's clicks over its
impressions with the delta method over shoppers, conversion the share of the
arm's shoppers who bought, revenue per visitor the mean of their credited
purchase values. CUPED's covariate is each shopper's own behaviour before the
experiment started (their clicks, purchases or spend in the event log): it
cannot depend on the arm, so it narrows the interval without biasing it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from shopsense.evaluation.interleaving import preference_test
from shopsense.evaluation.online import (
    SRM_ALPHA,
    UserMetric,
    compare,
    sample_ratio_p_value,
)
from shopsense.serving.attribution import (
    CLICK,
    PURCHASE,
    Attribution,
    AttributionLog,
    Credit,
    ShopperTotals,
    read_log,
)
from shopsense.serving.experiments import METRICS, Experiment
from shopsense.serving.store import StateStore


def experiment_attribution(
    experiment: Experiment, log: AttributionLog, credit: Credit | None = None
) -> Attribution:
    """The experiment's rows per (shopper, arm). Every impression is credited
    (``credit``: the log's with the experiment's window, made here if not
    given), so that an event naming another list (a search) is credited to it
    and not taken for unknown or given to this experiment."""
    if credit is None:
        credit = log.credit(experiment.attribution_seconds)
    columns = log.columns()
    name = log.labels.index.get(experiment.name, -2)
    arm = columns["impression_arm"]
    cell = np.where((columns["impression_experiment"] == name) & (arm >= 0), arm, -1)
    return log.attribution(credit, cell, log.labels.names())


def experiment_report(
    store: StateStore,
    experiment: Experiment,
    alpha: float = 0.05,
    log: AttributionLog | None = None,
    attribution: Attribution | None = None,
) -> dict[str, Any]:
    """The experiment's figures as JSON-ready data (what ``experiment show
    --json`` prints and ``GET /admin/experiments/{name}`` answers). A caller
    that has read the log already (the analytics) passes it, and the
    ``experiment_attribution`` of it; otherwise the store is read whole."""
    log = read_log(store) if log is None else log
    if attribution is None:
        attribution = experiment_attribution(experiment, log)
    before = _behaviour_before(log, experiment.started)
    arms = _arms(experiment)
    rows: dict[str, list[tuple[int, ShopperTotals]]] = defaultdict(list)
    for (unit, arm), totals in attribution.by_shopper.items():
        rows[arm].append((log.units.index[unit], totals))
    report: dict[str, Any] = {
        "experiment": experiment.to_dict(),
        "alpha": alpha,
        "uncredited_events": dict(attribution.uncredited),
        "arms": {arm: _arm_figures(rows.get(arm, [])) for arm in arms},
    }
    if experiment.kind == "interleaving":
        report["interleaving"] = _interleaving(experiment, rows.get("interleaved", []), alpha)
        return report
    users = [len(rows.get(arm, [])) for arm in arms]
    shares = [experiment.shares[arm] for arm in arms]
    srm = sample_ratio_p_value(users, shares) if sum(users) else 1.0
    report["sample_ratio"] = {"p_value": srm, "mismatch": srm < SRM_ALPHA, "threshold": SRM_ALPHA}
    control = experiment.control
    report["comparisons"] = {
        arm: {
            metric: compare(
                _metric(rows.get(control, []), metric, before),
                _metric(rows.get(arm, []), metric, before),
                alpha=alpha,
            ).to_dict()
            for metric in dict.fromkeys((experiment.metric, *experiment.guardrails, *METRICS))
        }
        for arm in arms
        if arm != control
    }
    return report


def _arms(experiment: Experiment) -> list[str]:
    return ["interleaved"] if experiment.kind == "interleaving" else list(experiment.arms)


def _arm_figures(rows: list[tuple[int, ShopperTotals]]) -> dict[str, Any]:
    impressions = sum(t.impressions for _, t in rows)
    clicks = sum(t.clicks for _, t in rows)
    carts = sum(t.carts for _, t in rows)
    buyers = sum(1 for _, t in rows if t.purchases)
    revenue = sum(t.revenue for _, t in rows)
    users = len(rows)
    return {
        "users": users,
        "impressions": impressions,
        "clicks": clicks,
        "carts": carts,
        "purchases": sum(t.purchases for _, t in rows),
        "revenue": round(revenue, 2),
        "ctr": clicks / impressions if impressions else 0.0,
        "add_to_cart_rate": carts / impressions if impressions else 0.0,
        "conversion": buyers / users if users else 0.0,
        "revenue_per_visitor": revenue / users if users else 0.0,
    }


def _metric(
    rows: list[tuple[int, ShopperTotals]], metric: str, before: dict[str, np.ndarray]
) -> UserMetric:
    units = np.array([unit for unit, _ in rows], np.int64)
    if metric == "ctr":
        numerator = [t.clicks for _, t in rows]
        denominator = [max(t.impressions, 1) for _, t in rows]
        pre = before["click"][units]
    elif metric == "conversion":
        numerator = [float(t.purchases > 0) for _, t in rows]
        denominator = [1.0] * len(rows)
        pre = (before["purchase"][units] > 0).astype(float)
    else:
        numerator = [t.revenue for _, t in rows]
        denominator = [1.0] * len(rows)
        pre = before["revenue"][units]
    return UserMetric(np.asarray(numerator, float), np.asarray(denominator, float), pre)


def _behaviour_before(log: AttributionLog, started: int) -> dict[str, np.ndarray]:
    """Each user's clicks, purchases and spend before ``started`` (CUPED's
    covariate), indexed by the log's unit codes (a session has none)."""
    columns = log.columns()
    before = columns["event_timestamp"] < started
    user, kind = columns["event_user"], columns["event_type"]
    units = len(log.units.index)
    bought = before & (kind == PURCHASE)
    return {
        "click": np.bincount(user[before & (kind == CLICK)], minlength=units).astype(float),
        "purchase": np.bincount(user[bought], minlength=units).astype(float),
        "revenue": np.bincount(user[bought], columns["event_value"][bought], minlength=units),
    }


def _interleaving(
    experiment: Experiment, rows: list[tuple[int, ShopperTotals]], alpha: float
) -> dict[str, Any]:
    a, b = experiment.arms
    credit_a = np.array([t.credit[a] for _, t in rows], float)
    credit_b = np.array([t.credit[b] for _, t in rows], float)
    return {"a": a, "b": b, **preference_test(credit_a, credit_b, alpha=alpha).to_dict()}


def winner(report: dict[str, Any]) -> str | None:
    """The arm to promote: for A/B, the arm whose primary metric beats the
    control significantly by the always-valid test (safe to act on at any
    look), the best of several; the control when every arm is significantly
    worse; for interleaving, the significantly preferred arm. None when the
    data do not say."""
    experiment = report["experiment"]
    if experiment["kind"] == "interleaving":
        found = report["interleaving"]
        if found["p_value"] >= report["alpha"]:
            return None
        return found["b"] if found["preference"] > 0 else found["a"]
    primary = experiment["metric"]
    results = {arm: metrics[primary] for arm, metrics in report["comparisons"].items()}
    better = {a: r for a, r in results.items()
              if r["sequential_p_value"] < r["alpha"] and r["absolute_lift"] > 0}  # fmt: skip
    if better:
        return max(better, key=lambda a: better[a]["absolute_lift"])
    worse = all(r["sequential_p_value"] < r["alpha"] and r["absolute_lift"] < 0
                for r in results.values())  # fmt: skip
    return next(iter(experiment["arms"])) if worse and results else None
