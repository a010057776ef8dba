"""The service's state behind one small interface, one file per backend.

A store keeps the durable event log (each event once, by its idempotency
key), every user's recent steps (the live session the online models read),
precomputed batch recommendations and shared counters. Several API processes
or machines that open the same store share that state.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from shopsense.errors import ShopsenseError

RECENT_STEPS = 50
StoreClass = TypeVar("StoreClass", bound=type)


class StoreUnavailable(ShopsenseError):
    """The state store cannot be reached now (Redis down, SQLite locked or its
    disk failing): the service answers 503 with ``Retry-After`` and recovers
    by itself once the store is back."""


@dataclass(frozen=True)
class Event:
    """One accepted event, as the log keeps it."""

    event_id: str
    user_id: str
    type: str
    timestamp: int
    item_id: str | None = None
    session_id: str | None = None
    query: str | None = None
    request_id: str | None = None
    value: float | None = None
    """What a purchase brought in (price × quantity), for revenue."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Impression:
    """One list a shopper was shown: what the experiments and the analytics
    count. ``teams`` names, per position, the arm an interleaved list took the
    item from (None for a list from one arm)."""

    request_id: str
    placement: str
    timestamp: int
    items: tuple[str, ...]
    user_id: str | None = None
    session_id: str | None = None
    model_version: str | None = None
    experiment: str | None = None
    arm: str | None = None
    teams: tuple[str, ...] | None = None
    query: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Its fields, shallow (``asdict`` copies deep: twice the writer's time)."""
        return {name: getattr(self, name) for name in IMPRESSION_FIELDS}

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> Impression:
        teams = fields.get("teams")
        return cls(**{**fields, "items": tuple(fields["items"]),
                      "teams": None if teams is None else tuple(teams)})  # fmt: skip


IMPRESSION_FIELDS = tuple(f.name for f in fields(Impression))


@dataclass(frozen=True)
class Change:
    """One entry of the change log: what every replica applies, in ``seq`` order.

    ``kind`` is one of ``CHANGE_KINDS``; ``payload`` is JSON (items as dicts,
    ids as strings)."""

    seq: int
    kind: str
    payload: Any
    timestamp: int


CHANGE_KINDS = (
    "items.upsert",
    "items.delete",
    "users.delete",
    "model.reload",
    "model.promote",
    "experiments.changed",
)


@dataclass(frozen=True)
class Step:
    """A recent interaction of a user with an item."""

    item_id: str
    type: str
    timestamp: int


class StateStore(ABC):
    """What every backend implements; ``tests/test_serving_store.py`` holds them to it."""

    @abstractmethod
    def append_events(self, events: list[Event]) -> int:
        """Durably log ``events`` (skipping event ids already logged) and add their
        item steps to the users' recent steps; returns how many were new. Either
        the whole batch is stored or none of it."""

    @abstractmethod
    def events(self, after: int = 0, limit: int = 10_000) -> list[tuple[int, Event]]:
        """Logged events in arrival order with their sequence numbers, after ``after``."""

    @abstractmethod
    def event_count(self) -> int: ...

    @abstractmethod
    def recent(self, user_id: str, n: int = RECENT_STEPS) -> list[Step]:
        """The user's last ``n`` item steps, oldest first."""

    @abstractmethod
    def put_batch(self, recommendations: dict[str, list[tuple[str, float]]]) -> None:
        """Store precomputed (item id, score) lists, best first, replacing older ones."""

    @abstractmethod
    def batch(self, user_id: str) -> list[tuple[str, float]] | None:
        """The user's precomputed list, or None."""

    @abstractmethod
    def incr(self, counter: str, by: int = 1) -> int:
        """Add to a shared counter; returns its new value."""

    @abstractmethod
    def counter(self, counter: str) -> int: ...

    @abstractmethod
    def delete_user(self, user_id: str) -> int:
        """Forget the user everywhere: events, recent steps, batch list,
        impressions. Returns how many events were removed."""

    @abstractmethod
    def append_impressions(self, impressions: list[Impression]) -> None:
        """Durably log ``impressions`` (one write for the batch)."""

    @abstractmethod
    def impressions(self, after: int = 0, limit: int = 10_000) -> list[tuple[int, Impression]]:
        """Logged impressions in arrival order with their sequence numbers, after ``after``."""

    @abstractmethod
    def put_document(self, collection: str, name: str, document: dict[str, Any]) -> None:
        """Store a small JSON document (an experiment), replacing one of that name."""

    @abstractmethod
    def documents(self, collection: str) -> dict[str, dict[str, Any]]:
        """Every document of ``collection``, by name."""

    @abstractmethod
    def claim(self, key: str, owner: str) -> str:
        """Make ``owner`` the holder of ``key`` if nobody holds it, atomically
        (two processes claiming at once get one holder); returns the holder."""

    @abstractmethod
    def release(self, key: str, owner: str) -> None:
        """Let go of ``key`` if ``owner`` holds it."""

    @abstractmethod
    def append_change(self, kind: str, payload: Any) -> int:
        """Durably add an entry to the change log; returns its sequence number
        (1, 2, 3, … with no gaps: a replica that has applied ``n`` has applied
        exactly the first ``n``)."""

    @abstractmethod
    def changes(self, after: int = 0, limit: int = 1000) -> list[Change]:
        """Change log entries after sequence number ``after``, oldest first."""

    @abstractmethod
    def last_change(self) -> int:
        """The sequence number of the newest change (0 for none): one cheap read,
        made before every request that depends on the log."""

    @abstractmethod
    def close(self) -> None: ...


def unavailable_on(*errors: type[Exception]) -> Callable[[StoreClass], StoreClass]:
    """Class decorator for a backend: its public methods raise ``StoreUnavailable``
    where the client library raises one of ``errors`` (connection refused, a
    timeout, a locked database), so callers need to know no backend's errors."""

    def translate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def translated(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except errors as e:
                raise StoreUnavailable(f"state store unavailable: {e}") from None

        return translated

    def decorate(cls: StoreClass) -> StoreClass:
        for name, member in list(vars(cls).items()):
            if callable(member) and not name.startswith("_"):
                setattr(cls, name, translate(member))
        return cls

    return decorate


def open_store(url: str) -> StateStore:
    """``sqlite:///path/state.db`` (or a plain path) or ``redis://host:port/db``."""
    if url.startswith("redis://"):
        from shopsense.serving.store_redis import RedisStore

        return RedisStore(url)
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    if "://" in path:
        raise ShopsenseError(f"unknown store {url!r}: use sqlite:///PATH or redis://HOST:PORT/DB")
    from shopsense.serving.store_sqlite import SQLiteStore

    return SQLiteStore(path)
