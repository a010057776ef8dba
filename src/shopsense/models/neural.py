"""What the PyTorch models share: one trainer and the sequence-model plumbing.

The trainer takes its settings from the model's ``training``
(:class:`~shopsense.models.training.TrainingSettings`). It uses AdamW,
evaluates validation NDCG@10 (full ranking, by the same harness as every
model, on a fixed sample of users) after each epoch while the passes stay
within ``validation_share`` of the time, stops after ``patience``
validations without improvement, and keeps the best weights. With
``train_on_valid`` it trains on the validation step of every user outside
that sample.
With ``max_seconds`` the epochs are planned to fit the budget and the
learning rate follows a warm-up and a cosine to its end
(:mod:`shopsense.models.budget`); with ``refit``, the epoch count chosen is
then trained afresh on train + validation, inside the same budget. Where the
time went is ``training_report_``. It is deterministic for a seed on CPU
(with a budget, or a ``validation_share`` below 1, for the same epochs planned
and validated). Weights are saved in
safetensors with the model's other arrays.
"""

from __future__ import annotations

import copy
import time
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

from shopsense.compute import usable_cores
from shopsense.data.dataset import Dataset
from shopsense.data.schema import EVENT_TYPES
from shopsense.data.sequences import Sequences
from shopsense.data.split import Split
from shopsense.errors import ShopsenseError
from shopsense.models.base import Recommender
from shopsense.models.budget import EpochPlan, PhaseReport
from shopsense.models.factorization import cosine
from shopsense.models.training import TrainingSettings
from shopsense.models.validation import validation_sample, validation_users
from shopsense.models.warm_start import check_init, item_vectors

N_TYPES = len(EVENT_TYPES)
INFER_CHUNK = 512

clock = time.perf_counter
"""The trainer's wall clock (seconds): what budgets are measured by; tests set a fake."""


def adamw(parameters: Any, learning_rate: float, weight_decay: float):
    """AdamW with PyTorch's fused kernel
    (one pass over each tensor for the whole update, on CPU as on CUDA) instead
    of the per-tensor loop of a dozen elementwise operations."""
    import torch

    return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay, fused=True)


def torch_device(name: str):
    """The torch device of a ``device`` setting (already one of cpu, cuda)."""
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise ShopsenseError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(name)


