"""The ``shopsense`` command line: one command per pipeline stage.

A user's mistake (bad path, unknown model, malformed option) prints one line
starting with ``Error:`` and exits with status 1; only bugs show a traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from shopsense import __version__
from shopsense.data.dataset import Dataset
from shopsense.data.formats import FORMATS, ReadOptions
from shopsense.data.split import SPLIT_METHODS, split_dataset
from shopsense.errors import ShopsenseError
from shopsense.search.commands import COMMANDS as SEARCH_COMMANDS
from shopsense.search.rules_commands import COMMANDS as RULES_COMMANDS
from shopsense.serving.commands import COMMANDS as SERVING_COMMANDS
from shopsense.serving.experiment_commands import COMMANDS as EXPERIMENT_COMMANDS
from shopsense.serving.retrain_commands import COMMANDS as RETRAIN_COMMANDS
from shopsense.simulation.commands import simulate

SPLIT_CHOICES = click.Choice(SPLIT_METHODS)


def _progress() -> bool:
    return sys.stderr.isatty()


def _parse_value(text: str) -> Any:
    """``10`` → 10, ``0.5`` → 0.5, ``true`` → True, anything else stays a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        for part in value.split(","):
            key, sep, val = part.partition("=")
            if not sep or not key.strip():
                raise ShopsenseError(f"{option} takes NAME=VALUE, got {part!r}")
            out[key.strip()] = val.strip()
    return out


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in text.split(",") if k.strip())
    except ValueError:
        raise ShopsenseError(f"--k takes comma-separated integers, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise ShopsenseError(f"--k takes positive integers, got {text!r}")
    return ks


def _model_params(params: tuple[str, ...], params_file: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if params_file is not None:
        try:
            loaded = json.loads(params_file.read_text())
        except json.JSONDecodeError as exc:
            raise ShopsenseError(f"{params_file} is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ShopsenseError(f"{params_file} must hold a JSON object of parameters")
        out.update(loaded.get("params", loaded))
    out.update({k: _parse_value(v) for k, v in _pairs(params, "--param").items()})
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shopsense")
def cli() -> None:
    """shopsense: search and recommendation engine for online stores."""


@cli.command()
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder to write.")
@click.option("--users", default=5000, show_default=True, type=click.IntRange(1))
@click.option("--items", default=2000, show_default=True, type=click.IntRange(1))
@click.option("--days", default=60, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--end", default="2026-11-20", show_default=True, help="Last day (YYYY-MM-DD).")
def generate(out: Path, users: int, items: int, days: int, seed: int, end: str) -> None:
    """Generate a synthetic store (raw Parquet files to ingest with --format parquet)."""
    from shopsense.data.synthetic import StoreConfig, write_store

    try:
        last_day = dt.date.fromisoformat(end)
    except ValueError:
        raise ShopsenseError(f"--end must be a date like 2026-11-20, got {end!r}") from None
    started = time.perf_counter()
    counts = write_store(
        StoreConfig(users=users, items=items, days=days, seed=seed, end=last_day), out
    )
    click.echo(
        f"wrote {counts['users']:,} users, {counts['items']:,} items, {counts['events']:,} events "
        f"to {out} in {time.perf_counter() - started:.1f}s\n"
        f"next: shopsense ingest --format parquet --out DATA_DIR {out}"
    )


@cli.command()
@click.option(
    "--format", "fmt", required=True, type=click.Choice(list(FORMATS)), help="Input format."
)
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Dataset folder to write."
)
@click.option(
    "--map",
    "mapping",
    multiple=True,
    metavar="FIELD=COLUMN",
    help="Generic formats: source column of a field (user_id, item_id, type, timestamp, ...).",
)
@click.option(
    "--type-map",
    multiple=True,
    metavar="TYPE=VALUE",
    help="Source value of an event type, e.g. purchase=buy.",
)
@click.option("--default-type", default=None, help="Event type when the source has none.")
@click.option(
    "--timestamp-unit",
    type=click.Choice(["s", "ms", "iso"]),
    default=None,
    help="Generic formats: how timestamps are written (default s).",
)
@click.option(
    "--k-core",
    type=click.IntRange(1),
    default=None,
    help="Keep only users and items with at least K interactions.",
)
@click.option(
    "--chunk-rows",
    type=click.IntRange(1000),
    default=1_000_000,
    show_default=True,
    help="Rows read at a time (bounds memory).",
)
@click.option(
    "--tombstones",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Users erased elsewhere stay erased: a dataset folder or its tombstones.json "
    "(--out's own are always honoured).",
)
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def ingest(
    fmt: str,
    out: Path,
    mapping: tuple[str, ...],
    type_map: tuple[str, ...],
    default_type: str | None,
    timestamp_unit: str | None,
    k_core: int | None,
    chunk_rows: int,
    tombstones: Path | None,
    paths: tuple[Path, ...],
) -> None:
    """Read PATH... (files or folders) in FORMAT, clean them, write a dataset to --out.

    Every rejected row goes to OUT/quarantine.jsonl with its reason; the counts
    are printed and written to OUT/report.json.
    """
    from shopsense.data.erasure import read_tombstones
    from shopsense.data.ingest import format_report
    from shopsense.data.ingest import ingest as run_ingest

    options = ReadOptions(
        chunk_rows=chunk_rows,
        mapping=_pairs(mapping, "--map"),
        type_map=_pairs(type_map, "--type-map"),
        default_type=default_type,
        timestamp_unit=timestamp_unit,  # type: ignore[arg-type]
    )
    erased = read_tombstones(tombstones) if tombstones is not None else set()
    report = run_ingest(
        fmt, list(paths), out, options, k_core=k_core, progress=_progress(), tombstones=erased
    )
    click.echo(format_report(report))
    click.echo(f"dataset written to {out} ({report['seconds']:.1f}s)")


def _fit(name: str, params: dict[str, Any], data, progress: bool, validation=None):
    """Fit by name; models that train by epochs (the neural ones) get the split's
    validation to stop early on."""
    from shopsense.models.registry import create_model

    model = create_model(name, **params)
    started = time.perf_counter()
    if validation is not None and model.training_defaults is not None:
        model.fit(data, progress=progress, validation=validation)
    else:
        model.fit(data, progress=progress)
    return model, time.perf_counter() - started


def _training_lines(name: str, report: dict[str, Any] | None) -> list[str]:
    """Where a neural model's training time went (its ``training_report_``),
    indented under its name; nothing for other models."""
    if not report:
        return []
    from shopsense.models.budget import format_training_report

    return [f"{name}:", *(f"  {line}" for line in format_training_report(report).splitlines())]


@cli.command()
@click.option(
    "--data", required=True, type=click.Path(path_type=Path), help="Ingested dataset folder."
)
@click.option("--model", "name", required=True, help="Model name (see `shopsense models`).")
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Folder to save the model in."
)
@click.option(
    "--split",
    type=click.Choice(["none", *SPLIT_METHODS]),
    default="none",
    show_default=True,
    help="Train on a split's training part only (none: all events).",
)
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="A model parameter.")
@click.option(
    "--params",
    "params_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON file of parameters (as `shopsense tune` writes).",
)
@click.option(
    "--epochs",
    type=click.IntRange(1),
    default=None,
    help="Neural models: epochs to train (at most, with --split: early stopping).",
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default=None,
    help="Neural models: where to train.",
)
@click.option(
    "--refit",
    is_flag=True,
    help="Neural models with --split: then train afresh on train + validation "
    "for the epoch count early stopping chose (inside max_seconds, if set).",
)
@click.option("--seed", default=0, show_default=True, type=int)
def train(
    data: Path,
    name: str,
    out: Path,
    split: str,
    params: tuple[str, ...],
    params_file: Path | None,
    epochs: int | None,
    device: str | None,
    refit: bool,
    seed: int,
) -> None:
    """Train a model on a dataset and save it to --out.

    With --split, neural models stop early on that split's validation part.
    """
    from shopsense.models.registry import model_class

    dataset = Dataset.load(data)
    parts = None if split == "none" else split_dataset(dataset, split, seed=seed)
    train_data = dataset if parts is None else parts.train
    model_params = _model_params(params, params_file)
    trains_by_epochs = model_class(name).training_defaults is not None
    if refit and (parts is None or not trains_by_epochs):
        raise ShopsenseError("--refit needs a neural model and --split")
    neural = {"epochs": epochs, "device": device, "refit": refit or None}
    for key, value in neural.items():
        if value is not None:
            if not trains_by_epochs:
                raise ShopsenseError(f"--{key} applies to neural models only, not {name}")
            model_params[key] = value
    model, seconds = _fit(name, model_params, train_data, _progress(), parts)
    if parts is not None and model_params.get("refit"):
        train_data = parts.refit_data()  # what the model was refit on
    model.save(out, meta={"data": str(data.resolve()), "split": split, "fit_seconds": seconds})
    click.echo(
        f"trained {model!r} on {len(train_data.interactions):,} interactions "
        f"in {seconds:.2f}s; saved to {out}"
    )
    for line in _training_lines(name, getattr(model, "training_report_", None)):
        click.echo(line)


@cli.command()
@click.option(
    "--data", required=True, type=click.Path(path_type=Path), help="Ingested dataset folder."
)
@click.option("--models", required=True, help="Comma-separated model names.")
@click.option("--split", type=SPLIT_CHOICES, default="loo", show_default=True)
@click.option("--k", "k_text", default="1,5,10,20", show_default=True, help="Cut-offs K.")
@click.option("--on", type=click.Choice(["test", "valid"]), default="test", show_default=True)
@click.option(
    "--mode",
    type=click.Choice(["full", "sampled"]),
    default="full",
    show_default=True,
    help="sampled: 100 random negatives, only to compare with older papers.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="MODEL.NAME=VALUE",
    help="A parameter of one model, e.g. itemknn.k=50.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the results as JSON.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a self-contained HTML report with plots.",
)
@click.option("--seed", default=0, show_default=True, type=int)
def evaluate(
    data: Path,
    models: str,
    split: str,
    k_text: str,
    on: str,
    mode: str,
    params: tuple[str, ...],
    json_path: Path | None,
    report_path: Path | None,
    seed: int,
) -> None:
    """Train each model on the split's training part and rank all items for every test user."""
    from shopsense.evaluation.evaluate import evaluate as run_evaluate
    from shopsense.evaluation.evaluate import mode_label
    from shopsense.evaluation.report import format_results
    from shopsense.models.registry import model_class

    names = [m.strip() for m in models.split(",") if m.strip()]
    if not names:
        raise ShopsenseError("--models needs at least one model name")
    for name in names:
        model_class(name)
    per_model: dict[str, dict[str, Any]] = {n: {} for n in names}
    for key, value in _pairs(params, "--param").items():
        model_name, dot, param = key.partition(".")
        if not dot or model_name not in per_model:
            raise ShopsenseError(f"--param takes MODEL.NAME=VALUE for a listed model, got {key!r}")
        per_model[model_name][param] = _parse_value(value)
    ks = _ks(k_text)
    dataset = Dataset.load(data)
    parts = split_dataset(dataset, split, seed=seed)
    results: dict[str, dict[str, Any]] = {}
    training_lines: list[str] = []
    for name in names:
        model, seconds = _fit(name, per_model[name], parts.train, _progress(), parts)
        r = run_evaluate(model, parts, ks=ks, on=on, mode=mode, seed=seed, progress=_progress())
        r["fit_seconds"] = round(seconds, 3)
        report = getattr(model, "training_report_", None)
        if report:
            r["training"] = report
        results[name] = r
        training_lines += _training_lines(name, report)
    header = {"dataset": dataset.name, "split": split, "on": on, "mode": mode_label(mode)}
    click.echo(format_results(header, results, ks))
    if training_lines:
        click.echo("\ntraining (where the time went):")
        click.echo("\n".join(f"  {line}" for line in training_lines))
    if json_path is not None:
        doc = {**header, "ks": list(ks), "results": results}
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(doc, indent=2) + "\n")
        click.echo(f"\nresults written to {json_path}")
    if report_path is not None:
        from shopsense.evaluation.html_report import write_html_report

        write_html_report(report_path, header, results, ks)
        click.echo(f"report written to {report_path}")


