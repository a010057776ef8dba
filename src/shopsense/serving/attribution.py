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

:class:`AttributionLog` keeps the two logs as columns of numbers (strings
interned once), read from the store once and then only what was appended
since (:func:`read_log`); :meth:`AttributionLog.credit` applies the rules above
to every event at once with NumPy. Crediting is redone over the kept columns
at each call rather than patched row by row: an impression may be stored
after the events that name it (workers flush their impressions in batches,
and hold them while the store is down), so an old event's credit can change
when a late impression arrives, and a full pass over numbers is exact and
takes milliseconds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np

from shopsense.errors import ShopsenseError
from shopsense.serving.store import Event, Impression, StateStore

CREDITED_TYPES = ("click", "cart", "purchase")
CLICK, CART, PURCHASE = range(3)
REASONS = ("unknown", "expired", "not_shown", "other_shopper", "repeated_click")
UNKNOWN, EXPIRED, NOT_SHOWN, OTHER_SHOPPER, REPEATED_CLICK = range(len(REASONS))
PAGE = 10_000
COLUMNS = (
    *(f"impression_{name}" for name in ("request", "unit", "user", "session", "timestamp",
                                        "placement", "experiment", "arm", "query", "length")),
    *(f"shown_{name}" for name in ("row", "item", "position", "team")),
    *(f"event_{name}" for name in ("type", "item", "user", "session", "request", "timestamp",
                                   "value")),
    "anonymous",
)  # fmt: skip
"""The log's columns: per impression kept, per item it showed (once a list),
per click, cart or purchase, and the times of impressions without a shopper."""
_TIME_BITS = 32
"""Crediting packs (shopper-item pair, time) into one int64: times span under 2³² s."""


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


def normal_query(query: str | None) -> str:
    """A query as the search tables group it: case-folded, spaces collapsed."""
    return " ".join((query or "").casefold().split())