class TorchRecommender(Recommender):
    """Base of the neural models. Subclasses build ``self.net_`` in ``_build``,
    give a batch loss in ``_batch_loss`` over ``_batches``, and score in ``_infer``.

    Their ``__init__`` names the architecture's arguments and ends with
    ``**training``: keywords of :class:`TrainingSettings`, over the class's
    ``training_defaults``."""

    net_: Any
    training: TrainingSettings
    training_defaults: ClassVar[TrainingSettings] = TrainingSettings()

    def _keep_params(self, params: dict[str, Any]) -> None:
        """Store ``__init__``'s named arguments as attributes (``locals()`` of it)
        and gather its ``**training`` keywords into ``self.training``."""
        own = {k: v for k, v in params.items() if k not in ("self", "__class__", "training")}
        training = params.get("training", {})
        unknown = sorted(set(training) - set(TrainingSettings.names()))
        if unknown:
            raise ShopsenseError(
                f"{type(self).__name__} has no parameter {', '.join(map(repr, unknown))}; "
                f"its own are {', '.join(own)}, its training settings "
                f"{', '.join(TrainingSettings.names())}"
            )
        for name, value in own.items():
            setattr(self, name, value)
        self.training = self.training_defaults.replace(**training)

    def get_params(self) -> dict[str, Any]:
        """The architecture's arguments, then the training settings, flat."""
        return {**super().get_params(), **self.training.as_params()}

    @staticmethod
    def search_space(trial: Any) -> dict[str, Any]:
        """What every neural model here has: its learning rate and dropout."""
        return {
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        }

    # ------------------------------------------------------------------ hooks
    def _build(self, dataset: Dataset) -> None:
        raise NotImplementedError

    def _batches(self, rng: np.random.Generator):
        raise NotImplementedError

    def _batch_loss(self, batch):
        raise NotImplementedError

    def _make_optimizers(self) -> list[Any]:
        """The optimizers of a phase of training; the trainer sets their learning rate."""
        self._optimizer = adamw(
            self.net_.parameters(), self.training.learning_rate, self.weight_decay_
        )
        return [self._optimizer]

    def _weight_decay_for(self, dataset: Dataset) -> float:
        """AdamW's weight decay on ``dataset``: the setting, or for ``"auto"``
        the model's own choice for the data (none here: 0)."""
        decay = self.training.weight_decay
        return 0.0 if decay == "auto" else float(decay)

    def _train_step(self, batch) -> float:
        """One optimization step on a batch; returns its loss."""
        loss = self._batch_loss(batch)
        self._optimizer.zero_grad()
        loss.backward()
        self._optimizer.step()
        self._update_average()
        return float(loss.detach())

    # ------------------------------------------------------------------ averaging
    def _update_average(self) -> None:
        """With ``ema_decay``, keep an exponential moving average of the weights:
        validation, the best checkpoint and the final model use the average,
        which generalizes better than the last step."""
        import torch

        decay = self.training.ema_decay
        if not decay:
            return
        with torch.no_grad():
            if self._average is None:
                live = self.net_.state_dict()
                self._average = {k: v.detach().clone() for k, v in live.items()}
                # The live tensors share the weights' storage (updated in place by
                # the optimizer and by load_state_dict), so the pairs are found once
                # and each step updates them all in two fused calls.
                floating = [k for k, v in live.items() if v.dtype.is_floating_point]
                self._averaged_pairs = (
                    [self._average[k] for k in floating],
                    [live[k] for k in floating],
                )
                return
            averaged, live = self._averaged_pairs
            torch._foreach_mul_(averaged, decay)
            torch._foreach_add_(averaged, live, alpha=1.0 - decay)

    def _use_average(self) -> dict | None:
        """Load the averaged weights; returns the live ones to restore (None: no average)."""
        if self._average is None:
            return None
        live = copy.deepcopy(self.net_.state_dict())
        self.net_.load_state_dict(self._average)
        return live

    # ------------------------------------------------------------------ training
    def fit(self, dataset: Dataset, progress: bool = False, validation: Split | None = None):
        """Train; with ``validation`` (a split of the same dataset), stop early on
        its NDCG@10, keep the best epoch's weights, and with ``refit`` train
        afresh on its train + validation parts for that many epochs. A budget
        counts from here: all of fitting is inside it."""
        self._validation, self._started = validation, clock()
        try:
            return super().fit(dataset, progress)
        finally:
            self._validation = None

    def _fit(self, dataset: Dataset, progress: bool) -> None:
        import torch

        settings = self.training
        started = self._started
        torch.set_num_threads(usable_cores())
        self._device = torch_device(settings.device)
        split = self._validation
        validation = (
            None if split is None else validation_sample(split, settings.valid_users, settings.seed)
        )
        if validation is not None and settings.train_on_valid:
            dataset = split.refit_data(keep_out=validation.valid["user"].unique())
            self.user_items_ = dataset.user_item_matrix()
        refit_data = split.refit_data() if split is not None and settings.refit else None
        refit_cost = (
            0.0
            if refit_data is None
            else len(refit_data.interactions) / max(len(dataset.interactions), 1)
        )
        plan = EpochPlan(settings.epochs, settings.max_seconds, self._warmup_seconds(), refit_cost)
        self.history_: list[dict[str, Any]] = []
        self.best_epoch_: int | None = None
        stopped = self._train_phase("train", dataset, validation, plan, started, progress)
        users = None if validation is None else validation_users(validation)
        phases = [PhaseReport.of(plan, "train", stopped, users, clock() - started)]
        refit = None
        if refit_data is not None and self.best_epoch_:
            outcome, refit_phase = self._refit(refit_data, plan, started, progress)
            refit = {"epochs_wanted": self.best_epoch_, "outcome": outcome}
            phases += refit_phase
        self.training_report_ = {
            "budget_seconds": settings.max_seconds,
            "seconds": round(clock() - started, 2),
            "best_epoch": self.best_epoch_,
            "weight_decay": self.weight_decay_,
            "refit": refit,
            "phases": [p.as_dict() for p in phases],
        }

    def _warmup_seconds(self) -> float:
        settings = self.training
        return (settings.max_seconds or 0.0) * settings.warmup_share

    def _refit(
        self, data: Dataset, plan: EpochPlan, started: float, progress: bool
    ) -> tuple[str, list[PhaseReport]]:
        """Train afresh on ``data`` (train + validation) for the epoch count
        validation chose, in the time ``plan`` kept back for it. A refit of
        fewer epochs is not what validation chose, so where the budget cannot
        hold them all it is not started, and where a slower machine cuts it
        short the early-stopped model is kept. Returns the outcome and the
        refit's phase (none when not started)."""
        wanted = self.best_epoch_ or 0
        if plan.refit_epochs(wanted, clock() - started) < wanted:
            return "skipped: no time left for its epochs", []
        early_stopped = dict(vars(self))  # what the refit replaces, object by object
        phase_started = clock()
        self.user_items_ = data.user_item_matrix()
        refit_plan = EpochPlan(wanted, self.training.max_seconds, self._warmup_seconds())
        stopped = self._train_phase("refit", data, None, refit_plan, started, progress)
        phase = PhaseReport.of(refit_plan, "refit", stopped, None, clock() - phase_started)
        if stopped != "epochs":
            vars(self).update(early_stopped)
            return "cut short by the budget: the early-stopped model is kept", [phase]
        return "kept", [phase]

    def _train_phase(
        self,
        phase: str,
        dataset: Dataset,
        validation: Split | None,
        plan: EpochPlan,
        started: float,
        progress: bool,
    ) -> str:
        """Train afresh on ``dataset`` for the epochs ``plan`` gives, at its learning
        rates; with ``validation``, keep the best epoch's weights. Returns what
        stopped it: ``epochs`` (all asked for), ``budget`` or ``patience``."""
        import torch

        from shopsense.evaluation.evaluate import evaluate

        settings = self.training
        torch.manual_seed(settings.seed)
        rng = np.random.default_rng(settings.seed)
        self._build(dataset)
        self.weight_decay_ = self._weight_decay_for(dataset)
        self.net_.to(self._device)
        optimizers = self._make_optimizers()
        self._average: dict | None = None
        best, best_state, stale = -1.0, None, 0
        bar = tqdm(
            total=plan.planned, desc=f"{self.name} {phase}", unit=" epoch", disable=not progress
        )
        stopped, rate = "epochs", settings.learning_rate
        epoch_started = clock()  # each epoch starts where the last one ended: wall to wall
        plan.start(epoch_started - started)
        while plan.another_epoch():
            self.net_.train()
            total, count = 0.0, 0
            for batch in self._batches(rng):
                rate = settings.learning_rate * plan.learning_rate_factor(clock() - started)
                for optimizer in optimizers:
                    for group in optimizer.param_groups:
                        group["lr"] = rate
                total += self._train_step(batch)
                count += 1
            now = clock()
            plan.add_epoch(now - epoch_started, now - started)
            epoch_started = now
            record: dict[str, Any] = {
                "phase": phase,
                "epoch": plan.done,
                "loss": total / max(count, 1),
                "learning_rate": rate,
                "seconds": round(now - started, 2),
            }
            if validation is not None and (
                not plan.another_epoch()
                or (
                    plan.done % settings.eval_every == 0
                    and plan.may_validate(settings.validation_share)
                )
            ):
                self.net_.eval()
                live = self._use_average()
                ndcg = evaluate(self, validation, ks=(10,), on="valid")["NDCG@10"]
                record["valid_NDCG@10"] = ndcg
                if ndcg > best:
                    best, stale = ndcg, 0
                    best_state = copy.deepcopy(self.net_.state_dict())
                    self.best_epoch_ = plan.done
                else:
                    stale += 1
                if live is not None:
                    self.net_.load_state_dict(live)
                epoch_started = clock()
                plan.add_validation(epoch_started - now, epoch_started - started)
            self.history_.append(record)
            bar.total = plan.planned
            bar.update()
            bar.set_postfix(
                loss=f"{record['loss']:.4f}",
                valid=f"{record.get('valid_NDCG@10', float('nan')):.4f}",
            )
            if validation is not None and stale >= settings.patience:
                stopped = "patience"
                break
        else:
            stopped = "budget" if plan.planned < plan.epochs else "epochs"
        bar.close()
        if best_state is not None:
            self.net_.load_state_dict(best_state)
        elif self._average is not None:
            self.net_.load_state_dict(self._average)
        self.net_.eval()
        return stopped

    # ------------------------------------------------------------------ storage
    def _state(self) -> dict[str, np.ndarray]:
        return {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}

    def _json_state(self) -> dict[str, Any]:
        return {"training_report": getattr(self, "training_report_", None)}

    def _set_json_state(self, state: dict[str, Any]) -> None:
        self.training_report_ = state.get("training_report")

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        import torch

        self._device = torch_device(self.training.device)
        self._build_net()
        state = {
            k[len("net.") :]: torch.from_numpy(v.copy())
            for k, v in arrays.items()
            if k.startswith("net.")
        }
        self.net_.load_state_dict(state)
        self.net_.to(self._device).eval()
        self._restore_extra(arrays)

    def _build_net(self) -> None:
        raise NotImplementedError

    def _restore_extra(self, arrays: dict[str, np.ndarray]) -> None:
        """Arrays beyond the network's weights."""


