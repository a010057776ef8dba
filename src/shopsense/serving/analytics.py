"""Store analytics: what each placement and experiment arm showed and earned,
day by day, how the experiments stand, and what shoppers searched for.

Every figure comes from the impression and event logs credited by
:class:`~shopsense.serving.attribution.AttributionLog`, so a click or purchase
counts here exactly when it counts in an experiment's report:

- The unit is the shopper (user, else session), as in the experiments: each
  rate is a per-shopper ratio whose 95% interval is the delta method's
  (:func:`~shopsense.evaluation.online.estimate`). An impression without a
  shopper cannot be credited, so it is only counted (``anonymous_impressions``).
- A click or purchase counts on the day, placement and arm of the impression
  it is credited to, with the default 24 h attribution window. Every event is
  credited over the whole log, then the period's impressions are counted: an
  event naming a list shown before the period belongs to that list, and so
  to none of the period's.
- Each table (placement, arm; overall and by day) sums the credited totals
  per (cell, shopper) with NumPy; a search list's clicked position gives the
  click-position curve.
- Experiments are summed up from
  :func:`~shopsense.serving.experiment_report.experiment_report` (its own
  window and CUPED), plus the power the test has reached for a relative lift
  of ``relative_mde`` on its primary metric (without CUPED's reduction: a
  lower bound).

A worker keeps the log it has read between calls (:class:`LiveAnalytics`,
behind the route) and reads only what was appended since.
:class:`ImpressionCounters` are the Prometheus side, counted as impressions
are written rather than read back from the store.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, Field

from shopsense.errors import ShopsenseError
from shopsense.evaluation.online import UserMetric, estimate, power_reached, users_needed
from shopsense.serving.attribution import (
    CLICK,
    Attribution,
    AttributionLog,
    Credit,
    ShopperRows,
    ShopperTotals,
    read_log,
)
from shopsense.serving.experiment_report import experiment_attribution, experiment_report
from shopsense.serving.experiments import ATTRIBUTION_SECONDS, PLACEMENTS, Experiment, experiments
from shopsense.serving.store import Impression, StateStore

DAYS = 14
TOP = 20
RELATIVE_MDE = 0.1
"""The relative lift the power reached is computed for: a 10% lift of the primary metric."""
MDE_RANGE = (0.001, 10.0)
"""From a 0.1% lift (under it the users needed overflow) to eleven times the control."""
DEFAULT_ARM = "default"
"""The Prometheus label of impressions outside any experiment."""
DAY_SECONDS = 86_400


# ----------------------------------------------------------------- schemas
class Estimate(BaseModel):
    """A value with its 95% interval; None where the data cannot give it (no
    impressions for a ratio, or fewer than two shoppers for an interval)."""

    value: float | None
    low: float | None
    high: float | None


class Figures(BaseModel):
    users: int = Field(description="shoppers (user, else session) shown at least one list")
    impressions: int
    clicks: int = Field(description="clicks credited to these impressions")
    carts: int
    purchases: int
    revenue: float
    ctr: Estimate = Field(description="clicks / impressions, the shopper as the unit")
    add_to_cart_rate: Estimate = Field(description="carts / impressions")
    conversion: Estimate = Field(description="share of shoppers with a credited purchase")
    revenue_per_visitor: Estimate = Field(description="credited revenue / shoppers")


class DayFigures(Figures):
    day: date = Field(description="UTC day the impressions were shown")


class ArmFigures(Figures):
    experiment: str | None = Field(description="None: traffic outside any experiment")
    arm: str | None
    daily: list[DayFigures]


class PlacementFigures(Figures):
    placement: str
    daily: list[DayFigures]
    arms: list[ArmFigures]


class Lift(BaseModel):
    """One arm against the control on the experiment's primary metric."""

    arm: str
    users: int
    absolute: Estimate
    relative: Estimate
    p_value: float | None = Field(description="fixed-horizon two-sided test")
    sequential_p_value: float | None = Field(description="always valid (mSPRT)")
    power: float | None = Field(
        description="power reached for the relative lift mde with these shoppers"
    )
    users_needed: int | None = Field(description="shoppers in both arms for 80% power at mde")


