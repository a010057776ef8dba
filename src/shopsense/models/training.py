"""The training settings every neural model shares, in one dataclass.

Each neural model's ``__init__`` names its own architecture arguments and
gathers the rest of its keywords into a :class:`TrainingSettings` over the
model's ``training_defaults``, so ``SASRec(hidden=64, learning_rate=2e-3,
max_seconds=600)`` reads as it always did. The choice: a model's parameters
stay one flat dictionary, which is what ``get_params``, the saved
``model.json``, ``--param sasrec.max_seconds=600`` and Optuna's search spaces
all speak, while the shared block (its fields, defaults and checks) is
written once here instead of in six constructors, and is the named interface
the trainer and the command line ask.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from shopsense.errors import ShopsenseError

DEVICES = ("cpu", "cuda")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class TrainingSettings:
    """How a neural model trains, as opposed to what it is.

    - ``epochs``: at most this many passes over the data.
    - ``max_seconds``: a budget in wall seconds for the whole fit (building,
      training, validation passes and any refit). With one, the learning rate
      warms up over the first ``warmup_share`` of it and then follows a cosine
      to zero at the end of the last epoch that fits
      (:mod:`shopsense.models.budget`); without one it is constant and
      training runs ``epochs``.
    - ``weight_decay``: AdamW's decoupled weight decay; ``"auto"`` lets the
      model choose it from the data (the report's ``weight_decay`` says what
      it chose; 0 for a model without a rule of its own).
    - ``patience``: with validation, stop after this many validation passes
      without a better NDCG@10; ``eval_every``: validate every this many epochs.
    - ``validation_share``: validate only while the passes stay within this
      share of the phase's time (the last epoch is always validated). On a
      small store a pass is cheap and every epoch is validated; on a large
      one a pass costs most of an epoch, and validating each would spend the
      budget on checks instead of training.
    - ``valid_users``: validate on a fixed, seeded sample of at most this many
      users (None: all of them), enough to compare epochs for a fraction of a
      full pass on a large store (:mod:`shopsense.models.validation`).
    - ``train_on_valid``: with validation, train from the start on the
      validation step of every user outside the validation sample, whose
      steps stay held out for the checks. A user's newest step is the most
      telling about them; this way the model learns from nearly all of them
      in one run, instead of spending half a budget on a second, fresh run
      (``refit``) to add them.
    - ``refit``: with validation, then train afresh on train + validation for
      the epoch count validation chose (inside ``max_seconds`` too); without
      validation the data given is already all there is, and nothing is refit.
    - ``ema_decay`` > 0: validate and keep an exponential moving average of
      the weights instead of the last step's.
    """

    epochs: int = 200
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float | str = 0.0
    ema_decay: float = 0.0
    patience: int = 10
    eval_every: int = 1
    validation_share: float = 0.1
    max_seconds: float | None = None
    warmup_share: float = 0.05
    valid_users: int | None = 5000
    train_on_valid: bool = False
    refit: bool = False
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        checks = {
            "epochs": (_is_int(self.epochs) and self.epochs >= 0, "an integer ≥ 0"),
            "batch_size": (_is_int(self.batch_size) and self.batch_size >= 1, "an integer ≥ 1"),
            "learning_rate": (
                _is_number(self.learning_rate) and self.learning_rate > 0,
                "a number > 0",
            ),
            "weight_decay": (
                self.weight_decay == "auto"
                or (_is_number(self.weight_decay) and self.weight_decay >= 0),
                "a number ≥ 0 or 'auto'",
            ),
            "ema_decay": (
                _is_number(self.ema_decay) and 0 <= self.ema_decay < 1,
                "a number in [0, 1)",
            ),
            "patience": (_is_int(self.patience) and self.patience >= 1, "an integer ≥ 1"),
            "eval_every": (_is_int(self.eval_every) and self.eval_every >= 1, "an integer ≥ 1"),
            "validation_share": (
                _is_number(self.validation_share) and 0 < self.validation_share <= 1,
                "a number in (0, 1]",
            ),
            "max_seconds": (
                self.max_seconds is None or (_is_number(self.max_seconds) and self.max_seconds > 0),
                "a number of seconds > 0, or null for no budget",
            ),
            "warmup_share": (
                _is_number(self.warmup_share) and 0 <= self.warmup_share < 1,
                "a number in [0, 1)",
            ),
            "valid_users": (
                self.valid_users is None or (_is_int(self.valid_users) and self.valid_users >= 1),
                "an integer ≥ 1, or null for every user",
            ),
            "train_on_valid": (isinstance(self.train_on_valid, bool), "true or false"),
            "refit": (isinstance(self.refit, bool), "true or false"),
            "seed": (_is_int(self.seed), "an integer"),
            "device": (self.device in DEVICES, " or ".join(DEVICES)),
        }
        for name, (ok, wanted) in checks.items():
            if not ok:
                raise ShopsenseError(f"{name} must be {wanted}, not {getattr(self, name)!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The settings' names, in order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> TrainingSettings:
        """These settings with ``changes`` (names from :meth:`names`), checked anew."""
        return dataclasses.replace(self, **changes)

    def as_params(self) -> dict[str, Any]:
        """The settings as flat keyword arguments (JSON-friendly)."""
        return dataclasses.asdict(self)
