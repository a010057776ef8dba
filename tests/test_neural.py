"""The PyTorch models: shared contract (tiny and quick), trainer behaviour."""

import numpy as np
import pytest

from shopsense.data.sequences import Sequences
from shopsense.data.split import split_dataset
from shopsense.errors import ShopsenseError
from shopsense.models.bert4rec import BERT4Rec
from shopsense.models.cfgan import CFGAN
from shopsense.models.gru4rec import GRU4Rec
from shopsense.models.ncf import NCF
from shopsense.models.registry import load_model
from shopsense.models.sasrec import SASRec
from shopsense.models.twotower import TwoTower
from tests.recommender_contract import RecommenderContract
from tests.test_content import EMBEDDING_CACHE, new_variant_of

TINY = {"hidden": 16, "layers": 1, "heads": 2, "max_len": 12, "epochs": 2, "batch_size": 64}


class TestSASRec(RecommenderContract):
    def make_model(self):
        return SASRec(**TINY)


class TestGRU4Rec(RecommenderContract):
    def make_model(self):
        return GRU4Rec(hidden=16, max_len=12, epochs=2, batch_size=64)


class TestBERT4Rec(RecommenderContract):
    def make_model(self):
        return BERT4Rec(**TINY)


class TestNCF(RecommenderContract):
    def make_model(self):
        return NCF(factors=8, epochs=2)


class TestTwoTower(RecommenderContract):
    def make_model(self):
        return TwoTower(dim=16, epochs=2, cache_dir=EMBEDDING_CACHE)


class TestCFGAN(RecommenderContract):
    def make_model(self):
        return CFGAN(hidden=32, epochs=2)


class TestSASRecFullSoftmax(RecommenderContract):
    def make_model(self):
        return SASRec(**TINY, loss="ce", init="random")


def test_sequences_collapse_repeats_and_keep_the_strongest_behaviour():
    from tests.test_split import tiny

    ds = tiny(
        [
            (0, 3, "view", 1),
            (0, 3, "cart", 2),
            (0, 1, "view", 3),
            (0, 3, "view", 9),
            (1, 2, "purchase", 1),
        ],
        3,
        5,
    )
    s = Sequences.from_events(ds.events, 3)
    assert s.items.tolist() == [3, 1, 3, 2] and s.indptr.tolist() == [0, 3, 4, 4]
    items, types = s.padded(4)
    assert items.tolist() == [[0, 4, 2, 4], [0, 0, 0, 3], [0, 0, 0, 0]]
    assert types[0, 1] == 3  # cart (code 2) + 1
    items, _ = s.padded(2, ends=np.array([2, 1, 0]))
    assert items.tolist() == [[4, 2], [0, 3], [0, 0]]


def test_long_histories_train_on_windows_from_all_of_their_steps():
    """A row longer than the window shows a different stretch of itself from epoch
    to epoch, each a contiguous run of its steps, and over epochs every step."""
    model = SASRec(max_len=4, batch_size=8)
    model.sequences_ = Sequences(
        np.array([0, 20, 23]), np.arange(23, dtype=np.int32), np.zeros(23, np.int8)
    )
    rng = np.random.default_rng(0)
    seen: set[int] = set()
    for _ in range(40):
        ((items, _types),) = model._length_batches(rng, 2, 5)
        shown = (items > 0).sum(1)
        long_row, short_row = items[np.argmax(shown)], items[np.argmin(shown)]
        assert np.all(np.diff(long_row) == 1)
        assert short_row.tolist() == [0, 0, 21, 22, 23]
        seen.update(long_row.tolist())
    assert seen == set(range(1, 21))


def test_training_is_deterministic_and_early_stopping_keeps_the_best(store):
    split = split_dataset(store, "loo")
    every_epoch = {**TINY, "epochs": 4, "patience": 1, "validation_share": 1.0}
    a = SASRec(**every_epoch).fit(split.train, validation=split)
    b = SASRec(**every_epoch).fit(split.train, validation=split)
    np.testing.assert_array_equal(a.score(np.arange(5)), b.score(np.arange(5)))
    scores = [h["valid_NDCG@10"] for h in a.history_]
    assert a.best_epoch_ == int(np.argmax(scores)) + 1
    assert len(a.history_) <= 4 and all(h["loss"] > 0 for h in a.history_)


