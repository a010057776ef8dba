"""The one small interface every recommender implements.

Like scikit-learn, parameters go to ``__init__`` and learnt state gets a
trailing underscore; like implicit, ``recommend`` is batched and can take the
users' latest interactions. Models save to a folder of JSON (parameters)
and safetensors (arrays), so loading a model never runs code.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from safetensors.numpy import load_file, save_file

from shopsense.data.dataset import Dataset
from shopsense.data.sequences import Sequences
from shopsense.errors import NotFittedError, ShopsenseError
from shopsense.models.training import TrainingSettings
from shopsense.ranking import top_k

PARAMS_FILE = "model.json"
ARRAYS_FILE = "arrays.safetensors"
FORMAT_VERSION = 1


class Recommender(ABC):
    """Base class: subclasses implement ``_fit``, ``_score`` and the state hooks."""

    name: ClassVar[str]

    training_defaults: ClassVar[TrainingSettings | None] = None
    """The shared training settings, with this model's defaults, for models that
    train by epochs (the neural ones: their ``fit`` takes ``validation`` to stop
    early on); None for models fitted in one go. What the command line asks
    before offering ``--epochs``, ``--device`` or ``--refit``."""

    # ------------------------------------------------------------------ params
    def get_params(self) -> dict[str, Any]:
        """The ``__init__`` arguments, as scikit-learn's ``get_params``."""
        sig = inspect.signature(type(self).__init__)
        return {
            name: getattr(self, name)
            for name, p in sig.parameters.items()
            if name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD
        }

    def set_params(self, **params: Any) -> Self:
        """Change parameters, as scikit-learn's ``set_params``: the model is
        made anew from its parameters with these changed (the same checks as
        ``__init__``), keeping what it has learnt until the next ``fit``."""
        unknown = sorted(set(params) - set(self.get_params()))
        if unknown:
            raise ShopsenseError(f"{type(self).__name__} has no parameter {', '.join(unknown)}")
        changed = type(self)(**{**self.get_params(), **params})
        vars(self).update(vars(changed))
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    @staticmethod
    def search_space(trial: Any) -> dict[str, Any]:
        """Parameters for an Optuna ``trial`` to try (``shopsense tune``); none by default."""
        return {}

    # ------------------------------------------------------------------ fitting
    def fit(self, dataset: Dataset, progress: bool = False) -> Self:
        """Learn from ``dataset``'s interactions; returns ``self``."""
        if dataset.n_items == 0:
            raise ShopsenseError("cannot fit on a dataset with no items")
        self.n_users_ = dataset.n_users
        self.n_items_ = dataset.n_items
        self.user_items_ = dataset.user_item_matrix()
        self._fit(dataset, progress)
        return self

    @abstractmethod
    def _fit(self, dataset: Dataset, progress: bool) -> None: ...

    def _check_fitted(self) -> None:
        if not hasattr(self, "user_items_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load()")

    def _check_ids(self, ids: np.ndarray, n: int, what: str) -> np.ndarray:
        ids = np.atleast_1d(np.asarray(ids))
        if ids.dtype.kind not in "iu":
            raise ShopsenseError(f"{what} ids must be integers (dense ids), got {ids.dtype}")
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            raise ShopsenseError(f"{what} id out of range: the model knows {n} {what}s")
        return ids.astype(np.int64)

    # ------------------------------------------------------------------ scoring
    uses_sequences: ClassVar[bool] = False
    """True for models that read each user's events in time order (``sequences``)."""

    def score(
        self,
        users: np.ndarray,
        user_items: sp.csr_matrix | None = None,
        sequences: Sequences | None = None,
    ) -> np.ndarray:
        """Scores of every item for each user: a ``(len(users), n_items)`` float32 array.

        ``user_items`` (one row per user) replaces the histories seen in ``fit``,
        for models that can use fresh interactions; sequence models read
        ``sequences`` (the same, in time order) instead.
        """
        self._check_fitted()
        users = self._check_ids(users, self.n_users_, "user")
        history = None if user_items is None else sp.csr_matrix(user_items, dtype=np.float32)
        if history is not None and history.shape != (len(users), self.n_items_):
            raise ShopsenseError(
                f"user_items must have shape ({len(users)}, {self.n_items_}), got {history.shape}"
            )
        if self.uses_sequences:
            return np.asarray(self._score_sequences(users, sequences), dtype=np.float32)
        return np.asarray(self._score(users, history), dtype=np.float32)

    def _score_sequences(self, users: np.ndarray, sequences: Sequences | None) -> np.ndarray:
        """Scores from ordered histories (models with ``uses_sequences``)."""
        raise NotImplementedError

    def _history(self, users: np.ndarray, history: sp.csr_matrix | None) -> sp.csr_matrix:
        """The fresh history when one was passed, else what ``fit`` saw."""
        return self.user_items_[users] if history is None else history

    @abstractmethod
    def _score(self, users: np.ndarray, history: sp.csr_matrix | None) -> np.ndarray:
        """Scores for ``users``; ``history`` is None unless fresh events were passed."""

    def recommend(
        self,
        users: np.ndarray | int,
        k: int = 10,
        exclude_seen: bool = True,
        user_items: sp.csr_matrix | None = None,
        sequences: Sequences | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item ids and scores for each user, best first (batched)."""
        self._check_fitted()
        users = self._check_ids(users, self.n_users_, "user")
        scores = self.score(users, user_items, sequences)
        if exclude_seen:
            if user_items is not None:
                history = sp.csr_matrix(user_items)
            elif sequences is not None:
                history = sp.csr_matrix(
                    (np.ones(len(sequences.items)), sequences.items, sequences.indptr),
                    shape=(len(users), self.n_items_),
                )
            else:
                history = self.user_items_[users]
            rows, cols = history.nonzero()
            scores[rows, cols] = -np.inf
        ids, values = top_k(scores, k)
        return ids, values

    def similar_items(self, items: np.ndarray | int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most similar to each of ``items`` (never the item itself)."""
        sims = self.similar_scores(items)
        sims[np.arange(len(sims)), np.atleast_1d(items)] = -np.inf
        return top_k(sims, k)

    def similar_scores(self, items: np.ndarray | int) -> np.ndarray:
        """Similarity of each of ``items`` to every item, a ``(len(items), n_items)`` array."""
        self._check_fitted()
        items = self._check_ids(items, self.n_items_, "item")
        return np.asarray(self._similarity(items), dtype=np.float32)

    def similarity_between(self, items: np.ndarray, others: np.ndarray) -> np.ndarray:
        """Similarity of each of ``items`` to each of ``others``: a ``(len(items),
        len(others))`` array, for explaining a few recommendations without
        scoring the whole catalogue where the model can avoid it."""
        self._check_fitted()
        items = self._check_ids(items, self.n_items_, "item")
        others = self._check_ids(others, self.n_items_, "item")
        return np.asarray(self._similarity_between(items, others), dtype=np.float32)

    def _similarity_between(self, items: np.ndarray, others: np.ndarray) -> np.ndarray:
        return self._similarity(items)[:, others]

    @abstractmethod
    def _similarity(self, items: np.ndarray) -> np.ndarray:
        """A ``(len(items), n_items)`` similarity array."""

    # ------------------------------------------------------------------ erasure
    def forget_users(self, users: np.ndarray) -> None:
        """Erase what the model holds of ``users`` alone: their rows of history
        and of any learnt per-user state, so a forgotten user scores as one
        with no past (what they added to shared item state, such as item
        similarities, stays until the next fit)."""
        self._check_fitted()
        users = self._check_ids(users, self.n_users_, "user")
        self.user_items_ = rows_emptied(self.user_items_, users)
        self._forget_users(users)

    def erase_users_from(self, path: str | Path, users: np.ndarray) -> None:
        """``forget_users`` and rewrite the model saved at ``path`` (this model,
        loaded from there) in place: only the arrays change, and their file is
        replaced whole, so a reader loads the old model or the new one."""
        self.forget_users(users)
        path = Path(path)
        with tempfile.TemporaryDirectory(dir=path.parent) as aside:
            self.save(aside)
            os.replace(Path(aside) / ARRAYS_FILE, path / ARRAYS_FILE)

    def _forget_users(self, users: np.ndarray) -> None:  # noqa: B027 (optional hook)
        """Erase ``users``' rows of the per-user state beyond ``user_items_``."""

    # ------------------------------------------------------------------ storage
    def _state(self) -> dict[str, np.ndarray]:
        """Learnt arrays beyond ``user_items_`` (override to add some)."""
        return {}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:  # noqa: B027 (optional hook)
        """Restore what ``_state`` returned."""

    def _json_state(self) -> dict[str, Any]:
        """Learnt state that is text, not arrays (a vocabulary); saved in ``model.json``."""
        return {}

    def _set_json_state(self, state: dict[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Restore what ``_json_state`` returned (called before ``_set_state``)."""

    def save(self, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
        """Write the model to folder ``path`` (``model.json`` + ``arrays.safetensors``)."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        m = self.user_items_.tocsr()
        arrays = {
            "user_items.indptr": m.indptr.astype(np.int64),
            "user_items.indices": m.indices.astype(np.int32),
            **self._state(),
        }
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path / ARRAYS_FILE))
        doc = {
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "params": self.get_params(),
            "n_users": self.n_users_,
            "n_items": self.n_items_,
            "state": self._json_state(),
            "meta": meta or {},
        }
        (path / PARAMS_FILE).write_text(json.dumps(doc, indent=2) + "\n")
        return path

    @classmethod
    def read_doc(cls, path: str | Path) -> dict[str, Any]:
        path = Path(path)
        if not (path / PARAMS_FILE).is_file() or not (path / ARRAYS_FILE).is_file():
            raise ShopsenseError(f"{path} is not a saved shopsense model (no {PARAMS_FILE})")
        return json.loads((path / PARAMS_FILE).read_text())

    @classmethod
    def _saved_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """A saved model's parameters in this version's names (a model whose
        parameters were renamed maps the old names here, so its saved versions
        still load)."""
        return params

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a model saved by :meth:`save`. Only JSON and raw arrays are read."""
        doc = cls.read_doc(path)
        if doc.get("model") != cls.name:
            raise ShopsenseError(f"{path} holds a {doc.get('model')!r} model, not {cls.name!r}")
        model = cls(**cls._saved_params(doc["params"]))
        arrays = load_file(str(Path(path) / ARRAYS_FILE))
        model.n_users_, model.n_items_ = int(doc["n_users"]), int(doc["n_items"])
        indptr = arrays.pop("user_items.indptr")
        indices = arrays.pop("user_items.indices")
        model.user_items_ = sp.csr_matrix(
            (np.ones(len(indices), np.float32), indices, indptr),
            shape=(model.n_users_, model.n_items_),
        )
        model._set_json_state(doc.get("state", {}))
        model._set_state(arrays)
        return model


def rows_emptied(matrix: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """``matrix`` with ``rows`` holding no entries (the others as they were)."""
    keep = np.ones(matrix.shape[0], matrix.dtype)
    keep[rows] = 0
    kept = sp.csr_matrix(sp.diags(keep) @ matrix, dtype=matrix.dtype)
    kept.eliminate_zeros()
    return kept
