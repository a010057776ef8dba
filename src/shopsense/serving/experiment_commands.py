"""The experiment and champion commands of the ``shopsense`` CLI:
``experiment create|list|show|stop|promote``, ``promote`` and ``rollback``.

They work on the state store the service shares (``--state``): a running
service applies each change as it follows the change log, on every worker.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from shopsense.errors import ShopsenseError
from shopsense.serving.champion import champion, promote, rollback, served_version
from shopsense.serving.commands import MODELS_OPTION, STATE_OPTION
from shopsense.serving.experiment_report import experiment_report, winner
from shopsense.serving.experiments import (
    KINDS,
    MAX_ATTRIBUTION_HOURS,
    METRICS,
    PLACEMENTS,
    Experiment,
    create_experiment,
    experiments,
    get_experiment,
    parse_shares,
    promote_arm,
    stop_experiment,
)
from shopsense.serving.recommendations import model_versions
from shopsense.serving.store import StateStore, open_store

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@contextmanager
def _store(state: str) -> Iterator[StateStore]:
    store = open_store(state)
    try:
        yield store
    finally:
        store.close()


@click.group()
def experiment() -> None:
    """Online experiments: A/B tests and interleaving on live traffic."""


@experiment.command()
@click.argument("name")
@STATE_OPTION
@click.option("--placement", type=click.Choice(PLACEMENTS), required=True)
@click.option(
    "--arm",
    "arms",
    multiple=True,
    required=True,
    metavar="NAME=VERSION",
    help="An arm: a model version (search: personalized or unpersonalized). The first is "
    "the control. Repeat for each arm.",
)
@click.option("--traffic", default=None, help="Each arm's share of shoppers, e.g. 0.5/0.5.")
@click.option("--metric", type=click.Choice(METRICS), default="ctr", show_default=True)
@click.option("--guardrail", "guardrails", multiple=True, type=click.Choice(METRICS))
@click.option("--kind", type=click.Choice(KINDS), default="ab", show_default=True)
@click.option(
    "--attribution-hours",
    default=24.0,
    show_default=True,
    type=click.FloatRange(0.001, MAX_ATTRIBUTION_HOURS),
)
@click.option(
    "--models",
    type=click.Path(path_type=Path),
    default=None,
    help="The model registry, to check that each arm's version is in it (needed unless "
    "the placement is search).",
)
def create(
    name: str,
    state: str,
    placement: str,
    arms: tuple[str, ...],
    traffic: str | None,
    metric: str,
    guardrails: tuple[str, ...],
    kind: str,
    attribution_hours: float,
    models: Path | None,
) -> None:
    """Start experiment NAME (every worker of a running service picks it up)."""
    named: dict[str, str] = {}
    for arm in arms:
        arm_name, sep, value = arm.partition("=")
        if not sep or not arm_name or not value or arm_name in named:
            raise ShopsenseError(f"--arm {arm!r}: give NAME=VERSION, each name once")
        named[arm_name] = value
    if placement != "search":
        if models is None:
            raise ShopsenseError("give --models: each arm's version must be in the registry")
        known = {p.name for p in model_versions(models)}
        missing = sorted(set(named.values()) - known)
        if missing:
            raise ShopsenseError(f"no model version {', '.join(missing)} in {models}")
    found = Experiment(
        name=name, placement=placement, arms=named, shares=parse_shares(named, traffic),
        metric=metric, guardrails=guardrails, kind=kind,
        attribution_seconds=round(attribution_hours * 3600),
    )  # fmt: skip
    with _store(state) as store:
        create_experiment(store, found)
    shares = ", ".join(f"{a} {s:.0%}" for a, s in found.shares.items())
    click.echo(f"experiment {name} running on {placement}: {shares}")


@experiment.command(name="list")
@STATE_OPTION
@JSON_OPTION
def list_experiments(state: str, as_json: bool) -> None:
    """Every experiment, oldest first."""
    with _store(state) as store:
        found = list(experiments(store).values())
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in found], indent=2))
        return
    for e in found:
        arms = ", ".join(f"{a}={v}" for a, v in e.arms.items())
        click.echo(f"{e.name:<24} {e.status:<9} {e.placement:<16} {e.kind:<13} {arms}")


@experiment.command()
@click.argument("name")
@STATE_OPTION
@JSON_OPTION
@click.option("--alpha", default=0.05, show_default=True, type=click.FloatRange(0.0001, 0.5))
def show(name: str, state: str, as_json: bool, alpha: float) -> None:
    """Per arm: shoppers, impressions, clicks, purchases, revenue, CTR and
    conversion; the lift with its interval, p-values and the sample-ratio check."""
    with _store(state) as store:
        report = experiment_report(store, get_experiment(store, name), alpha=alpha)
    click.echo(json.dumps(report, indent=2) if as_json else _readable(report))


@experiment.command()
@click.argument("name")
@STATE_OPTION
def stop(name: str, state: str) -> None:
    """Stop NAME: every shopper sees the champion again."""
    with _store(state) as store:
        stop_experiment(store, name)
    click.echo(f"experiment {name} stopped")


@experiment.command(name="promote")
@click.argument("name")
@STATE_OPTION
@MODELS_OPTION
@click.option("--arm", default=None, help="The arm to serve (default: the one that won).")
def promote_winner(name: str, state: str, models: Path, arm: str | None) -> None:
    """Serve an arm of NAME to everyone (hot swap) and stop the experiment."""
    with _store(state) as store:
        if arm is None:
            arm = winner(experiment_report(store, get_experiment(store, name)))
            if arm is None:
                raise ShopsenseError(f"no arm of {name} has won (yet): name one with --arm")
        promoted = promote_arm(store, models, name, arm)
    click.echo(f"experiment {name}: arm {arm} ({promoted.arms[arm]}) promoted")


@click.command(name="promote")
@click.argument("version")
@STATE_OPTION
@MODELS_OPTION
def promote_version(version: str, state: str, models: Path) -> None:
    """Serve model VERSION (every worker swaps it in as it follows the log)."""
    with _store(state) as store:
        before = served_version(store, models)
        promote(store, models, version)
    click.echo(f"champion: {version} (was {before})")


@click.command(name="rollback")
@STATE_OPTION
@MODELS_OPTION
def rollback_version(state: str, models: Path) -> None:
    """Serve again the version the last promotion replaced."""
    with _store(state) as store:
        before = champion(store) or served_version(store, models)
        version = rollback(store, models)
    click.echo(f"champion: {version} (was {before})")


def _readable(report: dict[str, Any]) -> str:
    e = report["experiment"]
    lines = [f"{e['name']}: {e['status']}, {e['kind']} on {e['placement']}, "
             f"primary metric {e['metric']}"]  # fmt: skip
    lines.append(f"{'arm':<14}{'users':>8}{'impr.':>9}{'clicks':>8}{'buys':>6}"
                 f"{'revenue':>11}{'CTR':>9}{'conv.':>8}")  # fmt: skip
    for arm, f in report["arms"].items():
        lines.append(
            f"{arm:<14}{f['users']:>8}{f['impressions']:>9}{f['clicks']:>8}{f['purchases']:>6}"
            f"{f['revenue']:>11.2f}{f['ctr']:>9.4f}{f['conversion']:>8.4f}"
        )
    if "interleaving" in report:
        p = report["interleaving"]
        lo, hi = p["ci"]
        lines.append(f"preference for {p['b']} over {p['a']} {_fmt(p['preference'], '+.4f')} "
                     f"[{_fmt(lo, '+.4f')}, {_fmt(hi, '+.4f')}] (positive: {p['b']} wins), "
                     f"p = {_fmt(p['p_value'], '.4g')} over {p['users']} shoppers")  # fmt: skip
        return "\n".join(lines)
    srm = report["sample_ratio"]
    flag = "  MISMATCH: the split is broken" if srm["mismatch"] else ""
    lines.append(f"sample ratio p = {srm['p_value']:.4g}{flag}")
    control = next(iter(e["arms"]))
    for arm, metrics in report["comparisons"].items():
        for metric, c in metrics.items():
            lo, hi = c["relative_ci"]
            low, high = c["absolute_ci"]
            lines.append(
                f"{arm} vs {control} {metric}: {_fmt(c['absolute_lift'], '+.4g')} "
                f"[{_fmt(low, '+.4g')}, {_fmt(high, '+.4g')}], relative "
                f"{_fmt(c['relative_lift'], '+.2%')} [{_fmt(lo, '+.2%')}, {_fmt(hi, '+.2%')}], "
                f"p = {_fmt(c['p_value'], '.4g')} (always-valid "
                f"{_fmt(c['sequential_p_value'], '.4g')})"
            )
    return "\n".join(lines)


def _fmt(value: float | None, spec: str) -> str:
    """A figure, or "n/a" where the data cannot determine it (``to_dict``'s None)."""
    return "n/a" if value is None else format(value, spec)


COMMANDS = (experiment, promote_version, rollback_version)
