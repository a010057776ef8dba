"""``shopsense tune``: Optuna search on validation, output usable by ``train``."""

import json

import pytest

from shopsense.errors import ShopsenseError
from shopsense.models.registry import model_class, model_names
from shopsense.tuning import tune
from tests.test_cli import run


def test_tune_finds_parameters_train_accepts(capsys, store, store_dir, tmp_path):
    best = tune(store, "itemknn", trials=3, seed=1)
    assert set(best["params"]) == {"k", "shrink"}
    assert 0 < best["valid_NDCG@10"] <= 1
    out = tmp_path / "best.json"
    code, text, _ = run(
        capsys,
        "tune",
        "--data",
        str(store_dir),
        "--model",
        "ease",
        "--trials",
        "2",
        "--out",
        str(out),
    )
    assert code == 0 and "best validation NDCG@10" in text
    assert "l2" in json.loads(out.read_text())["params"]
    code, text, _ = run(
        capsys,
        "train",
        "--data",
        str(store_dir),
        "--model",
        "ease",
        "--out",
        str(tmp_path / "m"),
        "--params",
        str(out),
    )
    assert code == 0 and "EASE(l2=" in text


def test_models_without_parameters_are_refused(store):
    with pytest.raises(ShopsenseError, match="no parameters"):
        tune(store, "pop", trials=2)


@pytest.mark.parametrize("name", [n for n in model_names() if n != "pop"])
def test_every_search_space_builds_the_model(name):
    import optuna

    study = optuna.create_study()
    params = model_class(name).search_space(study.ask())
    assert params and model_class(name)(**params).get_params().keys() >= params.keys()
