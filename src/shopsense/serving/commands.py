"""The serving commands of the ``shopsense`` CLI: serve and batch."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import click

from shopsense.errors import ShopsenseError
from shopsense.serving.limits import Limits
from shopsense.serving.recommendations import MODES, ModelBundle, model_versions
from shopsense.serving.workers import run_service

DEFAULT_STATE = "shopsense-state/state.db"
DATA_OPTION = click.option(
    "--data", required=True, type=click.Path(path_type=Path), help="Ingested dataset folder."
)
MODELS_OPTION = click.option(
    "--models",
    required=True,
    type=click.Path(path_type=Path),
    help="A saved model, or a registry folder of versions (the champion is served: the "
    "version last promoted, else the newest by name).",
)
STATE_OPTION = click.option(
    "--state",
    default=DEFAULT_STATE,
    show_default=True,
    help="State store: a SQLite path (sqlite:///PATH) or redis://HOST:PORT/DB.",
)


@click.command()
@DATA_OPTION
@MODELS_OPTION
@click.option("--index", type=click.Path(path_type=Path), default=None, help="Search index folder.")
@STATE_OPTION
@click.option("--mode", type=click.Choice(MODES), default="hybrid", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes; each listens on the port and the kernel spreads connections.",
)
@click.option(
    "--api-key-file",
    type=click.Path(path_type=Path),
    default=None,
    help="File holding the admin API key (or set SHOPSENSE_API_KEY).",
)
@click.option(
    "--rate-limit",
    default=Limits.rate,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Requests a second each client address may make, all workers together (each worker "
    "allows its share); 0 for no limit. Health checks and /metrics are never limited.",
)
@click.option(
    "--rate-limit-exempt",
    default=",".join(Limits.exempt),
    show_default=True,
    help="Comma-separated networks that are not rate limited ('' for none). A proxy on "
    "loopback should send X-Forwarded-For: its clients are then limited one by one.",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="A browser origin allowed to call the API, e.g. https://shop.example (repeat for "
    "more); none by default.",
)
@click.option(
    "--retrain-every",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Run `shopsense retrain` every this many hours while serving (0: never). Run it on "
    "one machine of a fleet.",
)
@click.option("--retrain-promote", is_flag=True, help="Promote what a scheduled retrain registers.")
def serve(
    data: Path,
    models: Path,
    index: Path | None,
    state: str,
    mode: str,
    host: str,
    port: int,
    workers: int,
    api_key_file: Path | None,
    rate_limit: float,
    rate_limit_exempt: str,
    cors_origins: tuple[str, ...],
    retrain_every: float,
    retrain_promote: bool,
) -> None:
    """Run the HTTP service and storefront (OpenAPI docs at /docs)."""
    if not (data / "manifest.json").is_file():
        raise ShopsenseError(f"{data} is not an ingested dataset (no manifest.json)")
    model_versions(models)
    if index is not None and not (index / "settings.json").is_file():
        raise ShopsenseError(f"{index} is not a search index (no settings.json)")
    os.environ.update(
        SHOPSENSE_DATA=str(data.resolve()),
        SHOPSENSE_MODELS=str(models.resolve()),
        SHOPSENSE_STATE=state,
        SHOPSENSE_MODE=mode,
        SHOPSENSE_WORKERS=str(workers),
        SHOPSENSE_RATE_LIMIT=str(rate_limit),
        SHOPSENSE_RATE_LIMIT_EXEMPT=rate_limit_exempt,
        SHOPSENSE_CORS_ORIGINS=",".join(cors_origins),
    )
    if index is not None:
        os.environ["SHOPSENSE_INDEX"] = str(index.resolve())
    if api_key_file is not None:
        if not api_key_file.is_file():
            raise ShopsenseError(f"API key file {api_key_file} not found")
        os.environ["SHOPSENSE_API_KEY_FILE"] = str(api_key_file.resolve())
    click.echo(f"storefront: http://{host}:{port}/   API docs: http://{host}:{port}/docs")
    if retrain_every > 0:
        from shopsense.serving.schedule import RetrainSchedule

        schedule = RetrainSchedule(retrain_every * 3600, data, state, models, retrain_promote)
        threading.Thread(target=schedule.run, args=(threading.Event(),), daemon=True).start()
    run_service(host, port, workers)


@click.command()
@DATA_OPTION
@MODELS_OPTION
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder for Parquet.")
@STATE_OPTION
@click.option("-k", "--k", default=100, show_default=True, type=click.IntRange(1, 1000))
@click.option("--chunk", default=2048, show_default=True, type=click.IntRange(1))
def batch(data: Path, models: Path, out: Path, state: str, k: int, chunk: int) -> None:
    """Precompute top-K for every user (Parquet and the serving store); resumable."""
    from shopsense.data.dataset import Dataset
    from shopsense.serving.batch import precompute
    from shopsense.serving.champion import served_version, version_path
    from shopsense.serving.store import open_store

    store = open_store(state)
    try:
        version = version_path(models, served_version(store, models))
        bundle = ModelBundle(version, Dataset.load(data))
        manifest = precompute(bundle, store, out, k, chunk, progress=sys.stderr.isatty())
    finally:
        store.close()
    click.echo(
        f"top-{manifest['k']} for {manifest['users']:,} users from model {bundle.version} "
        f"written to {out} and to the store {state}"
    )


COMMANDS = (serve, batch)
