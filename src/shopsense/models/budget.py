"""Training to a budget: how many epochs fit, and the learning rate as time passes.

With ``max_seconds``, a phase of training is planned in whole epochs: after
each epoch (and each validation pass) the plan counts how many more fit in
the seconds left, at what the last few epochs cost (the first ones pay for
warming caches up, and a shared machine changes speed), keeping back what a
later refit will need. The learning rate follows the wall clock: it
warms up linearly over the first seconds, then follows a cosine to zero when
the planned last epoch should end, so the model spends its last epochs at a
low rate and ends settled, not cut off mid-stride; each re-plan stretches or
shrinks the cosine to the new end. On the clock rather than on steps, so the
warm-up is right from the first step, before anything says how many steps
an epoch has. The first epoch always runs: it is what the plan is made from.
Without a budget the rate is constant and a phase runs ``epochs``.

The plan is a function of the times it is told, so with the same times it
makes the same choices (the tests tell it times instead of measuring).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

WARMUP_CAP = 0.2
"""At most this share of a phase's expected length warms up (for short phases)."""
RECENT_EPOCHS = 3
"""How many of the last epochs the cost of the next ones is estimated from."""


def _recent_mean(values: list[float]) -> float:
    recent = values[-RECENT_EPOCHS:]
    return sum(recent) / max(len(recent), 1)


