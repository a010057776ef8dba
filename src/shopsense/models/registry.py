"""Models by name. Adding a model is one file plus one line in ``MODELS``.

Entries are import paths, so a model's heavy dependencies load only when
that model is used.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from shopsense.errors import ShopsenseError
from shopsense.models.base import Recommender

MODELS: dict[str, str] = {
    "pop": "shopsense.models.pop:Popularity",
    "itemknn": "shopsense.models.itemknn:ItemKNN",
    "trending": "shopsense.models.trending:Trending",
    "userknn": "shopsense.models.userknn:UserKNN",
    "ease": "shopsense.models.ease:EASE",
    "svd": "shopsense.models.svd:PureSVD",
    "nmf": "shopsense.models.nmf:NMF",
    "als": "shopsense.models.als:ALS",
    "bpr": "shopsense.models.bpr:BPR",
    "content": "shopsense.models.content:ContentBased",
    "blend": "shopsense.models.blend:Blend",
    "rerank": "shopsense.models.rerank:Rerank",
    "sasrec": "shopsense.models.sasrec:SASRec",
    "gru4rec": "shopsense.models.gru4rec:GRU4Rec",
    "bert4rec": "shopsense.models.bert4rec:BERT4Rec",
    "ncf": "shopsense.models.ncf:NCF",
    "twotower": "shopsense.models.twotower:TwoTower",
    "cfgan": "shopsense.models.cfgan:CFGAN",
}


def model_names() -> list[str]:
    return list(MODELS)


def model_class(name: str) -> type[Recommender]:
    if name not in MODELS:
        raise ShopsenseError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    module, _, attr = MODELS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def create_model(name: str, **params: Any) -> Recommender:
    """A new, unfitted model; unknown parameters are a clear error."""
    cls = model_class(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ShopsenseError(f"bad parameters for {name}: {exc}") from None


def load_model(path: str | Path) -> Recommender:
    """Load any saved model, whatever its class."""
    doc = Recommender.read_doc(path)
    return model_class(doc["model"]).load(path)