class SequenceRecommender(TorchRecommender):
    """Neural models that read each user's steps in time order."""

    uses_sequences = True

    @classmethod
    def _saved_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Versions saved before ``init`` said ``text_init`` (True: ``init="text"``)."""
        if "text_init" not in params:
            return params
        renamed = {k: v for k, v in params.items() if k != "text_init"}
        renamed.setdefault("init", "text" if params["text_init"] else "random")
        return renamed

    def _build(self, dataset: Dataset) -> None:
        check_init(self.init)
        self.sequences_ = Sequences.from_events(dataset.interactions, dataset.n_users)
        self._build_net()
        self._warm_start(dataset)

    def _warm_start(self, dataset: Dataset) -> None:
        """Start the item embeddings from ``init``'s vectors
        (:mod:`shopsense.models.warm_start`); rows past the vectors' width, and
        padding and special tokens, keep the network's own initialisation."""
        import torch

        width = self.net_.item_emb.weight.shape[1]
        vectors = item_vectors(self.init, dataset, width, self.training.seed, self.cache_dir)
        if vectors is None:
            return
        with torch.no_grad():
            self.net_.item_emb.weight[1 : 1 + self.n_items_, : vectors.shape[1]] = torch.from_numpy(
                vectors
            )

    def _state(self) -> dict[str, np.ndarray]:
        s = self.sequences_
        return {
            **super()._state(),
            "seq.indptr": s.indptr.astype(np.int64),
            "seq.items": s.items.astype(np.int32),
            "seq.types": s.types.astype(np.int8),
        }

    def _forget_users(self, users: np.ndarray) -> None:
        self.sequences_ = self.sequences_.without(users)

    def _restore_extra(self, arrays: dict[str, np.ndarray]) -> None:
        self.sequences_ = Sequences(arrays["seq.indptr"], arrays["seq.items"], arrays["seq.types"])

    def _score(self, users: np.ndarray, history: sp.csr_matrix | None) -> np.ndarray:
        return self._score_sequences(users, None)

    def _score_sequences(self, users: np.ndarray, sequences: Sequences | None) -> np.ndarray:
        """Rows sorted by length and scored in chunks padded only to their longest row."""
        import torch

        sequences = self.sequences_.rows(users) if sequences is None else sequences
        lengths = np.minimum(np.diff(sequences.indptr), self.max_len)
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(users), self.n_items_), np.float32)
        with torch.no_grad():
            for start in range(0, len(users), INFER_CHUNK):
                rows = order[start : start + INFER_CHUNK]
                width = max(int(lengths[rows].max()), 1)
                items, types = sequences.rows(rows).padded(width)
                out[rows] = (
                    self._infer(
                        torch.from_numpy(items).to(self._device),
                        torch.from_numpy(types).to(self._device),
                    )
                    .cpu()
                    .numpy()
                )
        return out

    def _length_batches(self, rng: np.random.Generator, min_length: int, width: int):
        """Users in batches of similar sequence length, the batches in random order,
        each padded to its longest row (at most ``width``): short histories cost little.

        A history longer than ``width`` gives a window ending at a uniformly
        random step each epoch, not always its latest ``width`` steps: on
        ml-100k (about 106 steps a user against ``max_len`` 50) training on the
        latest window only never sees half of the data."""
        lengths = np.diff(self.sequences_.indptr)
        users = np.flatnonzero(lengths >= min_length)
        users = users[np.lexsort((rng.random(len(users)), lengths[users]))]
        size = self.training.batch_size
        batches = [users[i : i + size] for i in range(0, len(users), size)]
        for b in rng.permutation(len(batches)):
            rows = self.sequences_.rows(batches[b])
            row_lengths = np.diff(rows.indptr)
            shown = min(int(row_lengths.max()), width)
            spare = np.maximum(row_lengths - shown, 0)
            ends = row_lengths - (rng.random(len(spare)) * (spare + 1)).astype(np.int64)
            yield rows.padded(shown, ends)

    def _similarity(self, items: np.ndarray) -> np.ndarray:
        """Cosine of the learnt item embeddings."""
        return cosine(self.item_embeddings(), items)

    def _similarity_between(self, items: np.ndarray, others: np.ndarray) -> np.ndarray:
        return cosine(self.item_embeddings(), items, others)

    def item_embeddings(self) -> np.ndarray:
        """One vector per item (for nearest-neighbour retrieval)."""
        return self.net_.item_emb.weight[1:].detach().cpu().numpy()


