"""The service's state behind one small interface, one file per backend.

A store keeps the durable event log (each event once, by its idempotency
key), every user's recent steps (the live session the online models read),
precomputed batch recommendations and shared counters. Several API processes
or machines that open the same store share that state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

from shopsense.errors import ShopsenseError

RECENT_STEPS = 50


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        """Forget the user everywhere: events, recent steps, batch list. Returns
        how many events were removed."""

    @abstractmethod
    def close(self) -> None: ...


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
