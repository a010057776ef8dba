"""The ``shopsense simulate`` command (registered by ``shopsense.cli``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from shopsense.errors import ShopsenseError
from shopsense.simulation.driver import (
    MAX_CONCURRENCY,
    MAX_SECONDS,
    MAX_SHOPPERS,
    Simulation,
    loopback_address,
)


def _loopback(ctx: click.Context, param: click.Parameter, url: str) -> str:
    """Refuse a URL off this machine before the store is read."""
    try:
        loopback_address(url)
    except ShopsenseError as e:
        raise click.BadParameter(str(e)) from None
    return url


@click.command(name="simulate")
@click.option(
    "--url",
    required=True,
    callback=_loopback,
    help="The running service, on this machine only, e.g. http://127.0.0.1:8000.",
)
@click.option(
    "--data",
    "raw",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The raw folder `shopsense generate` wrote (the shoppers' tastes are in it).",
)
@click.option(
    "--shoppers",
    default=100,
    show_default=True,
    type=click.IntRange(1, MAX_SHOPPERS),
    help="Users who shop, drawn by their activity.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Who shops and what they do.")
@click.option(
    "--seconds",
    default=60.0,
    show_default=True,
    type=click.FloatRange(0, MAX_SECONDS, min_open=True),
    help="Stop after this long, whatever is left.",
)
@click.option(
    "--concurrency",
    default=4,
    show_default=True,
    type=click.IntRange(1, MAX_CONCURRENCY),
    help="Shoppers at a time (one connection each).",
)
@click.option(
    "--api-key",
    envvar="SHOPSENSE_API_KEY",
    default=None,
    help="Sent as a bearer token with every request (or set SHOPSENSE_API_KEY).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def simulate(
    url: str,
    raw: Path,
    shoppers: int,
    seed: int,
    seconds: float,
    concurrency: int,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Drive a running service with simulated shoppers from a synthetic store.

    They ask for recommendations, search, click with position bias, add to
    cart and buy, posting every event with the list's request id. The report
    gives, per placement, experiment and arm, what was observed beside the
    model's true CTR, conversion and revenue per shopper, and the service's
    requests per second and latency.
    """
    from shopsense.simulation.shoppers import ShopperModel

    model = ShopperModel.from_raw(raw)
    report = Simulation(url, model, shoppers, seed, seconds, concurrency, api_key).run()
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.render())