class Preference(BaseModel):
    """An interleaving experiment's preference test over shoppers."""

    a: str
    b: str
    users: int
    prefer_a: int = Field(description="shoppers whose clicks went more to a's items")
    prefer_b: int
    preference: Estimate = Field(
        description="(prefer_b - prefer_a) / (prefer_a + prefer_b): positive when b is better"
    )
    p_value: float | None


class ExperimentFigures(BaseModel):
    name: str
    placement: str
    kind: str
    status: str
    metric: str
    started: int
    stopped: int | None
    winner: str | None
    users: int
    sample_ratio_p_value: float | None = Field(description="None for interleaving")
    sample_ratio_mismatch: bool | None
    lifts: list[Lift]
    interleaving: Preference | None


class QueryFigures(BaseModel):
    query: str = Field(description="case-folded, spaces collapsed")
    searches: int
    users: int
    zero_results: int = Field(description="searches that found nothing")
    clicks: int
    ctr: float | None


class PositionFigures(BaseModel):
    position: int = Field(description="1-based, within the page shown")
    impressions: int = Field(description="searches whose list reached this position")
    clicks: int
    ctr: Estimate


class SearchFigures(BaseModel):
    searches: int
    zero_result_searches: int
    top_queries: list[QueryFigures]
    zero_result_queries: list[QueryFigures]
    no_click_queries: list[QueryFigures] = Field(description="found something, never clicked")
    click_positions: list[PositionFigures]


class Analytics(BaseModel):
    generated: int = Field(description="Unix time the figures were computed")
    days: list[date] = Field(description="the UTC days covered, oldest first")
    attribution_hours: float
    relative_mde: float
    anonymous_impressions: int = Field(description="impressions without user or session")
    placements: list[PlacementFigures]
    experiments: list[ExperimentFigures]
    search: SearchFigures


# ----------------------------------------------------------------- metrics
def shopper_metric(rows: Iterable[ShopperTotals], metric: str) -> UserMetric:
    """An experiment metric (``METRICS``) as per-shopper numerators and
    denominators: CTR a ratio over impressions, conversion (bought or not)
    and revenue per visitor means over shoppers."""
    rows = list(rows)
    if metric == "ctr":
        numerator, denominator = [t.clicks for t in rows], [t.impressions for t in rows]
    elif metric in ("conversion", "revenue"):
        numerator = [float(t.purchases > 0) if metric == "conversion" else t.revenue for t in rows]
        denominator = [1.0] * len(rows)
    else:
        raise ShopsenseError(f"no metric {metric!r}: one of ctr, conversion, revenue")
    return UserMetric(np.asarray(numerator, float), np.asarray(denominator, float))


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _estimate(value: float | None, interval: Iterable[float | None]) -> Estimate:
    low, high = (None if v is None else _finite(float(v)) for v in interval)
    return Estimate(value=None if value is None else _finite(float(value)), low=low, high=high)


def _rate(numerator: np.ndarray, denominator: np.ndarray) -> Estimate:
    found = estimate(UserMetric(np.asarray(numerator, float), np.asarray(denominator, float)))
    return _estimate(found.value, found.ci)


def _figures(rows: ShopperRows, part: slice) -> dict[str, Any]:
    """The fields of :class:`Figures` for these rows (one per shopper)."""
    impressions, clicks, carts = rows.impressions[part], rows.clicks[part], rows.carts[part]
    purchases, revenue = rows.purchases[part], rows.revenue[part]
    visitors = np.ones(len(impressions))
    return {
        "users": len(impressions),
        "impressions": int(impressions.sum()),
        "clicks": int(clicks.sum()),
        "carts": int(carts.sum()),
        "purchases": int(purchases.sum()),
        "revenue": round(float(revenue.sum()), 2),
        "ctr": _rate(clicks, impressions),
        "add_to_cart_rate": _rate(carts, impressions),
        "conversion": _rate(purchases > 0, visitors),
        "revenue_per_visitor": _rate(revenue, visitors),
    }


# ----------------------------------------------------------------- figures
ArmKey = tuple[str, str | None, str | None]
"""(placement, experiment, arm); experiment and arm None outside experiments."""


def _check(days: int, top: int, relative_mde: float) -> None:
    if days < 1 or top < 1:
        raise ShopsenseError(f"days and top must be at least 1, got {days} and {top}")
    if not MDE_RANGE[0] <= relative_mde <= MDE_RANGE[1]:
        raise ShopsenseError(f"relative_mde must be in {list(MDE_RANGE)}, got {relative_mde}")


