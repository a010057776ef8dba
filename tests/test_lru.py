"""The bounded LRU map behind the query, plan and title caches."""

from shopsense.lru import LRUCache


def test_lru_makes_once_and_drops_the_least_recently_used():
    made: list[str] = []

    def make(key: str) -> str:
        made.append(key)
        return key.upper()

    cache: LRUCache[str, str] = LRUCache(2)
    assert cache.get("a", make) == "A" and cache.get("b", make) == "B"
    assert cache.get("a", make) == "A"  # a hit, and now the most recent
    cache.get("c", make)  # evicts b
    assert len(cache) == 2 and made == ["a", "b", "c"]
    cache.get("b", make)
    assert made[-1] == "b"
    cache.clear()
    assert len(cache) == 0
