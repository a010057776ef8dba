"""Schemathesis hooks for ``tests/test_serving_process.py``: the rules of the
spec that JSON Schema cannot state (each relates two parameters), kept by the
generated requests as a client would keep them."""

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
    if case.operation.path == "/admin/experiments" and case.method == "POST":
        return _experiment_rules(case.body)
    query = case.query
    if case.operation.path != "/search" or not isinstance(query, dict):
        return True
    low, high = _number(query.get("price_min")), _number(query.get("price_max"))
    return low is None or high is None or low <= high


def _experiment_rules(body: Any) -> bool:
    """``POST /admin/experiments`` (its description): one share per arm adding
    up to at most 1, two arms for interleaving, search arms by name."""
    if not isinstance(body, dict) or not isinstance(body.get("arms"), dict):
        return True  # not a schema-valid body: the service must refuse it with 422
    arms, shares = body["arms"], body.get("shares")
    numbers = isinstance(shares, list) and all(isinstance(s, int | float) for s in shares)
    if numbers and (len(shares) != len(arms) or sum(shares) > 1):
        return False
    if body.get("kind") == "interleaving" and len(arms) != 2:
        return False
    settings = {"personalized", "unpersonalized"}
    names = [value for value in arms.values() if isinstance(value, str)]
    if len(names) != len(arms):
        return True  # an arm that is not a name: the service must refuse it with 422
    return body.get("placement") != "search" or set(names) <= settings
