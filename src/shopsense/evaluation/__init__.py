"""Honest offline evaluation: full ranking over all items, metrics at several K."""

from shopsense.evaluation.evaluate import evaluate
from shopsense.evaluation.metrics import ranking_metrics

__all__ = ["evaluate", "ranking_metrics"]
