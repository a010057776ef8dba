"""Searches on several threads at once, and index changes between them."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from shopsense.concurrency import SharedLock
from shopsense.lru import LRUCache
from shopsense.search.engine import build_index


def test_readers_share_the_lock_and_a_writer_has_it_alone():
    lock = SharedLock()
    inside, most, writer_saw = [0], [0], []
    guard = threading.Lock()
    both_in = threading.Barrier(2, timeout=5)

    def read() -> None:
        with lock.shared():
            with guard:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            both_in.wait()  # fails unless two readers are inside together
            with guard:
                inside[0] -= 1

    def write() -> None:
        with lock.exclusive():
            writer_saw.append(inside[0])

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    for t in readers:
        t.join()
    assert most[0] == 2
    with lock.shared():
        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.1)
        assert writer.is_alive() and not writer_saw  # waits for the reader
    writer.join(timeout=5)
    assert writer_saw == [0]


def test_a_waiting_writer_goes_before_new_readers():
    lock, order = SharedLock(), []
    with lock.shared():
        writer = threading.Thread(target=lambda: _note(lock.exclusive(), order, "write"))
        writer.start()
        time.sleep(0.1)
        reader = threading.Thread(target=lambda: _note(lock.shared(), order, "read"))
        reader.start()
        time.sleep(0.1)
        assert order == []
    writer.join(timeout=5)
    reader.join(timeout=5)
    assert order == ["write", "read"]


def _note(held, order: list[str], what: str) -> None:
    with held:
        order.append(what)


def test_lru_cache_shared_between_threads_stays_bounded_and_right():
    cache: LRUCache[int, int] = LRUCache(64)

    def use(start: int) -> None:
        for i in range(5000):
            key = (start + i) % 200
            assert cache.get(key, lambda k: k * 2) == key * 2

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(use, range(0, 400, 100)))
    assert len(cache) <= 64


def test_searches_on_many_threads_while_items_change(store, tmp_path):
    engine = build_index(store.items.head(300), tmp_path / "index", semantic=False)
    words = [t.split()[0] for t in store.items["title"].head(300)]
    alone = {w: [h.item_id for h in engine.search(w, per_page=20).hits] for w in words[:40]}
    engine.clear_caches()
    stop = threading.Event()

    def change() -> None:
        i = 0
        while not stop.is_set():
            item = {"item_id": [f"new{i}"], "title": [f"Zorblax qwyxz {i}"], "price": [1.0]}
            engine.upsert(pd.DataFrame(item))
            engine.delete([f"new{i}"])
            i += 1

    def search(word: str) -> list[str]:
        return [h.item_id for h in engine.search(word, per_page=20).hits]

    asked = list(alone) * 3
    changer = threading.Thread(target=change)
    changer.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            found = list(pool.map(search, asked))
    finally:
        stop.set()
        changer.join()
    # Every search answered, and answered as it would be alone (the changes
    # come and go, and no title of the store mentions "Zorblax" or "qwyxz").
    assert found == [alone[w] for w in asked]
