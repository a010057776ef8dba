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
