"""``make demo``: the whole pipeline on the built-in synthetic store.

generate → ingest (with its cleaning report) → evaluate baselines, a
collaborative model, a content model and the hybrid re-ranker → train the
hybrid on everything → three users' recent history and top-5 picks →
search index, ranker and searches → batch lists for every user → the HTTP
service with its storefront (``--no-serve``, or ``make demo DEMO=cli``, stops
before it, for machines without a browser).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from shopsense.cli import main as cli_main


def _run(*args: str) -> None:
    print(f"\n$ shopsense {' '.join(args)}", flush=True)
    try:
        cli_main(list(args))
    except SystemExit as exc:
        if exc.code:
            raise


def run_demo(out: Path, users: int = 5000, items: int = 2000, serve: bool = True) -> None:
    started = time.perf_counter()
    raw, data, model = out / "raw", out / "data", out / "model-rerank"
    _run("generate", "--out", str(raw), "--users", str(users), "--items", str(items))
    _run("ingest", "--format", "parquet", "--out", str(data), str(raw))
    models = "pop,itemknn,als,content,rerank"
    _run(
        "evaluate",
        "--data",
        str(data),
        "--models",
        models,
        "--split",
        "loo",
        "--k",
        "5,10,20",
        "--json",
        str(out / "evaluation.json"),
        "--report",
        str(out / "evaluation.html"),
    )
    _run("train", "--data", str(data), "--model", "rerank", "--out", str(model))
    from shopsense.data.dataset import Dataset

    dataset = Dataset.load(data)
    active = dataset.interactions["user"].value_counts()
    rng = np.random.default_rng(7)
    picks = rng.choice(active[active >= 10].index.to_numpy(), size=3, replace=False)
    for user in picks:
        _run(
            "recommend",
            "--model",
            str(model),
            "--user",
            str(dataset.users["user_id"].iloc[user]),
            "-k",
            "5",
            "--history",
            "6",
        )
    index = out / "index"
    shutil.rmtree(index, ignore_errors=True)
    cache = out / "embedding-cache"  # kept: a second demo embeds nothing
    _run("index", "--data", str(data), "--out", str(index), "--embedding-cache", str(cache))
    _run("train-ranker", "--index", str(index), "--from-events", str(data))
    user = str(dataset.users["user_id"].iloc[picks[0]])
    _run("search", "--index", str(index), "wireless headphnes", "--per-page", "5")
    _run("search", "--index", str(index), "手机", "--price-max", "300", "--per-page", "3")
    _run("search", "--index", str(index), "organic cotton", "--user", user, "--per-page", "5")
    _run("suggest", "--index", str(index), "head", "-k", "5")
    state = str(out / "state.db")
    _run("batch", "--data", str(data), "--models", str(model), "--out", str(out / "batch"),
         "--state", state)  # fmt: skip
    print(f"\ndemo finished in {time.perf_counter() - started:.1f}s; outputs in {out}/")
    if serve:
        print("starting the service; open the storefront below, Ctrl-C stops it")
        _run("serve", "--data", str(data), "--models", str(model), "--index", str(index),
             "--state", state)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-output"))
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument(
        "--no-serve", action="store_true", help="Stop before starting the HTTP service."
    )
    args = parser.parse_args()
    run_demo(args.out, args.users, args.items, serve=not args.no_serve)


if __name__ == "__main__":
    main()