class Codes:
    """Strings as dense numbers, the first seen 0: what the columns hold."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def __call__(self, name: str | None) -> int:
        """The number of ``name`` (-1 for None), a new one if it is new."""
        if name is None:
            return -1
        return self.index.setdefault(name, len(self.index))

    def many(self, names: list[str | None]) -> list[int]:
        """The numbers of ``names``, new ones numbered in the order first seen."""
        index = self.index
        for name in dict.fromkeys(names):
            if name is not None and name not in index:
                index[name] = len(index)
        get = index.get
        return [get(name, -1) for name in names]  # type: ignore[arg-type]  (None: -1)

    def names(self) -> list[str]:
        return list(self.index)


@dataclass
class Credit:
    """Per event of the log (its credited types): the impression row it is
    credited to (-1: none), whether it counts (a repeated click is credited to
    its list but not counted again), why a named one was not credited
    (an index of ``REASONS``, -1 for none) and, for one credited by name, its
    item's position in the list (0-based) and team (a code of
    ``AttributionLog.labels``, -1 for none)."""

    impression: np.ndarray
    counted: np.ndarray
    reason: np.ndarray
    position: np.ndarray
    team: np.ndarray


@dataclass
class ShopperRows:
    """Per (cell, shopper) that was shown a list of the cell: its totals.
    Sorted by cell, then shopper (a code of ``AttributionLog.units``)."""

    cell: np.ndarray
    unit: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    carts: np.ndarray
    purchases: np.ndarray
    revenue: np.ndarray

    def of(self, cell: int) -> slice:
        """The rows of one cell."""
        return slice(*np.searchsorted(self.cell, [cell, cell + 1]))


class AttributionLog:
    """The impression log and the credited types of the event log, as columns.

    Kept per impression: its request, shopper, time, placement, experiment,
    arm, normalized query and length, and per item it showed (once per list)
    its position and team; per click, cart or purchase: its type, item,
    shopper, request, time and value; views are only counted. Strings are
    interned (:class:`Codes`), so memory is a few numbers per row and shown
    item, linear in the log. An impression logged twice (a store write retried
    after a timeout that went through) is kept once; one without a shopper
    cannot be credited and only its time is kept (``anonymous``).

    ``*_seq_`` and the last ids are where reading stopped, so that
    :meth:`catch_up` reads only what was appended since.
    """

    def __init__(self) -> None:
        self.units = Codes()
        self.items = Codes()
        self.requests = Codes()
        self.labels = Codes()
        """Placements, experiments, arms, teams and queries."""
        self._kept_requests: set[int] = set()
        self._chunks: dict[str, list[np.ndarray]] = {name: [] for name in COLUMNS}
        """Per column, its parts as read, joined into one when the columns are used."""
        self._rows = 0
        self.event_seq_ = 0
        self.event_id_: str | None = None
        self.impression_seq_ = 0
        self.request_id_: str | None = None
        self.events_read_ = 0
        self.change_seq_: int | None = None

    # ------------------------------------------------------------ reading
    def add_impressions(self, impressions: Iterable[Impression]) -> None:
        """Append impressions (in log order) to the columns."""
        kept: list[Impression] = []
        anonymous: list[int] = []
        for impression in impressions:
            if impression.user_id is None and impression.session_id is None:
                anonymous.append(impression.timestamp)
                continue
            request = self.requests(impression.request_id)
            if request not in self._kept_requests:
                self._kept_requests.add(request)
                kept.append(impression)
        self._add("anonymous", anonymous)
        labels = self.labels
        for name, values in (
            ("request", self.requests.many([i.request_id for i in kept])),
            ("unit", self.units.many([unit_of(i.user_id, i.session_id) for i in kept])),
            ("user", self.units.many([unit_of(i.user_id, None) for i in kept])),
            ("session", self.units.many([unit_of(None, i.session_id) for i in kept])),
            ("timestamp", [i.timestamp for i in kept]),
            ("placement", labels.many([i.placement for i in kept])),
            ("experiment", labels.many([i.experiment for i in kept])),
            ("arm", labels.many([i.arm for i in kept])),
            ("query", labels.many([normal_query(i.query) if i.placement == "search" else None
                                   for i in kept])),
            ("length", [len(i.items) for i in kept]),
        ):  # fmt: skip
            self._add(f"impression_{name}", values)
        lengths = np.array([len(i.items) for i in kept], np.int64)
        items = np.array(self.items.many(list(chain.from_iterable(i.items for i in kept))),
                         np.int64)  # fmt: skip
        teams = labels.many(list(chain.from_iterable(
            i.teams if i.teams is not None and len(i.teams) == len(i.items)
            else (None,) * len(i.items) for i in kept)))  # fmt: skip
        rows = np.repeat(np.arange(len(kept)), lengths)
        positions = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        # an item once per list, at its first position
        _, first = np.unique(rows * max(len(self.items.index), 1) + items, return_index=True)
        first.sort()
        self._add("shown_row", rows[first] + self._rows)
        self._add("shown_item", items[first])
        self._add("shown_position", positions[first])
        self._add("shown_team", np.array(teams, np.int64)[first])
        self._rows += len(kept)

    def add_events(self, events: Iterable[Event]) -> None:
        """Append events (in log order): their clicks, carts and purchases."""
        kinds = {kind: n for n, kind in enumerate(CREDITED_TYPES)}
        credited: list[Event] = []
        for event in events:
            self.events_read_ += 1
            if event.type in kinds:
                credited.append(event)
        for name, values in (
            ("type", [kinds[e.type] for e in credited]),
            ("item", self.items.many([e.item_id for e in credited])),
            ("user", self.units.many([unit_of(e.user_id, None) for e in credited])),
            ("session", self.units.many([unit_of(None, e.session_id) for e in credited])),
            ("request", self.requests.many([e.request_id for e in credited])),
            ("timestamp", [e.timestamp for e in credited]),
        ):
            self._add(f"event_{name}", values)
        self._add("event_value", [e.value or 0.0 for e in credited], float)

    def _add(self, column: str, values: Any, dtype: type = np.int64) -> None:
        if len(values):
            self._chunks[column].append(np.asarray(values, dtype))

    def catch_up(self, store: StateStore) -> bool:
        """Read what ``store`` logged since the last call. False when the store
        no longer holds what this log read (emptied or replaced: the last row
        read is gone or another; a user erased; fewer events than read): the
        caller starts a new log, since this one cannot be corrected."""
        change = store.last_change()
        if self.change_seq_ is not None and (
            change < self.change_seq_ or _erased_since(store, self.change_seq_)
        ):
            return False
        self.change_seq_ = change
        if not (
            _still_there(store.events, self.event_seq_, self.event_id_, "event_id")
            and _still_there(store.impressions, self.impression_seq_, self.request_id_,
                             "request_id")
        ):  # fmt: skip
            return False
        while page := store.impressions(after=self.impression_seq_, limit=PAGE):
            self.add_impressions(impression for _, impression in page)
            self.impression_seq_, self.request_id_ = page[-1][0], page[-1][1].request_id
        while page := store.events(after=self.event_seq_, limit=PAGE):
            self.add_events(event for _, event in page)
            self.event_seq_, self.event_id_ = page[-1][0], page[-1][1].event_id
        return store.event_count() >= self.events_read_

    # ------------------------------------------------------------ columns
    def columns(self) -> dict[str, np.ndarray]:
        """Every column (``COLUMNS``) as one NumPy array."""
        for column, chunks in self._chunks.items():
            if len(chunks) != 1:
                dtype = float if column == "event_value" else np.int64
                chunks[:] = [np.concatenate(chunks) if chunks else np.zeros(0, dtype)]
        return {column: chunks[0] for column, chunks in self._chunks.items()}

    @property
    def impression_count(self) -> int:
        return self._rows

    # ------------------------------------------------------------ crediting
    def credit(self, window_seconds: int) -> Credit:
        """Every event credited by the module's rules with this window."""
        c = self.columns()
        events = len(c["event_type"])
        impression = np.full(events, -1, np.int64)
        reason = np.full(events, -1, np.int64)
        position = np.full(events, -1, np.int64)
        team = np.full(events, -1, np.int64)
        items = max(len(self.items.index), 1)
        named = np.flatnonzero((c["event_item"] >= 0) & (c["event_request"] >= 0))
        if self.impression_count:
            self._credit_named(named, impression, reason, position, team, window_seconds, items)
        else:
            reason[named] = UNKNOWN
        self._credit_last_showing(impression, window_seconds, items)

        # a list's item earns one click: the first credited one in log order
        counted = impression >= 0
        clicks = np.flatnonzero(counted & (c["event_type"] == CLICK))
        _, first = np.unique(impression[clicks] * items + c["event_item"][clicks],
                             return_index=True)  # fmt: skip
        repeated = np.ones(len(clicks), bool)
        repeated[first] = False
        counted[clicks[repeated]] = False
        reason[clicks[repeated]] = REPEATED_CLICK
        return Credit(impression, counted, reason, position, team)

    def _credit_named(
        self,
        named: np.ndarray,
        impression: np.ndarray,
        reason: np.ndarray,
        position: np.ndarray,
        team: np.ndarray,
        window: int,
        items: int,
    ) -> None:
        """Events that name a request: credited to its list, or the first
        check they fail is their reason."""
        c = self.columns()
        row_of_request = np.full(len(self.requests.index), -1, np.int64)
        row_of_request[c["impression_request"]] = np.arange(self.impression_count)
        pair = c["shown_row"] * items + c["shown_item"]
        by_pair = np.argsort(pair, kind="stable")
        pairs = np.append(pair[by_pair], -1)  # -1: what a search past the end finds
        rows = row_of_request[c["event_request"][named]]
        known = np.maximum(rows, 0)
        age = c["event_timestamp"][named] - c["impression_timestamp"][known]
        wanted = known * items + c["event_item"][named]
        at = np.searchsorted(pairs[:-1], wanted)
        user, session = c["event_user"][named], c["event_session"][named]
        own_user, own_session = c["impression_user"][known], c["impression_session"][known]
        same = ((own_user >= 0) & (own_user == user)) | (
            (own_session >= 0) & (own_session == session))  # fmt: skip
        checks = (rows >= 0, (age >= 0) & (age <= window), pairs[at] == wanted, same)
        failed = np.full(len(named), -1, np.int64)
        for code, passed in zip((UNKNOWN, EXPIRED, NOT_SHOWN, OTHER_SHOPPER), checks, strict=True):
            failed[(failed < 0) & ~passed] = code
        ok = failed < 0
        reason[named] = failed
        impression[named[ok]] = rows[ok]
        position[named[ok]] = c["shown_position"][by_pair[at[ok]]]
        team[named[ok]] = c["shown_team"][by_pair[at[ok]]]

    def _credit_last_showing(self, impression: np.ndarray, window: int, items: int) -> None:
        """Carts and purchases not credited by name: to the last list that
        showed the item to the user, else to the session, within the window
        before the event (ties in time: the greatest request id, as the
        lists' order by (time, request id) has it)."""
        c = self.columns()
        if not len(c["shown_row"]):
            return
        rows = c["shown_row"]
        times = c["impression_timestamp"][rows]
        requests = np.asarray(self.requests.names(), dtype=str)[c["impression_request"][rows]]
        keys = c["impression_unit"][rows] * items + c["shown_item"]
        order = np.lexsort((requests, times, keys))
        keys, times, rows = keys[order], times[order], rows[order]
        distinct = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        dense = np.cumsum(np.r_[True, keys[1:] != keys[:-1]]) - 1
        start = int(times[0]) if len(times) else 0
        if int(times.max()) - start >= 1 << _TIME_BITS:
            raise ShopsenseError("impression times span more than 2³² seconds")
        packed = (dense << _TIME_BITS) | (times - start)
        wanted = (impression < 0) & (c["event_type"] != CLICK) & (c["event_item"] >= 0)
        for shopper in (c["event_user"], c["event_session"]):
            events = np.flatnonzero(wanted & (shopper >= 0))
            key = shopper[events] * items + c["event_item"][events]
            at = np.minimum(np.searchsorted(keys[distinct], key), len(distinct) - 1)
            when = c["event_timestamp"][events]
            offset = np.clip(when - start, 0, (1 << _TIME_BITS) - 1)
            last = np.searchsorted(packed, (at << _TIME_BITS) | offset, side="right") - 1
            last = np.maximum(last, 0)
            hit = (keys[distinct][at] == key) & (dense[last] == at) & (times[last] <= when)
            hit &= when - times[last] <= window
            impression[events[hit]] = rows[last[hit]]
            wanted[events[hit]] = False

    def shopper_rows(self, credit: Credit, cell: np.ndarray) -> ShopperRows:
        """Totals per (cell, shopper), where ``cell`` gives each impression row
        its cell (-1: none; what it earned is counted in no cell)."""
        c = self.columns()
        units = max(len(self.units.index), 1)
        shown = np.flatnonzero(cell >= 0)
        earned = np.flatnonzero(credit.counted)
        earned = earned[cell[credit.impression[earned]] >= 0]
        rows = credit.impression[earned]
        key = np.concatenate([cell[shown] * units + c["impression_unit"][shown],
                              cell[rows] * units + c["impression_unit"][rows]])  # fmt: skip
        distinct, inverse = np.unique(key, return_inverse=True)
        kind = c["event_type"][earned]
        head = len(shown)

        def total(weights: np.ndarray) -> np.ndarray:
            return np.bincount(inverse[head:], weights, minlength=len(distinct))

        return ShopperRows(
            cell=distinct // units,
            unit=distinct % units,
            impressions=np.bincount(inverse[:head], minlength=len(distinct)),
            clicks=total(kind == CLICK).astype(np.int64),
            carts=total(kind == CART).astype(np.int64),
            purchases=total(kind == PURCHASE).astype(np.int64),
            revenue=total(np.where(kind == PURCHASE, c["event_value"][earned], 0.0)),
        )

    def uncredited(self, credit: Credit, cell: np.ndarray) -> Counter:
        """Events not credited, by reason; a repeated click only where its list
        has a cell."""
        reason = credit.reason
        plain = reason[(reason >= 0) & (reason != REPEATED_CLICK)]
        counts = np.bincount(plain, minlength=len(REASONS))
        repeated = np.flatnonzero(reason == REPEATED_CLICK)
        counts[REPEATED_CLICK] = int((cell[credit.impression[repeated]] >= 0).sum())
        return Counter({name: int(n) for name, n in zip(REASONS, counts, strict=True) if n})

    def attribution(self, credit: Credit, cell: np.ndarray, names: list[str]) -> Attribution:
        """The rows as :class:`Attribution`: keyed by (shopper, ``names[cell]``),
        with an interleaved list's clicks per team."""
        rows = self.shopper_rows(credit, cell)
        unit_names, labels = self.units.names(), self.labels.names()
        c = self.columns()
        by_shopper = {
            (unit_names[u], names[k]): ShopperTotals(int(i), int(cl), int(ca), int(p), float(r))
            for k, u, i, cl, ca, p, r in zip(rows.cell, rows.unit, rows.impressions, rows.clicks,
                                             rows.carts, rows.purchases, rows.revenue,
                                             strict=True)
        }  # fmt: skip
        teamed = np.flatnonzero(credit.counted & (credit.team >= 0) & (c["event_type"] == CLICK))
        teamed = teamed[cell[credit.impression[teamed]] >= 0]
        for event in teamed:
            row = credit.impression[event]
            key = (unit_names[c["impression_unit"][row]], names[cell[row]])
            by_shopper[key].credit[labels[credit.team[event]]] += 1
        return Attribution(by_shopper, self.uncredited(credit, cell))


