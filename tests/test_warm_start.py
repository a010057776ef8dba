"""Warm starts: item embeddings from ALS or item-KNN instead of noise."""

import json

import numpy as np
import pytest

from shopsense.errors import ShopsenseError
from shopsense.models.als import ALS
from shopsense.models.bert4rec import BERT4Rec
from shopsense.models.gru4rec import GRU4Rec
from shopsense.models.itemknn import ItemKNN
from shopsense.models.registry import load_model
from shopsense.models.sasrec import SASRec

# Zero epochs: only the initialisation is under test.
UNTRAINED = {"hidden": 16, "layers": 1, "heads": 2, "max_len": 12, "epochs": 0}


def similarities(vectors: np.ndarray) -> np.ndarray:
    """Cosines of every pair of rows, upper triangle, flat."""
    unit = vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12)
    return (unit @ unit.T)[np.triu_indices(len(vectors), 1)]


def test_als_start_is_the_als_factors_at_the_networks_scale(store):
    random = SASRec(**UNTRAINED, init="random").fit(store).item_embeddings()
    warm = SASRec(**UNTRAINED, init="als").fit(store).item_embeddings()
    factors = ALS(factors=16, random_state=0).fit(store).item_factors_
    assert not np.allclose(random, warm)
    # The same vectors, scaled: every pair's cosine is the factors'.
    np.testing.assert_allclose(similarities(warm), similarities(factors), atol=1e-4)
    assert np.corrcoef(similarities(random), similarities(factors))[0, 1] < 0.3
    assert warm.std() == pytest.approx(random.std(), rel=0.2)


def test_itemknn_start_keeps_the_neighbour_models_similarities(store):
    warm = SASRec(**UNTRAINED, init="itemknn").fit(store).item_embeddings()
    knn = ItemKNN().fit(store).similarity_.toarray()
    knn = (knn + knn.T) / 2
    upper = np.triu_indices(len(knn), 1)
    approximated = (warm @ warm.T)[upper]
    assert np.corrcoef(approximated, knn[upper])[0, 1] > 0.5


@pytest.mark.parametrize("model", [GRU4Rec, BERT4Rec])
def test_every_sequence_model_takes_a_warm_start(store, model):
    params = {"hidden": 16, "max_len": 12, "epochs": 0}
    warm = model(**params, init="als").fit(store).item_embeddings()
    factors = ALS(factors=16, random_state=0).fit(store).item_factors_
    assert warm.shape == (store.n_items, 16)
    np.testing.assert_allclose(similarities(warm), similarities(factors), atol=1e-4)


def test_warm_started_model_trains_saves_and_reloads_without_pickle(store, tmp_path):
    model = SASRec(**{**UNTRAINED, "epochs": 2}, init="als").fit(store)
    model.save(tmp_path / "m")
    assert not list((tmp_path / "m").glob("*.pkl"))
    again = load_model(tmp_path / "m")
    assert again.init == "als"
    np.testing.assert_allclose(model.score(np.arange(4)), again.score(np.arange(4)), rtol=1e-5)


def test_unknown_init_is_a_clear_error(store):
    with pytest.raises(ShopsenseError, match="init must be one of random, als, itemknn, text"):
        SASRec(**UNTRAINED, init="svd").fit(store)


@pytest.mark.parametrize("text_init, init", [(False, "random"), (True, "text")])
def test_a_version_saved_with_text_init_still_loads(store, tmp_path, text_init, init):
    """Registries hold versions saved before ``init`` replaced ``text_init``."""
    model = SASRec(**{**UNTRAINED, "epochs": 1}).fit(store)
    model.save(tmp_path / "m")
    doc_path = tmp_path / "m" / "model.json"
    doc = json.loads(doc_path.read_text())
    del doc["params"]["init"]
    doc["params"]["text_init"] = text_init
    doc_path.write_text(json.dumps(doc))
    again = load_model(tmp_path / "m")
    assert again.init == init
    np.testing.assert_allclose(model.score(np.arange(4)), again.score(np.arange(4)), rtol=1e-5)