class NextItemRecommender(SequenceRecommender):
    """Sequence models trained to predict the next step at every position, with
    full softmax cross-entropy (``loss="ce"``) or sampled softmax with the logQ
    correction (``loss="sampled"``, ``n_negatives`` popularity-sampled items).
    Subclasses build ``net_`` with an ``item_emb`` table and a forward pass
    ``net_(items, types) -> (batch, length, hidden)``."""

    def _build(self, dataset: Dataset) -> None:
        import torch

        if self.loss not in ("ce", "sampled"):
            raise ShopsenseError(f"loss must be 'ce' or 'sampled', not {self.loss!r}")
        super()._build(dataset)
        counts = np.bincount(self.sequences_.items, minlength=self.n_items_) + 1.0
        self._sampling = counts / counts.sum()
        self._log_sampling = torch.log(torch.from_numpy(self._sampling).float()).to(self._device)

    def _batches(self, rng: np.random.Generator):
        import torch

        for items, types in self._length_batches(rng, 2, self.max_len + 1):
            yield (
                torch.from_numpy(items).to(self._device),
                torch.from_numpy(types).to(self._device),
                rng,
            )

    def _batch_loss(self, batch):
        import torch
        import torch.nn.functional as F

        items, types, rng = batch
        inputs, targets = items[:, :-1], items[:, 1:]
        hidden = self.net_(inputs, types[:, :-1])
        valid = (targets > 0) & (inputs > 0)
        h = hidden[valid]
        target = targets[valid] - 1
        weights = self.net_.item_emb.weight[1:]
        if self.loss == "ce":
            return F.cross_entropy(h @ weights.T, target)
        # Sampled softmax: the positive against popularity-sampled negatives, each
        # logit corrected by -log q so the estimate is unbiased for the full softmax.
        negatives = torch.from_numpy(
            rng.choice(self.n_items_, size=self.n_negatives, p=self._sampling)
        ).to(h.device)
        log_q = self._log_sampling
        pos = (h * weights[target]).sum(-1, keepdim=True) - log_q[target].unsqueeze(1)
        neg = h @ weights[negatives].T - log_q[negatives].unsqueeze(0)
        neg = neg.masked_fill(negatives.unsqueeze(0) == target.unsqueeze(1), float("-inf"))
        logits = torch.cat([pos, neg], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(target), dtype=torch.long, device=h.device))

    def _infer(self, items, types):
        hidden = self.net_(items, types)[:, -1]
        return hidden @ self.net_.item_emb.weight[1:].T


