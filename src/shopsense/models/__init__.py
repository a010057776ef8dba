"""Recommenders: one file per model, all registered in :mod:`shopsense.models.registry`."""

from shopsense.models.base import Recommender
from shopsense.models.registry import create_model, load_model, model_names

__all__ = ["Recommender", "create_model", "load_model", "model_names"]
