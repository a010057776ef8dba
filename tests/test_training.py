"""The neural models' shared training settings, training to a budget, and
validation on a sample of users."""

import importlib
import itertools
import json

import numpy as np
import pytest

from shopsense.data.split import split_dataset
from shopsense.errors import ShopsenseError
from shopsense.models import neural
from shopsense.models.bert4rec import BERT4Rec
from shopsense.models.budget import EpochPlan, format_training_report
from shopsense.models.gru4rec import GRU4Rec
from shopsense.models.ncf import NCF
from shopsense.models.registry import create_model, load_model, model_class, model_names
from shopsense.models.sasrec import SASRec
from shopsense.models.training import TrainingSettings
from shopsense.models.validation import validation_sample, validation_users

# The module, not the function the package exports under the same name.
harness = importlib.import_module("shopsense.evaluation.evaluate")
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
    assert SASRec().training == SASRec.training_defaults != TrainingSettings()
    assert SASRec.training_defaults.train_on_valid and SASRec.training_defaults.patience == 20
    assert NCF(epochs=3).training.batch_size == 2048
    assert (GRU4Rec().init, GRU4Rec().loss, BERT4Rec().init) == ("als", "sampled", "als")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"hidn": 16}, "SASRec has no parameter 'hidn'"),
        ({"epochs": -1}, "epochs must be an integer"),
        ({"epochs": 2.5}, "epochs must be an integer"),
        ({"learning_rate": 0}, "learning_rate must be a number > 0"),
        ({"ema_decay": 1.0}, r"ema_decay must be a number in \[0, 1\)"),
        ({"max_seconds": 0}, "max_seconds must be"),
        ({"valid_users": 0}, "valid_users must be"),
        ({"refit": "yes"}, "refit must be true or false"),
        ({"train_on_valid": 1}, "train_on_valid must be true or false"),
        ({"validation_share": 0}, r"validation_share must be a number in \(0, 1\]"),
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


# ---------------------------------------------------------------------- the plan
def test_without_a_budget_the_plan_is_the_epochs_at_a_constant_rate():
    plan = EpochPlan(epochs=5, deadline=None, warmup_seconds=10.0)
    plan.start(0.0)
    for elapsed in (100.0, 200.0, 300.0):
        plan.add_epoch(100.0, elapsed)
    assert plan.planned == 5 and plan.another_epoch()
    assert {plan.learning_rate_factor(t) for t in range(0, 1000, 7)} == {1.0}


def test_the_plan_fits_the_epochs_measured_into_the_time_left():
    plan = EpochPlan(epochs=100, deadline=100.0)
    plan.start(1.0)  # 1 s of setup
    plan.add_epoch(9.0, elapsed=10.0)
    assert plan.planned == 1 + 10  # 90 s left, 9 s an epoch
    plan.add_validation(1.0, elapsed=11.0)
    assert plan.planned == 1 + 8  # 89 s left, 10 s an epoch with its validation pass
    assert EpochPlan(epochs=4, deadline=100.0).planned == 4
    capped = EpochPlan(epochs=4, deadline=100.0)
    capped.start(0.0)
    capped.add_epoch(1.0, elapsed=1.0)
    assert capped.planned == 4


def test_the_plan_keeps_back_the_refit_it_will_need():
    plan = EpochPlan(epochs=100, deadline=100.0, refit_cost=1.0)
    plan.start(0.0)
    plan.add_epoch(10.0, elapsed=10.0)
    # 90 s left, 10 s kept for refitting epoch 1; each more epoch costs 10 + 10.
    assert plan.planned == 1 + 4
    for elapsed in (20.0, 30.0, 40.0, 50.0):
        plan.add_epoch(10.0, elapsed=elapsed)
    assert plan.done == 5 and not plan.another_epoch()
    assert plan.refit_epochs(5, elapsed=50.0) == 5
    assert plan.refit_epochs(5, elapsed=75.0) == 2
    assert plan.refit_epochs(5, elapsed=100.0) == 0


def test_the_rate_warms_up_then_falls_to_zero_when_the_last_epoch_ends():
    plan = EpochPlan(epochs=100, deadline=100.0, warmup_seconds=5.0)
    plan.start(10.0)
    warming = [plan.learning_rate_factor(10.0 + t) for t in (0.0, 1.0, 2.5, 4.9)]
    assert warming == sorted(warming) and warming[0] == 0.0 and warming[2] == 0.5
    assert plan.learning_rate_factor(15.0) == 1.0
    plan.add_epoch(9.0, elapsed=19.0)  # 9 s an epoch: 10 epochs end at 100 s
    assert plan.planned == 10 and plan.expected_end() == 100.0
    rates = [plan.learning_rate_factor(t / 10) for t in range(150, 1001)]
    assert all(a >= b for a, b in itertools.pairwise(rates))
    assert rates[0] > 0.99 and rates[-1] == 0.0
    # Half way down once half the time after the warm-up has passed.
    assert plan.learning_rate_factor(10.0 + 5.0 + 85.0 / 2) == pytest.approx(0.5)