def test_refit_trains_on_validation_too_for_the_chosen_epochs(store):
    split = split_dataset(store, "loo")
    settings = {**TINY, "epochs": 3, "patience": 1, "validation_share": 1.0}
    chosen = SASRec(**settings).fit(split.train, validation=split)
    final = SASRec(**settings, refit=True).fit(split.train, validation=split)
    assert final.best_epoch_ == chosen.best_epoch_
    train, refit = final.training_report_["phases"]
    assert (train["phase"], refit["phase"]) == ("train", "refit")
    assert refit["epochs"] == chosen.best_epoch_ and refit["validation_passes"] == 0
    assert [h["phase"] for h in final.history_].count("refit") == chosen.best_epoch_
    # The validation step is now the newest training step of its user.
    user, item = split.valid[["user", "item"]].iloc[0]
    assert final.sequences_.rows(np.array([user])).items[-1] == item
    assert final.user_items_[user, item] == 1
    assert not np.allclose(chosen.score(np.arange(5)), final.score(np.arange(5)))
    # Without validation there is nothing to choose, so nothing to refit.
    plain = SASRec(**settings, refit=True).fit(split.train)
    assert [p["phase"] for p in plain.training_report_["phases"]] == ["train"]


def test_weight_averaging_serves_the_average_not_the_last_step(store):
    plain = SASRec(**{**TINY, "epochs": 3}, ema_decay=0.0).fit(store)
    averaged = SASRec(**{**TINY, "epochs": 3}, ema_decay=0.9).fit(store)
    assert not np.allclose(plain.score(np.arange(5)), averaged.score(np.arange(5)))
    for name, value in averaged.net_.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), averaged._average[name].numpy())


def test_order_and_behaviour_change_the_prediction(store):
    model = SASRec(**{**TINY, "epochs": 3}).fit(store)
    seq = Sequences(np.array([0, 3]), np.array([5, 6, 7], np.int32), np.zeros(3, np.int8))
    reordered = Sequences(np.array([0, 3]), np.array([7, 6, 5], np.int32), np.zeros(3, np.int8))
    carted = Sequences(
        np.array([0, 3]), np.array([5, 6, 7], np.int32), np.array([0, 0, 4], np.int8)
    )
    base = model.score(np.array([0]), sequences=seq)
    assert not np.allclose(base, model.score(np.array([0]), sequences=reordered))
    assert not np.allclose(base, model.score(np.array([0]), sequences=carted))


def test_auto_regularisation_follows_history_length_and_survives_saving(store, tmp_path):
    steps = len(store.interactions) / store.interactions["user"].nunique()
    short_window = SASRec(**{**TINY, "max_len": max(int(steps) - 1, 1), "epochs": 1}).fit(store)
    long_window = SASRec(**{**TINY, "max_len": int(steps) + 1, "epochs": 1}).fit(store)
    assert short_window.dropout_ == 0.2 and long_window.dropout_ == 0.5
    for model, decay in ((short_window, 0.0), (long_window, 0.3)):
        assert model.training_report_["weight_decay"] == decay
        assert model._optimizer.param_groups[0]["weight_decay"] == decay
    chosen = SASRec(**{**TINY, "dropout": 0.1, "weight_decay": 0.05, "epochs": 1}).fit(store)
    assert chosen.dropout_ == 0.1 and chosen.training_report_["weight_decay"] == 0.05
    saved = load_model(long_window.save(tmp_path / "m"))
    assert saved.dropout_ == 0.5 and saved.training_report_["weight_decay"] == 0.3
    assert saved.get_params()["weight_decay"] == "auto"
    with pytest.raises(ShopsenseError, match="dropout"):
        SASRec(**{**TINY, "dropout": "high"}).fit(store)
    with pytest.raises(ShopsenseError, match="weight_decay"):
        SASRec(**{**TINY, "weight_decay": "high"})


def test_live_session_items_are_excluded_from_recommendations(store):
    model = SASRec(**TINY).fit(store)
    seq = Sequences(np.array([0, 2]), np.array([1, 2], np.int32), np.zeros(2, np.int8))
    ids, _ = model.recommend(np.array([0]), k=10, sequences=seq)
    assert not {1, 2} & set(ids[0])


def test_saved_weights_reload_exactly(store, tmp_path):
    model = SASRec(**TINY).fit(store)
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    np.testing.assert_allclose(model.score(np.arange(4)), again.score(np.arange(4)), rtol=1e-5)


