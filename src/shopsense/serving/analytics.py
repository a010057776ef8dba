"""Store analytics: what each placement and experiment arm showed and earned,
day by day, how the experiments stand, and what shoppers searched for.

Every figure comes from the impression and event logs through
:func:`~shopsense.serving.attribution.attribute`, so a click or purchase
counts here exactly when it counts in an experiment's report:

- The unit is the shopper (user, else session), as in the experiments: each
  rate is a per-shopper ratio whose 95% interval is the delta method's
  (:func:`~shopsense.evaluation.online.estimate`). An impression without a
  shopper cannot be credited, so it is only counted (``anonymous_impressions``).
- A click or purchase counts on the day, placement and arm of the impression
  it is credited to, with the default 24 h attribution window.
- ``attribute`` totals by (shopper, arm); each impression is given, as its
  arm, a label of the figures' cell it falls in (placement, experiment, arm,
  day, query), so one pass credits every event once across all placements.
  A search impression's ``teams`` name its positions: ``attribute`` counts
  clicks by the clicked position's team, which gives the click-position curve.
- Experiments are summed up from
  :func:`~shopsense.serving.experiment_report.experiment_report` (its own
  window and CUPED), plus the power the test has reached for a relative lift
  of ``relative_mde`` on its primary metric (without CUPED's reduction: a
  lower bound).

The figures read the whole log at each call (see the route: off the event
loop). :class:`ImpressionCounters` are the Prometheus side, counted as
impressions are written rather than read back from the store.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, Field

from shopsense.errors import ShopsenseError
from shopsense.evaluation.online import UserMetric, estimate, power_reached, users_needed
from shopsense.serving.attribution import (
    ShopperTotals,
    attribute,
    logged_events,
    logged_impressions,
    unit_of,
)
from shopsense.serving.experiment_report import experiment_attribution, experiment_report
from shopsense.serving.experiments import ATTRIBUTION_SECONDS, PLACEMENTS, Experiment, experiments
from shopsense.serving.store import Event, Impression, StateStore

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
RATES = {
    "ctr": "ctr",
    "add_to_cart": "add_to_cart_rate",
    "conversion": "conversion",
    "revenue": "revenue_per_visitor",
}
"""Metric name (as experiments name them) → its field in :class:`Figures`."""


@dataclass(slots=True)
class Sums:
    """A shopper's totals summed over cells: :class:`ShopperTotals` without the
    per-team credit (whose ``Counter`` per row was most of the summing's cost)."""

    impressions: int = 0
    clicks: int = 0
    carts: int = 0
    purchases: int = 0
    revenue: float = 0.0


Totals = ShopperTotals | Sums


def shopper_metric(rows: Iterable[Totals], metric: str) -> UserMetric:
    """A metric of :data:`RATES` as per-shopper numerators and denominators:
    CTR and add-to-cart rate are ratios over impressions, conversion (bought
    or not) and revenue per visitor are means over shoppers."""
    rows = list(rows)
    if metric in ("ctr", "add_to_cart"):
        numerator = [t.clicks if metric == "ctr" else t.carts for t in rows]
        denominator = [t.impressions for t in rows]
    elif metric in ("conversion", "revenue"):
        numerator = [float(t.purchases > 0) if metric == "conversion" else t.revenue for t in rows]
        denominator = [1.0] * len(rows)
    else:
        raise ShopsenseError(f"no metric {metric!r}: one of {', '.join(RATES)}")
    return UserMetric(np.asarray(numerator, float), np.asarray(denominator, float))


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _estimate(value: float | None, interval: Iterable[float | None]) -> Estimate:
    low, high = (None if v is None else _finite(float(v)) for v in interval)
    return Estimate(value=None if value is None else _finite(float(value)), low=low, high=high)


def _rate(rows: list[Totals], metric: str) -> Estimate:
    found = estimate(shopper_metric(rows, metric))
    return _estimate(found.value, found.ci)


def _add(into: Totals, more: Totals) -> None:
    into.impressions += more.impressions
    into.clicks += more.clicks
    into.carts += more.carts
    into.purchases += more.purchases
    into.revenue += more.revenue


def _figures(by_shopper: dict[str, Sums]) -> dict[str, Any]:
    """The fields of :class:`Figures` for these shoppers' totals."""
    rows = list(by_shopper.values())
    total = Sums()
    for row in rows:
        _add(total, row)
    return {
        "users": len(rows),
        "impressions": total.impressions,
        "clicks": total.clicks,
        "carts": total.carts,
        "purchases": total.purchases,
        "revenue": round(total.revenue, 2),
        **{name: _rate(rows, metric) for metric, name in RATES.items()},
    }


# ----------------------------------------------------------------- the log
@dataclass(frozen=True)
class _Cell:
    """The finest grain of the figures: what an impression's label stands for."""

    placement: str
    experiment: str | None
    arm: str | None
    day: int
    query: str | None


@dataclass
class _Series:
    """Per shopper, the totals of one placement or arm, overall and by day."""

    total: dict[str, Sums] = field(default_factory=lambda: collections.defaultdict(Sums))
    daily: dict[int, dict[str, Sums]] = field(
        default_factory=lambda: collections.defaultdict(lambda: collections.defaultdict(Sums))
    )

    def add(self, unit: str, day: int, totals: ShopperTotals) -> None:
        _add(self.total[unit], totals)
        _add(self.daily[day][unit], totals)


@dataclass
class _Query:
    searches: int = 0
    zero_results: int = 0
    clicks: int = 0
    users: set[str] = field(default_factory=set)


class _Labels:
    """Relabels impressions for ``attribute`` (see the module's docstring) and
    keeps what the figures need that attribution does not count: searches
    that found nothing, and how far each shopper's search lists reached."""

    def __init__(self, since: int, days: int) -> None:
        self.since = since
        self.days = days
        self.cells: list[_Cell] = []
        self._index: dict[_Cell, str] = {}
        self.zero_results: collections.Counter[str] = collections.Counter()
        self.zero_result_searches = 0
        self.lengths: dict[str, collections.Counter[int]] = collections.defaultdict(
            collections.Counter
        )
        """Per shopper: how many search lists of each length they were shown."""
        self.anonymous = 0

    def relabel(self, impressions: Iterable[Impression]) -> Iterator[Impression]:
        for impression in impressions:
            if impression.timestamp < self.since:
                continue
            unit = unit_of(impression.user_id, impression.session_id)
            if unit is None:
                self.anonymous += 1
                continue
            day = min((impression.timestamp - self.since) // DAY_SECONDS, self.days - 1)
            search = impression.placement == "search"
            query = normal_query(impression.query) if search else None
            cell = _Cell(impression.placement, impression.experiment, impression.arm, day, query)
            label = self._index.get(cell)
            if label is None:
                label = self._index[cell] = str(len(self.cells))
                self.cells.append(cell)
            teams = None
            if search:
                self.lengths[unit][len(impression.items)] += 1
                teams = tuple(str(p) for p in range(1, len(impression.items) + 1))
                if not impression.items:
                    self.zero_result_searches += 1
                    self.zero_results[query] += 1
            yield replace(impression, arm=label, teams=teams)


def normal_query(query: str | None) -> str:
    """A query as the search tables group it: case-folded, spaces collapsed."""
    return " ".join((query or "").casefold().split())


# ----------------------------------------------------------------- figures
ArmKey = tuple[str, str | None, str | None]
"""(placement, experiment, arm); experiment and arm None outside experiments."""


class _Tallies:
    """The attributed totals summed per shopper for each table of the figures."""

    def __init__(self, labels: _Labels, by_shopper: dict[tuple[str, str], ShopperTotals]) -> None:
        self.placements: dict[str, _Series] = {p: _Series() for p in PLACEMENTS}
        self.arms: dict[ArmKey, _Series] = collections.defaultdict(_Series)
        self.queries: dict[str, _Query] = collections.defaultdict(_Query)
        self.position_clicks: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        """Per shopper: their search clicks by position (``"1"``, ``"2"``…)."""
        for (unit, label), totals in by_shopper.items():
            cell = labels.cells[int(label)]
            self.placements.setdefault(cell.placement, _Series()).add(unit, cell.day, totals)
            self.arms[cell.placement, cell.experiment, cell.arm].add(unit, cell.day, totals)
            if cell.placement != "search":
                continue
            self.position_clicks[unit].update(totals.credit)
            if cell.query:
                found = self.queries[cell.query]
                found.searches += totals.impressions
                found.clicks += totals.clicks
                found.users.add(unit)
        for query, n in labels.zero_results.items():
            if query:
                self.queries[query].zero_results = n


def store_analytics(
    store: StateStore,
    days: int = DAYS,
    top: int = TOP,
    relative_mde: float = RELATIVE_MDE,
    now: int | None = None,
) -> Analytics:
    """The figures of the last ``days`` UTC days (today included), the ``top``
    queries of each search table, and every experiment in the registry."""
    if days < 1 or top < 1:
        raise ShopsenseError(f"days and top must be at least 1, got {days} and {top}")
    if not MDE_RANGE[0] <= relative_mde <= MDE_RANGE[1]:
        raise ShopsenseError(f"relative_mde must be in {list(MDE_RANGE)}, got {relative_mde}")
    now = int(time.time()) if now is None else now
    today = datetime.fromtimestamp(now, UTC).date()
    calendar = [today - timedelta(days=days - 1 - n) for n in range(days)]
    since = int(datetime.combine(calendar[0], datetime.min.time(), UTC).timestamp())
    events = list(logged_events(store))
    impressions = list(logged_impressions(store))
    labels = _Labels(since, days)
    attribution = attribute(
        labels.relabel(impressions),
        (e for e in events if e.timestamp >= since),
        ATTRIBUTION_SECONDS,
    )
    tallies = _Tallies(labels, attribution.by_shopper)
    registry = experiments(store)

    def daily(series: _Series) -> list[DayFigures]:
        return [DayFigures(day=d, **_figures(series.daily[n])) for n, d in enumerate(calendar)]

    def arm_order(key: ArmKey) -> tuple[int, float, int]:
        _, name, arm = key
        found = registry.get(name) if name is not None else None
        if found is None:  # outside experiments first; an experiment since deleted last
            return (0 if name is None else 2, 0, 0)
        return (1, found.started, [*found.arms, "interleaved"].index(arm))

    placements = []
    for placement, series in tallies.placements.items():
        keys = sorted((k for k in tallies.arms if k[0] == placement), key=arm_order)
        arms = [
            ArmFigures(experiment=key[1], arm=key[2], daily=daily(tallies.arms[key]),
                       **_figures(tallies.arms[key].total))
            for key in keys
        ]  # fmt: skip
        placements.append(
            PlacementFigures(
                placement=placement, daily=daily(series), arms=arms, **_figures(series.total)
            )
        )
    return Analytics(
        generated=now,
        days=calendar,
        attribution_hours=ATTRIBUTION_SECONDS / 3600,
        relative_mde=relative_mde,
        anonymous_impressions=labels.anonymous,
        placements=placements,
        experiments=[
            _experiment_figures(store, e, impressions, events, relative_mde)
            for e in registry.values()
        ],
        search=_search_figures(labels, tallies, top),
    )


def _search_figures(labels: _Labels, tallies: _Tallies, top: int) -> SearchFigures:
    rows = [
        QueryFigures(query=q, searches=f.searches, users=len(f.users), zero_results=f.zero_results,
                     clicks=f.clicks, ctr=f.clicks / f.searches if f.searches else None)
        for q, f in tallies.queries.items()
    ]  # fmt: skip
    most = sorted(rows, key=lambda r: (-r.searches, r.query))
    return SearchFigures(
        searches=sum(sum(lengths.values()) for lengths in labels.lengths.values()),
        zero_result_searches=labels.zero_result_searches,
        top_queries=most[:top],
        zero_result_queries=sorted(
            (r for r in rows if r.zero_results), key=lambda r: (-r.zero_results, r.query)
        )[:top],
        no_click_queries=[r for r in most if r.clicks == 0 and r.searches > r.zero_results][:top],
        click_positions=_click_positions(labels.lengths, tallies.position_clicks),
    )


def _click_positions(
    lengths: dict[str, collections.Counter[int]],
    position_clicks: dict[str, collections.Counter[str]],
) -> list[PositionFigures]:
    """CTR at each position: per shopper, their clicks there over their search
    lists that reached it (the delta method over shoppers, as every rate)."""
    longest = max((n for shown in lengths.values() for n in shown), default=0)
    positions = []
    for position in range(1, longest + 1):
        clicks, reached = [], []
        for unit, shown in lengths.items():
            lists = sum(count for n, count in shown.items() if n >= position)
            if lists:
                clicks.append(position_clicks[unit][str(position)])
                reached.append(lists)
        found = estimate(UserMetric(np.asarray(clicks, float), np.asarray(reached, float)))
        positions.append(
            PositionFigures(position=position, impressions=sum(reached), clicks=sum(clicks),
                            ctr=_estimate(found.value, found.ci))
        )  # fmt: skip
    return positions


def _experiment_figures(
    store: StateStore,
    experiment: Experiment,
    impressions: list[Impression],
    events: list[Event],
    relative_mde: float,
) -> ExperimentFigures:
    attribution = experiment_attribution(experiment, impressions, events)
    report = experiment_report(store, experiment, events=events, attribution=attribution)
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


# ----------------------------------------------------------------- Prometheus
class ImpressionCounters:
    """Prometheus counters of the impressions stored, by placement and arm
    (``default`` outside experiments), and of searches that found nothing.

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
        self._zero_results = Counter(
            "shopsense_zero_result_searches",
            "Searches that found nothing.",
            registry=registry,
        )

    def count(self, impressions: Iterable[Impression]) -> None:
        tally: collections.Counter[tuple[str, str, str]] = collections.Counter()
        zero_results = 0
        for impression in impressions:
            experiment = impression.experiment or "none"
            tally[impression.placement, experiment, impression.arm or DEFAULT_ARM] += 1
            zero_results += impression.placement == "search" and not impression.items
        for (placement, experiment, arm), n in tally.items():
            self._impressions.labels(placement, experiment, arm).inc(n)
        if zero_results:
            self._zero_results.inc(zero_results)
