"""The neural models' shared training settings."""

import json

import pytest

from shopsense.errors import ShopsenseError
from shopsense.models.ncf import NCF
from shopsense.models.registry import create_model, model_class, model_names
from shopsense.models.sasrec import SASRec
from shopsense.models.training import TrainingSettings

TINY = {"hidden": 16, "layers": 1, "heads": 2, "max_len": 12, "batch_size": 64}
NEURAL = [n for n in model_names() if model_class(n).training_defaults is not None]


# ---------------------------------------------------------------------- settings
def test_the_six_neural_models_and_only_they_train_by_the_shared_settings():
    assert sorted(NEURAL) == ["bert4rec", "cfgan", "gru4rec", "ncf", "sasrec", "twotower"]


@pytest.mark.parametrize("name", NEURAL)
def test_flat_keywords_gather_into_the_settings_and_come_back_flat(name):
    model = create_model(name, learning_rate=2e-3, max_seconds=600, seed=7)
    assert model.training == model_class(name).training_defaults.replace(
        learning_rate=2e-3, max_seconds=600, seed=7
    )
    params = model.get_params()
    assert "training" not in params
    assert {k: params[k] for k in TrainingSettings.names()} == model.training.as_params()
    again = create_model(name, **json.loads(json.dumps(params)))
    assert again.get_params() == params


def test_each_model_keeps_its_own_defaults():
    assert NCF().training.epochs == 30 and NCF().training.batch_size == 2048
    assert SASRec().training == TrainingSettings()
    assert NCF(epochs=3).training.batch_size == 2048


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"hidn": 16}, "SASRec has no parameter 'hidn'"),
        ({"epochs": -1}, "epochs must be an integer"),
        ({"epochs": 2.5}, "epochs must be an integer"),
        ({"learning_rate": 0}, "learning_rate must be a number > 0"),
        ({"ema_decay": 1.0}, r"ema_decay must be a number in \[0, 1\)"),
        ({"max_seconds": 0}, "max_seconds must be"),
        ({"device": "tpu"}, "device must be cpu or cuda"),
    ],
)
def test_bad_training_settings_are_clear_errors(params, message):
    with pytest.raises(ShopsenseError, match=message):
        create_model("sasrec", **params)


def test_set_params_changes_settings_and_architecture_with_the_same_checks(store):
    model = SASRec(**TINY, epochs=1).fit(store)
    assert model.set_params(learning_rate=5e-3, hidden=32) is model
    assert model.training.learning_rate == 5e-3 and model.hidden == 32
    assert model.training.epochs == 1 and hasattr(model, "net_")
    with pytest.raises(ShopsenseError, match="no parameter"):
        model.set_params(hidn=3)
    with pytest.raises(ShopsenseError, match="batch_size"):
        model.set_params(batch_size=0)
    assert model.training.batch_size == 64
