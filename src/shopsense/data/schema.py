"""The canonical data model shared by every stage.

Source ids are kept as strings in ``items.parquet`` / ``users.parquet`` (row i
is dense id i); events refer to users and items by those dense int32 ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import numpy as np
import pandas as pd

SCHEMA_VERSION: Final = 1

EVENT_TYPES: Final = ("view", "click", "cart", "fav", "purchase", "search")
"""Behaviour types, ordered from weakest to strongest intent (search aside)."""

EVENT_CODE: Final = {name: code for code, name in enumerate(EVENT_TYPES)}
DEFAULT_EVENT_WEIGHTS: Final = {"view": 1.0, "click": 2.0, "cart": 4.0, "fav": 6.0, "purchase": 8.0}
"""Implicit-feedback confidence of each behaviour; repeated events add up."""

NO_ITEM: Final = -1
"""Item id of events that concern no item (a search with nothing clicked)."""

ITEM_COLUMNS: Final = (
    "item_id",
    "title",
    "description",
    "category",
    "brand",
    "price",
    "attributes",
    "created_at",
    "in_stock",
)
"""``category`` is a path joined by ``CATEGORY_SEP``; ``attributes`` a JSON object;
``in_stock`` true, false or unknown (read as true: ``in_stock_flags``)."""

USER_COLUMNS: Final = ("user_id", "attributes")

RAW_EVENT_COLUMNS: Final = (
    "user_id",
    "item_id",
    "type",
    "timestamp",
    "session_id",
    "query",
    "value",
    "context",
)
"""Columns a format reader yields, ids still as source strings."""

EVENT_COLUMNS: Final = ("user", "item", "type", "timestamp", "session", "query", "value", "context")
"""Columns of ``events.parquet``: dense ``user``/``item``, ``type`` as a string,
``timestamp`` in Unix seconds, ``value`` an optional number (rating, amount)."""

CATEGORY_SEP: Final = " > "
"""Joins the levels of a category path, from the top: ``"Electronics > Audio"``."""

EVENT_VERBS: Final = {
    "view": "viewed",
    "click": "clicked",
    "cart": "carted",
    "fav": "liked",
    "purchase": "bought",
}
"""How an explanation names each behaviour ("because you bought …")."""

JUDGMENT_GRADES: Final = {"view": 2.0, "click": 2.33, "fav": 2.5, "cart": 2.67, "purchase": 3.0}
"""The relevance grade a search session's later behaviour gives an item, on
the 1-3 scale of human search judgments (Home Depot's): a purchase is as good
as "relevant", a view what a judge calls half way."""

SEARCH_ACTIONS: Final = ("click", "cart", "purchase")
"""Behaviours that count as a search leading somewhere (``search_clicks``)."""


def category_levels(path: str) -> list[str]:
    """``"A > B > C"`` → ``["A", "B", "C"]``; blank levels are dropped."""
    parts = (p.strip() for p in path.split(CATEGORY_SEP.strip())) if path else ()
    return [p for p in parts if p]


def category_prefixes(path: str) -> list[str]:
    """``"A > B > C"`` → ``["A", "A > B", "A > B > C"]``: each level is filterable."""
    levels = category_levels(path)
    return [CATEGORY_SEP.join(levels[: i + 1]) for i in range(len(levels))]


def category_leaf(path: str) -> str:
    """The deepest level of a path ("" for none)."""
    levels = category_levels(path)
    return levels[-1] if levels else ""


def category_words(path: str) -> str:
    """The levels of a path as words for a text index: ``"A > B"`` → ``"A B"``."""
    return " ".join(category_levels(path))


IN_STOCK_WORDS: Final = {"true": True, "1": True, "yes": True, "y": True,
                         "false": False, "0": False, "no": False, "n": False}  # fmt: skip
"""How a catalogue file may write ``in_stock`` (any case); anything else is refused."""


def in_stock_flag(value: Any) -> bool | None:
    """One ``in_stock`` value as a flag: True where it is missing (a catalogue
    that never says is all in stock), None where it cannot be read."""
    if value is None or (np.ndim(value) == 0 and pd.isna(value)):
        return True
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.integer | np.floating) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return IN_STOCK_WORDS.get(value.strip().lower(), True if not value.strip() else None)
    return None


def in_stock_flags(values: Iterable[Any] | None, n: int) -> np.ndarray:
    """Each of ``n`` items' ``in_stock`` as a flag (an absent column: all in
    stock); unreadable values count as in stock (``clean_items`` refuses them
    at ingest). A column of booleans is taken as it is."""
    if values is None:
        return np.ones(n, bool)
    if isinstance(values, pd.Series) and values.dtype == bool:
        return values.to_numpy(bool)
    return np.array([in_stock_flag(v) is not False for v in values], bool)