def test_validation_passes_stay_within_their_share_of_the_time():
    plan = EpochPlan(epochs=100, deadline=None)
    plan.start(0.0)
    plan.add_epoch(1.0, elapsed=1.0)
    assert plan.may_validate(0.25)  # the first pass always may: nothing to judge it by
    plan.add_validation(2.0, elapsed=3.0)
    validated_after = []
    for epoch in range(2, 40):
        plan.add_epoch(1.0, elapsed=plan.last_seen + 1.0)
        if plan.may_validate(0.25):
            validated_after.append(epoch)
            plan.add_validation(2.0, elapsed=plan.last_seen + 2.0)
        assert plan.valid_seconds <= 0.25 * (plan.train_seconds + plan.valid_seconds) or epoch < 6
    # 2 s a pass at 1 s an epoch: the second pass once 12 s have been trained (4 s of
    # checks in 16), then one every 6 epochs keeps 2 s of each 8 on checks.
    assert validated_after[:3] == [12, 18, 24] and plan.may_validate(1.0)


# ---------------------------------------------------------------------- validation sample
def test_validation_sample_is_fixed_by_the_seed_and_keeps_the_rest(store):
    split = split_dataset(store, "loo")
    a, b = validation_sample(split, 50, seed=1), validation_sample(split, 50, seed=1)
    assert validation_users(a) == 50 and a.valid.equals(b.valid)
    assert set(a.valid["user"]) <= set(split.valid["user"])
    assert not a.valid.equals(validation_sample(split, 50, seed=2).valid)
    assert a.train is split.train
    assert (a.history("valid") != split.history("valid")).nnz == 0
    assert validation_sample(split, None, seed=1) is split
    assert validation_sample(split, 10**6, seed=1) is split


def test_training_validates_on_the_sample(store):
    split = split_dataset(store, "loo")
    model = SASRec(**TINY, epochs=2, valid_users=40).fit(split.train, validation=split)
    (train,) = model.training_report_["phases"]
    assert train["validation_users"] == 40 and train["validation_passes"] == 2
    sample = validation_sample(split, 40, seed=0)
    model_ndcg = harness.evaluate(model, sample, ks=(10,), on="valid")["NDCG@10"]
    assert model.history_[model.best_epoch_ - 1]["valid_NDCG@10"] == pytest.approx(model_ndcg)


def test_train_on_valid_learns_everyone_s_validation_step_but_the_sample_s(store):
    split = split_dataset(store, "loo")
    model = SASRec(**TINY, epochs=1, valid_users=40, train_on_valid=True)
    model.fit(split.train, validation=split)
    sample = set(validation_sample(split, 40, seed=0).valid["user"])
    trained_on = model.sequences_
    for user, item in split.valid[["user", "item"]].itertuples(index=False):
        last = trained_on.rows(np.array([user])).items[-1]
        assert (last == item) == (user not in sample)
        assert model.user_items_[user, item] == (user not in sample)
    (train,) = model.training_report_["phases"]
    assert train["validation_users"] == 40


# ---------------------------------------------------------------------- training to a budget
class WorkClock:
    """The trainer's clock, counting work instead of wall time: ``step_seconds``
    per training step, two seconds per validation pass."""

    def __init__(self) -> None:
        self.spent, self.step_seconds = 0.0, 1.0

    def restart(self) -> None:
        self.spent, self.step_seconds = 0.0, 1.0

    def __call__(self) -> float:
        return self.spent


@pytest.fixture()
def work_clock(monkeypatch):
    clock = WorkClock()
    step, validate = neural.TorchRecommender._train_step, harness.evaluate

    def counted_step(self, batch):
        clock.spent += clock.step_seconds
        return step(self, batch)

    def counted_validation(*args, **kwargs):
        clock.spent += 2.0
        return validate(*args, **kwargs)

    monkeypatch.setattr(neural, "clock", clock)
    monkeypatch.setattr(neural.TorchRecommender, "_train_step", counted_step)
    monkeypatch.setattr(harness, "evaluate", counted_validation)
    return clock