def with_fast_dropout(net: Any) -> Any:
    """``net`` with each of its ``nn.Dropout`` modules replaced by one that draws
    its mask as 16-bit uniform integers, four from each 64-bit random word,
    compared with ``p``'s threshold: on CPU, PyTorch's own dropout draws a
    Bernoulli per element and a float per element costs nearly as much, and
    dropout is a large share of a step once the output layer is sampled.
    ``p`` counts to 1/65,536 and the kept values are rescaled by the exact
    share kept, so the expectation is unchanged; deterministic for a seed.
    Dropout inside ``nn.MultiheadAttention`` and between ``nn.GRU`` layers is
    the modules' own and stays."""
    import torch
    from torch import nn

    levels = 1 << 16

    class UniformDropout(nn.Module):
        def __init__(self, p: float) -> None:
            super().__init__()
            self.p = p
            dropped = round(p * levels)
            self.threshold = dropped - levels // 2  # the draws are signed
            self.scale = levels / (levels - dropped) if dropped < levels else 0.0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training or not self.p:
                return x
            n = x.numel()
            words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device)
            draws = words.random_(-(1 << 63), None).view(torch.int16)[:n].view(x.shape)
            return x.mul((draws >= self.threshold).to(x.dtype)).mul_(self.scale)

    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Dropout):
                setattr(module, name, UniformDropout(child.p))
    return net


