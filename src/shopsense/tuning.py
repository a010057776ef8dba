"""``shopsense tune``: search a model's parameters with Optuna, maximizing
NDCG@10 on the validation part of a split (the test part is never seen)."""

from __future__ import annotations

import time
from typing import Any

from shopsense.data.dataset import Dataset
from shopsense.data.split import split_dataset
from shopsense.errors import ShopsenseError
from shopsense.evaluation.evaluate import evaluate
from shopsense.models.registry import create_model, model_class

METRIC = "NDCG@10"


def tune(
    dataset: Dataset,
    name: str,
    trials: int,
    split: str = "loo",
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Best parameters found in ``trials`` trials, with their validation score."""
    import optuna

    cls = model_class(name)
    probe = optuna.trial.FixedTrial({})
    try:
        cls.search_space(probe)
    except ValueError:
        pass  # the space has parameters: FixedTrial({}) cannot answer them
    else:
        raise ShopsenseError(f"model {name} has no parameters to tune")
    if trials < 1:
        raise ShopsenseError("--trials must be at least 1")
    parts = split_dataset(dataset, split, seed=seed)

    def objective(trial: optuna.Trial) -> float:
        model = create_model(name, **cls.search_space(trial)).fit(parts.train)
        return evaluate(model, parts, ks=(10,), on="valid")[METRIC]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    started = time.perf_counter()
    study.optimize(objective, n_trials=trials, show_progress_bar=progress)
    return {
        "model": name,
        "params": study.best_params,
        f"valid_{METRIC}": round(study.best_value, 5),
        "trials": trials,
        "split": split,
        "dataset": dataset.name,
        "seconds": round(time.perf_counter() - started, 1),
    }