def test_a_budget_plans_the_epochs_decays_the_rate_and_fits_the_refit(store, work_clock):
    split = split_dataset(store, "loo")
    params = {**TINY, "epochs": 50, "max_seconds": 60, "refit": True}
    model = SASRec(**params, patience=50).fit(split.train, validation=split)
    report = model.training_report_
    train, refit = report["phases"]
    assert train["stopped"] == "budget" and 1 < train["epochs"] == train["planned_epochs"] < 50
    assert report["refit"] == {"epochs_wanted": model.best_epoch_, "outcome": "kept"}
    assert refit["epochs"] == model.best_epoch_
    assert report["seconds"] <= 60
    rates = [h["learning_rate"] for h in model.history_ if h["phase"] == "train"]
    assert rates[-1] < 0.05 * TrainingSettings().learning_rate < rates[1]
    work_clock.restart()  # the same times once more: the same plan, the same model
    again = SASRec(**params, patience=50).fit(split.train, validation=split)
    assert again.training_report_ == report
    np.testing.assert_array_equal(model.score(np.arange(5)), again.score(np.arange(5)))
    assert "of a 60 s budget" in format_training_report(report)


def test_a_refit_the_budget_cuts_short_is_not_kept(store, work_clock, monkeypatch):
    split = split_dataset(store, "loo")
    build = SASRec._build

    def slower_from_the_refit(self, dataset):
        if dataset is not split.train:  # the refit's data: the machine slows down
            work_clock.step_seconds = 3.0
        build(self, dataset)

    monkeypatch.setattr(SASRec, "_build", slower_from_the_refit)
    params = {**TINY, "epochs": 50, "max_seconds": 60, "refit": True, "patience": 50}
    model = SASRec(**params, train_on_valid=False).fit(split.train, validation=split)
    report = model.training_report_
    assert report["refit"]["outcome"].startswith("cut short by the budget")
    refit = report["phases"][1]
    assert refit["stopped"] == "budget" and refit["epochs"] < report["best_epoch"]
    assert report["seconds"] <= 60
    # The early-stopped model, trained on train alone, is what is kept.
    user, item = split.valid[["user", "item"]].iloc[0]
    assert model.user_items_[user, item] == 0
    assert model.sequences_.rows(np.array([user])).items[-1] != item
    assert "cut short" in format_training_report(report)


def test_without_a_budget_training_runs_its_epochs_at_one_rate(store):
    model = SASRec(**TINY, epochs=3).fit(store)
    assert [h["learning_rate"] for h in model.history_] == [model.training.learning_rate] * 3
    (train,) = model.training_report_["phases"]
    assert train["stopped"] == "epochs" and train["epochs"] == 3


def test_the_report_is_kept_with_the_saved_model(store, tmp_path):
    split = split_dataset(store, "loo")
    model = SASRec(**TINY, epochs=1).fit(split.train, validation=split)
    model.save(tmp_path / "m")
    assert load_model(tmp_path / "m").training_report_ == model.training_report_


# ---------------------------------------------------------------------- the command line
def test_evaluate_reports_where_the_training_time_went(capsys, store_dir, tmp_path):
    from tests.test_cli import run

    code, out, err = run(
        capsys,
        "evaluate",
        "--data",
        str(store_dir),
        "--models",
        "pop,sasrec",
        "--k",
        "10",
        "--param",
        "sasrec.hidden=16,sasrec.max_len=10,sasrec.epochs=2,sasrec.max_seconds=600",
        "--param",
        "sasrec.valid_users=50",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert code == 0, err
    results = json.loads((tmp_path / "r.json").read_text())["results"]
    assert "training" not in results["pop"]
    report = results["sasrec"]["training"]
    (train,) = report["phases"]
    assert report["budget_seconds"] == 600 and train["validation_passes"] == 2
    assert train["validation_users"] == 50
    assert "training (where the time went):" in out and "2 epochs of 2 planned" in out


def test_train_refits_inside_the_model_and_says_so(capsys, store_dir, tmp_path):
    from tests.test_cli import run

    base = ["train", "--data", str(store_dir), "--model", "sasrec", "--out", str(tmp_path / "m"),
            "--epochs", "2", "--param", "hidden=16"]  # fmt: skip
    code, out, err = run(capsys, *base, "--split", "loo", "--refit")
    assert code == 0, err
    assert "refit=True" in out and "refit: " in out
    saved = load_model(tmp_path / "m")
    assert [p["phase"] for p in saved.training_report_["phases"]] == ["train", "refit"]
    code, _, err = run(capsys, *base, "--param", "learning_rate=-1")
    assert code == 1 and "learning_rate must be a number > 0" in err