def transformer_net(
    item_rows: int, hidden: int, layers: int, heads: int, max_len: int, dropout: float, causal: bool
):
    """Item, behaviour and position embeddings under a pre-norm transformer
    encoder: SASRec's (``causal``) and BERT4Rec's (bidirectional) network.
    ``item_rows`` counts padding (row 0) and any special tokens."""
    import math

    import torch
    from torch import nn

    class TransformerSequenceNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.item_emb = nn.Embedding(item_rows, hidden, padding_idx=0)
            self.type_emb = nn.Embedding(N_TYPES + 1, hidden, padding_idx=0)
            self.pos_emb = nn.Embedding(max_len, hidden)
            layer = nn.TransformerEncoderLayer(
                hidden,
                heads,
                dim_feedforward=hidden * 4,
                dropout=dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(hidden)
            self.dropout = nn.Dropout(dropout)
            nn.init.normal_(self.item_emb.weight, std=0.02)

        def forward(self, items, types):
            length = items.shape[1]
            # Position 0 is the most recent step, whatever the padded width.
            pos = torch.arange(length - 1, -1, -1, device=items.device)
            x = self.item_emb(items) * math.sqrt(hidden) + self.pos_emb(pos) + self.type_emb(types)
            # Padding is never attended to (nor, if causal, later steps); each
            # position always sees itself, so no row is empty.
            mask = (items == 0).unsqueeze(1).expand(-1, length, -1)
            if causal:
                later = torch.ones(length, length, dtype=torch.bool, device=items.device).triu(1)
                mask = mask | later
            mask = mask & ~torch.eye(length, dtype=torch.bool, device=items.device)
            mask = mask.repeat_interleave(heads, dim=0)
            return self.norm(self.encoder(self.dropout(x), mask=mask))

    return with_fast_dropout(TransformerSequenceNet())