def test_bad_settings_are_clear_errors(store):
    with pytest.raises(ShopsenseError, match="loss"):
        SASRec(**TINY, loss="magic").fit(store)
    import torch

    if not torch.cuda.is_available():  # where CUDA exists, asking for it is no mistake
        with pytest.raises(ShopsenseError, match="cuda"):
            SASRec(**TINY, device="cuda").fit(store)


def test_two_tower_gives_new_items_vectors_from_their_features(store):
    model = TwoTower(dim=16, epochs=5, cache_dir=EMBEDDING_CACHE).fit(store)
    item = int(np.argmax(np.bincount(store.interactions["item"], minlength=store.n_items)))
    (new,) = model.add_items(new_variant_of(store, item, "fresh"))
    vectors = model.item_embeddings()
    assert vectors.shape == (store.n_items + 1, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    # Same category, brand, price and nearly the same title: its features put it near.
    similar, _ = model.similar_items(np.array([new]), k=20)
    assert item in similar[0]
    ids, _ = model.recommend(np.arange(3), k=5)
    assert ids.max() <= new


def test_cli_trains_a_neural_model_with_epochs_and_device(capsys, store_dir, tmp_path):
    from tests.test_cli import run

    code, out, _ = run(
        capsys,
        "train",
        "--data",
        str(store_dir),
        "--model",
        "sasrec",
        "--out",
        str(tmp_path / "m"),
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--split",
        "loo",
        "--param",
        "hidden=16",
        "--param",
        "max_len=10",
    )
    assert code == 0 and "SASRec(" in out and "epochs=2" in out
    code, out, _ = run(capsys, "recommend", "--model", str(tmp_path / "m"), "--user", "u000005")
    assert code == 0 and "top-10 recommendations (sasrec)" in out
    base = ["train", "--data", str(store_dir), "--model", "sasrec", "--out", str(tmp_path / "r"),
            "--epochs", "2", "--param", "hidden=16", "--refit"]  # fmt: skip
    code, out, _ = run(capsys, *base, "--split", "loo")
    assert code == 0 and "SASRec(" in out
    code, _, err = run(capsys, *base)
    assert code == 1 and "--refit needs" in err
    code, _, err = run(
        capsys,
        "train",
        "--data",
        str(store_dir),
        "--model",
        "pop",
        "--out",
        str(tmp_path / "p"),
        "--epochs",
        "2",
    )
    assert code == 1 and "neural models only" in err


def test_item_embeddings_can_start_from_title_embeddings(store):
    from shopsense.features.sentence import SentenceEmbedder

    # Zero epochs: only the initialisation is under test.
    model = SASRec(**{**TINY, "epochs": 0}, init="text", cache_dir=EMBEDDING_CACHE).fit(store)
    emb = model.item_embeddings()
    titles = SentenceEmbedder(cache_dir=EMBEDDING_CACHE).encode(store.items["title"].tolist())
    # Items whose titles are close start close: the embeddings keep the text's geometry.
    text_sim = titles @ titles.T
    emb_sim = (emb @ emb.T) / np.outer(np.linalg.norm(emb, axis=1), np.linalg.norm(emb, axis=1))
    upper = np.triu_indices(len(emb), 1)
    assert np.corrcoef(text_sim[upper], emb_sim[upper])[0, 1] > 0.5


def test_fast_dropout_keeps_the_expectation_and_is_off_in_eval():
    import torch

    from shopsense.models.neural import with_fast_dropout

    net = with_fast_dropout(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.25)))
    assert not any(isinstance(m, torch.nn.Dropout) for m in net.modules())
    x = torch.ones(100_000)
    kept = net[1].train()(x)
    np.testing.assert_allclose(kept.unique().numpy(), [0.0, 1 / 0.75], rtol=1e-6)
    assert kept.mean().item() == pytest.approx(1.0, abs=0.02)
    assert torch.equal(net[1].eval()(x), x)
    # Every 16-bit draw of a random word is uniform (a draw from the word's
    # top bits that skewed the share kept would show here), at any shape.
    layer = net[1].train()
    odd = torch.ones(333, 7, 43)
    torch.manual_seed(3)
    first = layer(odd)
    assert first.shape == odd.shape
    assert (first > 0).float().mean().item() == pytest.approx(0.75, abs=0.005)
    torch.manual_seed(3)
    assert torch.equal(layer(odd), first)