def _when(ts: int, dataset: Dataset) -> str:
    if dataset.time_is_order:
        return f"#{ts}"
    return dt.datetime.fromtimestamp(int(ts), dt.UTC).strftime("%Y-%m-%d %H:%M")


def _title(dataset: Dataset, item: int) -> str:
    title = dataset.items["title"].iloc[item] if "title" in dataset.items else None
    return str(title) if title is not None and title == title else ""


@cli.command()
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder written by `shopsense train`.",
)
@click.option("--user", "user_id", required=True, help="The user's id in the source data.")
@click.option("-k", "--k", "k", default=10, show_default=True, type=click.IntRange(1))
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="Dataset folder (default: the one the model was trained on).",
)
@click.option("--history", "n_history", default=10, show_default=True, type=click.IntRange(0))
def recommend(model_dir: Path, user_id: str, k: int, data: Path | None, n_history: int) -> None:
    """Print a user's recent history and their top-K recommendations, with titles."""
    from shopsense.models.registry import load_model

    model = load_model(model_dir)
    doc = model.read_doc(model_dir)
    data = data or Path(doc["meta"].get("data", ""))
    if not (data / "manifest.json").is_file():
        raise ShopsenseError(f"dataset {data} not found; pass --data DIR")
    dataset = Dataset.load(data)
    if (dataset.n_users, dataset.n_items) != (model.n_users_, model.n_items_):
        raise ShopsenseError(f"model {model_dir} was not trained on dataset {data}")
    user = dataset.user_index(user_id)
    events = dataset.events[dataset.events["user"] == user].sort_values("timestamp", kind="stable")
    click.echo(
        f"user {user_id}: recent history (last {min(n_history, len(events))} "
        f"of {len(events)} events)"
    )
    for row in events.tail(n_history).itertuples():
        what = (
            f"{dataset.item_ids(np.array([row.item]))[0]}  {_title(dataset, row.item)}"
            if row.item >= 0
            else f"query: {row.query}"
        )
        click.echo(f"  {_when(row.timestamp, dataset)}  {row.type:<8}  {what}")
    ids, scores = model.recommend(np.array([user]), k=k)
    click.echo(f"top-{k} recommendations ({model.name}):")
    for rank, (item, score) in enumerate(zip(ids[0], scores[0], strict=True), start=1):
        if not np.isfinite(score):
            break
        click.echo(
            f"  {rank:>2}. {dataset.item_ids(np.array([item]))[0]}  "
            f"score {score:.3f}  {_title(dataset, item)}"
        )


