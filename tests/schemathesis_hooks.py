"""Schemathesis hooks for ``tests/test_serving_process.py``: the one rule of
the spec that JSON Schema cannot state (it relates two parameters), kept by
the generated requests as a client would keep it."""

from __future__ import annotations

from typing import Any

import schemathesis


def _number(value: Any) -> float | None:
    try:
        return float(value)  # the coverage phase sends query values as strings
    except (TypeError, ValueError):
        return None


@schemathesis.hook
def filter_case(ctx: Any, case: Any) -> bool:
    """``/search``: ``price_min`` is not above ``price_max`` (as price_max's
    description says; the service answers 422 otherwise). A case hook: the
    coverage phase passes its queries by it, not by ``filter_query``."""
    query = case.query
    if case.operation.path != "/search" or not isinstance(query, dict):
        return True
    low, high = _number(query.get("price_min")), _number(query.get("price_max"))
    return low is None or high is None or low <= high