def _erased_since(store: StateStore, after: int) -> bool:
    """Whether a user was erased from the store after change ``after``."""
    while changes := store.changes(after=after):
        if any(change.kind == "users.delete" for change in changes):
            return True
        after = changes[-1].seq
    return False


def _still_there(read: Callable, seq: int, key: str | None, field_name: str) -> bool:
    """Whether the row read last (``seq``, its id ``key``) is still the store's
    row ``seq``: sequence numbers only grow, so another row there or none
    means the log was emptied, replaced or its last row erased."""
    if seq == 0:
        return True
    page = read(after=seq - 1, limit=1)
    return bool(page) and page[0][0] == seq and getattr(page[0][1], field_name) == key


def read_log(store: StateStore, log: AttributionLog | None = None) -> AttributionLog:
    """``log`` brought up to date with ``store``, or a new log of the whole
    store where there is none or ``log`` cannot be (see ``catch_up``)."""
    if log is None or not log.catch_up(store):
        log = AttributionLog()
        log.catch_up(store)
    return log


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
    twice counts once."""
    log = AttributionLog()
    impressions = list(impressions)
    log.add_impressions(impressions)
    log.add_events(events)
    cells = Codes()
    label_of: dict[int, int] = {}
    for impression in impressions:
        if unit_of(impression.user_id, impression.session_id) is not None:
            label_of.setdefault(log.requests.index[impression.request_id], cells(cell(impression)))
    rows = log.columns()["impression_request"]
    labels = np.array([label_of[r] for r in rows], np.int64)
    return log.attribution(log.credit(window_seconds), labels, cells.names())


def logged_events(store: StateStore) -> Iterator[Event]:
    """The store's events in arrival order."""
    after = 0
    while page := store.events(after=after, limit=PAGE):
        for _, event in page:
            yield event
        after = page[-1][0]