@cli.command()
@click.option(
    "--data", required=True, type=click.Path(path_type=Path), help="Ingested dataset folder."
)
@click.option("--model", "name", required=True, help="Model name (see `shopsense models`).")
@click.option("--trials", default=30, show_default=True, type=click.IntRange(1))
@click.option("--split", type=SPLIT_CHOICES, default="loo", show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON file for the best parameters (default: tuned-MODEL.json).",
)
@click.option("--seed", default=0, show_default=True, type=int)
def tune(data: Path, name: str, trials: int, split: str, out: Path | None, seed: int) -> None:
    """Search a model's parameters with Optuna for the best validation NDCG@10.

    The file written is what `shopsense train --params FILE` takes.
    """
    from shopsense.tuning import tune as run_tune

    best = run_tune(Dataset.load(data), name, trials, split, seed, progress=_progress())
    out = out or Path(f"tuned-{name}.json")
    out.write_text(json.dumps(best, indent=2) + "\n")
    click.echo(
        f"best validation NDCG@10 {best['valid_NDCG@10']:.4f} after {trials} trials with "
        f"{json.dumps(best['params'])}\nwritten to {out}; use: shopsense train --params {out}"
    )


@cli.command(name="models")
def list_models() -> None:
    """List the registered models."""
    from shopsense.models.registry import model_class, model_names

    for name in model_names():
        doc = (model_class(name).__doc__ or "").strip().splitlines()[0]
        click.echo(f"{name:<10} {doc}")


for _command in (
    *SEARCH_COMMANDS,
    *RULES_COMMANDS,
    *SERVING_COMMANDS,
    *EXPERIMENT_COMMANDS,
    *RETRAIN_COMMANDS,
    simulate,
):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one ``Error:`` line and exit status 1."""
    try:
        cli.main(args=argv, prog_name="shopsense", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ShopsenseError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
