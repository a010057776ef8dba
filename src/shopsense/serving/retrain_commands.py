"""``shopsense retrain``: continuous training from the live event log.

Exit status: 0 when the challenger was registered (and promoted, with
``--promote``), ``REFUSED_STATUS`` (3) when it scored worse than the champion
by more than the margin and nothing was registered, 1 on an error (bad
input, nothing to train or score on); the champion keeps serving in both
failing cases. 2 stays click's own, for a malformed command line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from shopsense.serving.commands import DATA_OPTION, MODELS_OPTION, STATE_OPTION
from shopsense.serving.retrain import REFUSED_STATUS, RetrainReport, retrain
from shopsense.serving.store import open_store


def _params(ctx: click.Context, option: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    """``--param NAME=VALUE`` pairs; a value is read as JSON (``10``, ``0.5``,
    ``true``) when it is JSON, else kept as text."""
    found: dict[str, Any] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"takes NAME=VALUE, got {value!r}")
        try:
            found[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            found[name.strip()] = text
    return found


@click.command(name="retrain")
@DATA_OPTION
@STATE_OPTION
@MODELS_OPTION
@click.option(
    "--model",
    default=None,
    help="The challenger's model (see `shopsense models`); default: the champion's, "
    "with its saved parameters.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    callback=_params,
    help="A model parameter (overrides the champion's). Repeat for each.",
)
@click.option(
    "--holdout-days",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="The most recent days of events to score challenger and champion on.",
)
@click.option(
    "--margin",
    default=0.02,
    show_default=True,
    type=click.FloatRange(0, 1, max_open=True),
    help="How much worse than the champion (a fraction of its NDCG) the challenger may be.",
)
@click.option("-k", "--k", default=10, show_default=True, type=click.IntRange(1), help="NDCG@K.")
@click.option("--promote", is_flag=True, help="Make the registered version the champion.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def retrain_command(
    data: Path,
    state: str,
    models: Path,
    model: str | None,
    params: dict[str, Any],
    holdout_days: float,
    margin: float,
    k: int,
    promote: bool,
    as_json: bool,
) -> None:
    """Train a challenger on --data plus the live events and catalogue changes,
    score it against the champion on the last --holdout-days, and register it
    as the next model version unless it is worse by more than --margin.

    Exits with status 3 when the challenger is refused (nothing is
    registered), 1 on an error; the champion keeps serving either way.
    """
    store = open_store(state)
    try:
        report = retrain(data, store, models, model, params, holdout_days, margin, k, promote)
    finally:
        store.close()
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else _readable(report))
    if not report.accepted:
        click.echo(
            f"refused: the challenger's {report.metric} is below {report.threshold:.4f}; "
            f"{report.champion} keeps serving",
            err=True,
        )
        sys.exit(REFUSED_STATUS)


def _readable(report: RetrainReport) -> str:
    metric, recall = report.metric, f"Recall@{report.k}"
    champion, challenger = report.champion_scores, report.challenger_scores
    counts = report.dataset
    lines = [
        f"combined data: {counts['users']:,} users (+{counts['new_users']:,}), "
        f"{counts['items']:,} items (+{counts['new_items']:,}), {counts['events']:,} events "
        f"({counts['live_events']:,} live)",
        f"holdout: the last {report.holdout_days:g} days, {report.holdout_users:,} shoppers",
        f"{'':<22}{metric:>10}{recall:>11}",
        f"{'champion ' + report.champion:<22}{champion[metric]:>10.4f}{champion[recall]:>11.4f}",
        f"{'challenger ' + report.model:<22}{challenger[metric]:>10.4f}{challenger[recall]:>11.4f}",
        "seconds: " + ", ".join(f"{phase} {s:.2f}" for phase, s in report.seconds.items()),
    ]
    if report.version is not None:
        promoted = f"; champion: {report.version}" if report.promoted else " (not promoted)"
        lines.append(f"registered {report.version}{promoted}")
    return "\n".join(lines)


COMMANDS = (retrain_command,)
