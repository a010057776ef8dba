"""Retraining on a schedule while the service runs (``serve --retrain-every``).

Every period, ``shopsense retrain`` runs in a child process of ``serve`` (its
own memory and cores' worth of time, so a crash or a long fit never takes a
worker with it). An accepted challenger is registered, and with
``promote`` promoted, through the model registry and the change log, so every
worker swaps it in as it follows the log; a refused or failed retrain is
logged and the champion keeps serving. Run the schedule on one machine of a
fleet: each run trains a challenger.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from shopsense.serving.retrain import REFUSED_STATUS

LOG = logging.getLogger("shopsense.serving")


@dataclass(frozen=True)
class RetrainSchedule:
    every_seconds: float
    data: Path
    state: str
    models: Path
    promote: bool = False
    timeout_seconds: float = 6 * 3600

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "shopsense", "retrain", "--data", str(self.data),
                   "--state", self.state, "--models", str(self.models)]  # fmt: skip
        return [*command, "--promote"] if self.promote else command

    def once(self) -> int:
        """One retrain; its exit status (0 registered, 3 refused, other: failed)."""
        try:
            done = subprocess.run(
                self.command(), capture_output=True, text=True, timeout=self.timeout_seconds
            )
        except subprocess.TimeoutExpired:
            LOG.warning("scheduled retrain: stopped after %.0f s", self.timeout_seconds)
            return -1
        said = (done.stdout.strip() or done.stderr.strip()).splitlines()[-1:] or [""]
        if done.returncode == 0:
            LOG.warning("scheduled retrain: %s", said[0])
        elif done.returncode == REFUSED_STATUS:
            LOG.warning("scheduled retrain refused the challenger: %s", said[0])
        else:
            LOG.warning("scheduled retrain failed (exit %d): %s", done.returncode, said[0])
        return done.returncode

    def run(self, stop: threading.Event) -> None:
        """Retrain every ``every_seconds`` until ``stop``."""
        while not stop.wait(self.every_seconds):
            self.once()