@dataclass
class EpochPlan:
    """One phase of training: at most ``epochs`` epochs, ending by ``deadline``
    seconds after the fit began (None: no budget), the learning rate warming
    up over ``warmup_seconds``. ``refit_cost``: how much longer a refit's epoch
    is than this phase's without its validation (its data is that much
    larger), kept back for each epoch planned; 0 when no refit follows. An
    epoch's cost is measured wall to wall, so what happens between the steps
    (validation, averaging, checkpoints) is counted too. Times are seconds
    after the fit began."""

    epochs: int
    deadline: float | None
    warmup_seconds: float = 0.0
    refit_cost: float = 0.0
    planned: int = field(init=False)
    done: int = field(init=False, default=0)
    train_seconds: float = field(init=False, default=0.0)
    valid_seconds: float = field(init=False, default=0.0)
    validations: int = field(init=False, default=0)
    started: float = field(init=False, default=0.0)
    last_seen: float = field(init=False, default=0.0)
    epoch_walls: list[float] = field(init=False, default_factory=list)
    epoch_validations: list[float] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.planned = self.epochs

    def start(self, elapsed: float) -> None:
        """The phase's first epoch starts at ``elapsed``."""
        self.started = self.last_seen = elapsed

    @property
    def seconds_per_epoch(self) -> float:
        """Mean training seconds of an epoch so far (validation apart)."""
        return self.train_seconds / max(self.done, 1)

    @property
    def epoch_wall_seconds(self) -> float:
        """What the next epoch is expected to take, validation included."""
        return _recent_mean(self.epoch_walls)

    @property
    def refit_epoch_seconds(self) -> float:
        """What an epoch of the refit is expected to take."""
        without_validation = self.epoch_wall_seconds - _recent_mean(self.epoch_validations)
        return without_validation * self.refit_cost

    def add_epoch(self, seconds: float, elapsed: float) -> None:
        """An epoch's training took ``seconds``, ending at ``elapsed``: re-plan."""
        self.done += 1
        self.train_seconds += seconds
        self.epoch_walls.append(elapsed - self.last_seen)
        self.epoch_validations.append(0.0)
        self._replan(elapsed)

    def add_validation(self, seconds: float, elapsed: float) -> None:
        """The last epoch's validation pass took ``seconds``, ending at ``elapsed``: re-plan."""
        self.validations += 1
        self.valid_seconds += seconds
        self.epoch_walls[-1] += elapsed - self.last_seen
        self.epoch_validations[-1] += seconds
        self._replan(elapsed)

    def _replan(self, elapsed: float) -> None:
        self.last_seen = elapsed
        if self.deadline is None:
            return
        refit = self.refit_epoch_seconds
        spare = self.deadline - elapsed - self.done * refit
        per_epoch = self.epoch_wall_seconds + refit
        more = int(spare // per_epoch) if spare > 0 and per_epoch > 0 else 0
        self.planned = min(self.epochs, self.done + more)

    def may_validate(self, share: float) -> bool:
        """Whether a validation pass now keeps the passes within ``share`` of
        the phase's time, at what the passes so far cost (the first always may)."""
        if not self.validations:
            return True
        expected = self.valid_seconds / self.validations
        spent = self.train_seconds + self.valid_seconds + expected
        return self.valid_seconds + expected <= share * spent

    def another_epoch(self) -> bool:
        return self.done < self.planned

    def refit_epochs(self, wanted: int, elapsed: float) -> int:
        """How many of ``wanted`` refit epochs fit in what is left of the budget
        (all of them without one)."""
        per_epoch = self.refit_epoch_seconds
        if self.deadline is None or per_epoch <= 0:
            return wanted
        return max(0, min(wanted, int((self.deadline - elapsed) // per_epoch)))

    def expected_end(self) -> float | None:
        """When the planned last epoch should end (the deadline until one epoch
        has been measured; None without a budget)."""
        if self.deadline is None or not self.done:
            return self.deadline
        return self.last_seen + (self.planned - self.done) * self.epoch_wall_seconds

    def learning_rate_factor(self, elapsed: float) -> float:
        """The multiplier of the learning rate at ``elapsed``: 1 without a
        budget; with one, a linear warm-up from the phase's start, then a
        cosine to 0 at its expected end."""
        end = self.expected_end()
        if end is None:
            return 1.0
        into, length = elapsed - self.started, max(end - self.started, 1e-9)
        warmup = min(self.warmup_seconds, WARMUP_CAP * length)
        if into < warmup:
            return into / warmup
        progress = min(1.0, (into - warmup) / max(length - warmup, 1e-9))
        return 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class PhaseReport:
    """Where one phase's time went (``train``, with validation; ``refit``)."""

    phase: str
    epochs: int
    planned_epochs: int
    stopped: str
    train_seconds: float
    seconds_per_epoch: float
    validation_passes: int
    validation_seconds: float
    validation_users: int | None
    seconds: float

    @classmethod
    def of(
        cls,
        plan: EpochPlan,
        phase: str,
        stopped: str,
        validation_users: int | None,
        seconds: float,
    ) -> PhaseReport:
        return cls(
            phase=phase,
            epochs=plan.done,
            planned_epochs=plan.planned,
            stopped=stopped,
            train_seconds=round(plan.train_seconds, 2),
            seconds_per_epoch=round(plan.seconds_per_epoch, 3),
            validation_passes=plan.validations,
            validation_seconds=round(plan.valid_seconds, 2),
            validation_users=validation_users,
            seconds=round(seconds, 2),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_training_report(report: dict[str, Any]) -> str:
    """One line per phase of a ``training_report_``, then the total against the budget."""
    lines = []
    for phase in report["phases"]:
        line = (
            f"{phase['phase']}: {phase['epochs']} epochs of {phase['planned_epochs']} planned "
            f"({phase['seconds_per_epoch']:.2f} s each, {phase['train_seconds']:.1f} s), "
            f"stopped by {phase['stopped']}"
        )
        if phase["validation_passes"]:
            line += (
                f"; {phase['validation_passes']} validation passes on "
                f"{phase['validation_users']:,} users in {phase['validation_seconds']:.1f} s"
            )
        lines.append(line)
    refit = report.get("refit")
    if refit and refit["outcome"] != "kept":
        lines.append(f"refit of {refit['epochs_wanted']} epochs: {refit['outcome']}")
    budget = report["budget_seconds"]
    total = f"{report['seconds']:.1f} s in all" + (f" of a {budget:g} s budget" if budget else "")
    if report.get("best_epoch") is not None:
        total += f"; best validation epoch {report['best_epoch']}"
    lines.append(total)
    return "\n".join(lines)
