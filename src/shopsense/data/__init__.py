"""Collect, clean, store and split a store's catalog and behaviour events."""

from shopsense.data.dataset import Dataset
from shopsense.data.schema import EVENT_TYPES

__all__ = ["EVENT_TYPES", "Dataset"]
