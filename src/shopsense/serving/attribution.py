"""Crediting what shoppers did to the lists they were shown.

- An event that names a ``request_id`` is credited to that impression when the
  impression showed its item to the event's shopper (user id, or session)
  and the event came within the attribution window after it; otherwise it is
  kept (the event log holds it) but not credited, and counted by why:
  ``unknown`` request id, ``expired``, item ``not_shown``, ``other_shopper``
  (a request id is handed out in every response: anyone may send one). A
  list's item earns one click however many are posted (``repeated_click``).
- A cart or purchase without a credited ``request_id`` is credited to the last
  impression that showed its item to the same shopper (user id, or session)
  within the window before it: a shopper who clicks, browses and buys later
  still counts for the list that showed the item.
- A click without a ``request_id`` is organic: nobody's.

The window is the experiment's (``attribution_seconds``, 24 h by default). The
result is one row per (shopper, arm): the unit of every statistic, since the
impressions of one shopper are not independent.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from shopsense.serving.store import Event, Impression, StateStore

CREDITED_TYPES = ("click", "cart", "purchase")
PAGE = 10_000


@dataclass
class ShopperTotals:
    """What one shopper did in one arm: the counts the metrics are ratios of.
    ``credit`` holds, for an interleaved list, the clicks credited to each
    team's arm."""

    impressions: int = 0
    clicks: int = 0
    carts: int = 0
    purchases: int = 0
    revenue: float = 0.0
    credit: Counter = field(default_factory=Counter)


@dataclass
class Attribution:
    by_shopper: dict[tuple[str, str], ShopperTotals]
    """(shopper, arm) → totals."""
    uncredited: Counter
    """Events with a ``request_id`` that were not credited, by reason."""


def unit_of(user_id: str | None, session_id: str | None) -> str | None:
    """The shopper an impression or event belongs to: the user, else the session."""
    if user_id is not None:
        return f"user:{user_id}"
    return None if session_id is None else f"session:{session_id}"


def attribute(
    impressions: Iterable[Impression],
    events: Iterable[Event],
    window_seconds: int,
    cell: Callable[[Impression], str | None] = lambda impression: impression.arm,
) -> Attribution:
    """Credit ``events`` to ``impressions`` by the rules above. Totals are kept
    per (shopper, ``cell(impression)``), by default the arm; an impression
    whose cell is None is looked up and credited all the same (an event it
    earned is nobody else's) but counted in no row. An impression logged
    twice (a store write retried after a timeout that went through) counts
    once."""
    shown: dict[str, Impression] = {}
    cells: dict[str, str | None] = {}
    totals: dict[tuple[str, str], ShopperTotals] = defaultdict(ShopperTotals)
    # Per (shopper, item): the times and request ids of the impressions that showed it.
    showings: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    for impression in impressions:
        unit = unit_of(impression.user_id, impression.session_id)
        if unit is None or impression.request_id in shown:
            continue
        shown[impression.request_id] = impression
        label = cells[impression.request_id] = cell(impression)
        if label is not None:
            totals[unit, label].impressions += 1
        for item in set(impression.items):
            showings[unit, item].append((impression.timestamp, impression.request_id))
    for times in showings.values():  # workers flush in turn: nearly, not quite, in time order
        times.sort()
    uncredited: Counter = Counter()
    clicked: set[tuple[str, str]] = set()
    for event in events:
        if event.type not in CREDITED_TYPES or event.item_id is None:
            continue
        impression = _named(event, shown, window_seconds, uncredited)
        if impression is None and event.type != "click":
            impression = _last_showing(event, shown, showings, window_seconds)
        if impression is None:
            continue
        label = cells[impression.request_id]
        if label is None:
            continue
        row = totals[unit_of(impression.user_id, impression.session_id), label]
        if event.type == "click":
            if (impression.request_id, event.item_id) in clicked:
                uncredited["repeated_click"] += 1
                continue
            clicked.add((impression.request_id, event.item_id))
            row.clicks += 1
            if impression.teams is not None:
                row.credit[impression.teams[impression.items.index(event.item_id)]] += 1
        elif event.type == "cart":
            row.carts += 1
        else:
            row.purchases += 1
            row.revenue += event.value or 0.0
    return Attribution(dict(totals), uncredited)


def _named(
    event: Event, shown: dict[str, Impression], window: int, uncredited: Counter
) -> Impression | None:
    if event.request_id is None:
        return None
    impression = shown.get(event.request_id)
    if impression is None:
        uncredited["unknown"] += 1
        return None
    if not 0 <= event.timestamp - impression.timestamp <= window:
        uncredited["expired"] += 1
        return None
    if event.item_id not in impression.items:
        uncredited["not_shown"] += 1
        return None
    if not _same_shopper(event, impression):
        uncredited["other_shopper"] += 1
        return None
    return impression


def _same_shopper(event: Event, impression: Impression) -> bool:
    """The event's shopper is the one the list was shown to (a request id is
    no secret: every response hands one out)."""
    if impression.user_id is not None and impression.user_id == event.user_id:
        return True
    return impression.session_id is not None and impression.session_id == event.session_id


def _last_showing(
    event: Event,
    shown: dict[str, Impression],
    showings: dict[tuple[str, str], list[tuple[int, str]]],
    window: int,
) -> Impression | None:
    for unit in (unit_of(event.user_id, None), unit_of(None, event.session_id)):
        if unit is None:
            continue
        times = showings.get((unit, event.item_id))
        if not times:
            continue
        at = bisect.bisect_right(times, (event.timestamp, "\uffff")) - 1
        if at >= 0 and event.timestamp - times[at][0] <= window:
            return shown[times[at][1]]
    return None


def logged_impressions(store: StateStore) -> Iterator[Impression]:
    """The store's impressions in order."""
    after = 0
    while page := store.impressions(after=after, limit=PAGE):
        for _, impression in page:
            yield impression
        after = page[-1][0]


def logged_events(store: StateStore) -> Iterator[Event]:
    """The store's events in arrival order."""
    after = 0
    while page := store.events(after=after, limit=PAGE):
        for _, event in page:
            yield event
        after = page[-1][0]