def _calendar(days: int, now: int) -> tuple[list[date], int]:
    """The ``days`` UTC days ending today, and the Unix time the first begins."""
    today = datetime.fromtimestamp(now, UTC).date()
    calendar = [today - timedelta(days=days - 1 - n) for n in range(days)]
    return calendar, int(datetime.combine(calendar[0], datetime.min.time(), UTC).timestamp())


def store_analytics(
    store: StateStore,
    days: int = DAYS,
    top: int = TOP,
    relative_mde: float = RELATIVE_MDE,
    now: int | None = None,
    log: AttributionLog | None = None,
) -> Analytics:
    """The figures of the last ``days`` UTC days (today included), the ``top``
    queries of each search table, and every experiment in the registry;
    from ``log`` where the caller keeps one up to date (:class:`LiveAnalytics`),
    else from the whole store read now."""
    _check(days, top, relative_mde)
    now = int(time.time()) if now is None else now
    calendar, since = _calendar(days, now)
    log = read_log(store) if log is None else log
    registry = experiments(store)
    columns = log.columns()
    credits = {ATTRIBUTION_SECONDS: log.credit(ATTRIBUTION_SECONDS)}
    for window in {e.attribution_seconds for e in registry.values()} - set(credits):
        credits[window] = log.credit(window)
    credit = credits[ATTRIBUTION_SECONDS]
    times = columns["impression_timestamp"]
    inside = times >= since
    day = np.where(inside, np.minimum((times - since) // DAY_SECONDS, days - 1), -1)
    labels = log.labels.names()

    def name(code: int) -> str | None:
        return None if code < 0 else labels[code]

    placement = columns["impression_placement"]
    # every placement is listed, shown or not (-2: none of its lists was read;
    # it indexes a spare slot of by_placement that no row's code reaches)
    known = [log.labels.index.get(p, -2) for p in PLACEMENTS]
    others = sorted(set(np.unique(placement[inside]).tolist()) - set(known))
    placement_codes = known + others
    by_placement = np.full(len(labels) + 2, -1, np.int64)
    by_placement[placement_codes] = np.arange(len(placement_codes))
    placement_cell = np.where(inside, by_placement[placement], -1)
    arm_triples = np.stack([placement, columns["impression_experiment"], columns["impression_arm"]])
    triples, arm_cell = np.unique(arm_triples[:, inside], axis=1, return_inverse=True)
    arm_cell = _spread(arm_cell.ravel(), inside)
    keys: list[ArmKey] = [(labels[p], name(e), name(a)) for p, e, a in triples.T.tolist()]

    def series(cell: np.ndarray, cells: int) -> list[tuple[dict[str, Any], list[DayFigures]]]:
        """Per cell: its figures overall and by day."""
        overall = log.shopper_rows(credit, cell)
        daily = log.shopper_rows(credit, np.where(cell >= 0, cell * days + day, -1))
        return [
            (_figures(overall, overall.of(n)),
             [DayFigures(day=d, **_figures(daily, daily.of(n * days + k)))
              for k, d in enumerate(calendar)])
            for n in range(cells)
        ]  # fmt: skip

    def arm_order(key: ArmKey) -> tuple[int, float, int]:
        _, experiment_name, arm = key
        found = registry.get(experiment_name) if experiment_name is not None else None
        if found is None:  # outside experiments first; an experiment since deleted last
            return (0 if experiment_name is None else 2, 0, 0)
        return (1, found.started, [*found.arms, "interleaved"].index(arm))

    arms = series(arm_cell, len(keys))
    placements = []
    for n, (figures, daily) in enumerate(series(placement_cell, len(placement_codes))):
        mine = sorted((k for k in range(len(keys)) if keys[k][0] == name(placement_codes[n])),
                      key=lambda k: arm_order(keys[k]))  # fmt: skip
        placements.append(PlacementFigures(
            placement=name(placement_codes[n]) or PLACEMENTS[n], daily=daily, **figures,
            arms=[ArmFigures(experiment=keys[k][1], arm=keys[k][2], daily=arms[k][1], **arms[k][0])
                  for k in mine],
        ))  # fmt: skip
    return Analytics(
        generated=now,
        days=calendar,
        attribution_hours=ATTRIBUTION_SECONDS / 3600,
        relative_mde=relative_mde,
        anonymous_impressions=int((columns["anonymous"] >= since).sum()),
        placements=placements,
        experiments=[
            _experiment_figures(
                store,
                e,
                log,
                experiment_attribution(e, log, credits[e.attribution_seconds]),
                relative_mde,
            )
            for e in registry.values()
        ],
        search=_search_figures(log, credit, inside & (placement == known[2]), top),
    )


def _spread(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``values`` at the rows ``where`` is true, -1 elsewhere."""
    out = np.full(len(where), -1, np.int64)
    out[where] = values
    return out


def _search_figures(
    log: AttributionLog, credit: Credit, search: np.ndarray, top: int
) -> SearchFigures:
    columns = log.columns()
    lengths = columns["impression_length"]
    queries = log.labels.names()
    query = np.where(search, columns["impression_query"], -1)
    query[query == log.labels.index.get("", -2)] = -1  # browsing: no query to list
    counted = np.flatnonzero(credit.counted & (columns["event_type"] == CLICK))
    counted = counted[search[credit.impression[counted]]]
    clicked = credit.impression[counted]
    listed = query >= 0
    codes = len(queries)
    searches = np.bincount(query[listed], minlength=codes)
    zero_results = np.bincount(query[listed & (lengths == 0)], minlength=codes)
    clicks = np.bincount(query[clicked][query[clicked] >= 0], minlength=codes)
    units = len(log.units.index)
    pairs = np.unique(query[listed] * units + columns["impression_unit"][listed])
    users = np.bincount(pairs // units, minlength=codes)
    rows = [
        QueryFigures(query=queries[q], searches=int(searches[q]), users=int(users[q]),
                     zero_results=int(zero_results[q]), clicks=int(clicks[q]),
                     ctr=float(clicks[q] / searches[q]))
        for q in np.flatnonzero(searches).tolist()
    ]  # fmt: skip
    most = sorted(rows, key=lambda r: (-r.searches, r.query))
    return SearchFigures(
        searches=int(search.sum()),
        zero_result_searches=int((search & (lengths == 0)).sum()),
        top_queries=most[:top],
        zero_result_queries=sorted(
            (r for r in rows if r.zero_results), key=lambda r: (-r.zero_results, r.query)
        )[:top],
        no_click_queries=[r for r in most if r.clicks == 0 and r.searches > r.zero_results][:top],
        click_positions=_click_positions(
            columns["impression_unit"][search], lengths[search],
            columns["impression_unit"][clicked], credit.position[counted] + 1,
        ),
    )  # fmt: skip


def _click_positions(
    list_units: np.ndarray, list_lengths: np.ndarray, click_units: np.ndarray,
    click_positions: np.ndarray,
) -> list[PositionFigures]:  # fmt: skip
    """CTR at each position: per shopper, their clicks there over their search
    lists that reached it (the delta method over shoppers, as every rate)."""
    shoppers, list_shopper = np.unique(list_units, return_inverse=True)
    click_shopper = np.searchsorted(shoppers, click_units)
    positions = []
    for position in range(1, int(list_lengths.max(initial=0)) + 1):
        reached = np.bincount(list_shopper[list_lengths >= position], minlength=len(shoppers))
        clicks = np.bincount(click_shopper[click_positions == position], minlength=len(shoppers))
        some = reached > 0
        found = estimate(UserMetric(clicks[some].astype(float), reached[some].astype(float)))
        positions.append(
            PositionFigures(position=position, impressions=int(reached.sum()),
                            clicks=int(clicks.sum()), ctr=_estimate(found.value, found.ci))
        )  # fmt: skip
    return positions


def _experiment_figures(
    store: StateStore,
    experiment: Experiment,
    log: AttributionLog,
    attribution: Attribution,
    relative_mde: float,
) -> ExperimentFigures:
    report = experiment_report(store, experiment, log=log, attribution=attribution)
    users = sum(arm["users"] for arm in report["arms"].values())
    described = {key: getattr(experiment, key)
                 for key in ("name", "placement", "kind", "status", "metric", "started",
                             "stopped", "winner")}  # fmt: skip
    if experiment.kind == "interleaving":
        test = report["interleaving"]
        preference = Preference(
            a=test["a"], b=test["b"], users=test["users"], prefer_a=test["prefer_a"],
            prefer_b=test["prefer_b"], preference=_estimate(test["preference"], test["ci"]),
            p_value=test["p_value"],
        )  # fmt: skip
        return ExperimentFigures(
            **described, users=users, sample_ratio_p_value=None, sample_ratio_mismatch=None,
            lifts=[], interleaving=preference,
        )  # fmt: skip
    rows: dict[str, list[ShopperTotals]] = collections.defaultdict(list)
    for (_, arm), totals in attribution.by_shopper.items():
        rows[arm].append(totals)
    control = experiment.control
    baseline = shopper_metric(rows[control], experiment.metric)
    lifts = []
    for arm, metrics in report["comparisons"].items():
        compared = metrics[experiment.metric]
        in_arms = len(rows[control]) + len(rows[arm])
        share = experiment.shares[control] + experiment.shares[arm]
        shares = (experiment.shares[control] / share, experiment.shares[arm] / share)
        try:
            power = power_reached(baseline, relative_mde, in_arms, shares=shares, cuped=False)
            needed = users_needed(baseline, relative_mde, shares=shares, cuped=False)
        except ShopsenseError:  # a baseline too small (or all zero) to size anything
            power, needed = None, None
        lifts.append(
            Lift(arm=arm, users=compared["treatment"]["users"],
                 absolute=_estimate(compared["absolute_lift"], compared["absolute_ci"]),
                 relative=_estimate(compared["relative_lift"], compared["relative_ci"]),
                 p_value=compared["p_value"], sequential_p_value=compared["sequential_p_value"],
                 power=power, users_needed=needed)
        )  # fmt: skip
    ratio = report["sample_ratio"]
    return ExperimentFigures(**described, users=users, sample_ratio_p_value=ratio["p_value"],
                             sample_ratio_mismatch=ratio["mismatch"], lifts=lifts,
                             interleaving=None)  # fmt: skip


class LiveAnalytics:
    """One worker's figures of one store, kept between calls: the log read so
    far (:func:`~shopsense.serving.attribution.read_log`: only what was
    appended since is read, a store emptied or replaced is read anew) and the
    last figures made, given again while neither the log, the experiments,
    the parameters nor the day have changed.

    ``lock`` makes one computation at a time: callers hold it around
    :meth:`figures`, so that calls that came together wait for one and get
    its figures rather than each making them."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.lock = threading.Lock()
        self.log_: AttributionLog | None = None
        self._last: tuple[tuple[Any, ...], Analytics] | None = None

    def figures(
        self,
        days: int = DAYS,
        top: int = TOP,
        relative_mde: float = RELATIVE_MDE,
        now: int | None = None,
    ) -> Analytics:
        _check(days, top, relative_mde)
        now = int(time.time()) if now is None else now
        self.log_ = read_log(self.store, self.log_)
        log = self.log_
        made_of = (days, top, relative_mde, _calendar(days, now)[1], id(log), log.event_seq_,
                   log.impression_seq_, experiments(self.store))  # fmt: skip
        if self._last is None or self._last[0] != made_of:
            self._last = made_of, store_analytics(self.store, days, top, relative_mde, now, log)
        return self._last[1]


# ----------------------------------------------------------------- Prometheus
class ImpressionCounters:
    """A Prometheus counter of the impressions stored, by placement and arm
    (``default`` outside experiments). Searches that found nothing are
    counted where they are answered (``Metrics.search_answered``).

    Counted by the impression writer as it stores a batch
    (:meth:`count`), so the request path pays nothing, and counted once
    (by the worker that served it) in every worker's files when
    ``PROMETHEUS_MULTIPROC_DIR`` sums them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._impressions = Counter(
            "shopsense_impressions",
            "Lists shown (and stored), by placement, experiment and arm.",
            ["placement", "experiment", "arm"],
            registry=registry,
        )

    def count(self, impressions: Iterable[Impression]) -> None:
        tally: collections.Counter[tuple[str, str, str]] = collections.Counter()
        for impression in impressions:
            experiment = impression.experiment or "none"
            tally[impression.placement, experiment, impression.arm or DEFAULT_ARM] += 1
        for (placement, experiment, arm), n in tally.items():
            self._impressions.labels(placement, experiment, arm).inc(n)
