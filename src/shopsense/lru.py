"""A bounded least-recently-used map, for per-instance caches that must be
cleared when what they were computed from changes (``functools.lru_cache``
holds one cache per function, not per object)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, make: Callable[[K], V]) -> V:
        """The value for ``key``, made by ``make(key)`` on a miss; the least
        recently used entry goes once there are more than ``size``."""
        value = self._items.get(key)
        if value is None:
            value = self._items[key] = make(key)
            if len(self._items) > self.size:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(key)
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
