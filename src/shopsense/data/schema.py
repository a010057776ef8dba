"""The canonical data model shared by every stage.

Source ids are kept as strings in ``items.parquet`` / ``users.parquet`` (row i
is dense id i); events refer to users and items by those dense int32 ids.
"""

from __future__ import annotations

from typing import Final

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
)
"""``category`` is a path joined by ``CATEGORY_SEP``; ``attributes`` a JSON object."""

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
