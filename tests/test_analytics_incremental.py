"""The analytics a worker keeps between calls (both state backends): figures
read over several appends equal a fresh computation of the whole store, even
where an impression is stored after the events that name it; a store emptied
or a user erased is read anew; calls that come together share one
computation, and wait for it without holding up other requests."""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from typing import Any

from shopsense.serving import analytics
from shopsense.serving.analytics import LiveAnalytics, store_analytics
from shopsense.serving.experiment_report import experiment_report
from shopsense.serving.experiments import experiments
from shopsense.serving.store import Event, Impression, StateStore, open_store
from tests.test_analytics import ADMIN, hand_made_log, served, today_at, worker  # noqa: F401

NOW = today_at(6 * 3600)


class CountingStore:
    """A store that counts the log rows read from it."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.rows_read = 0

    def events(self, after: int = 0, limit: int = 10_000) -> list:
        page = self.store.events(after=after, limit=limit)
        self.rows_read += len(page)
        return page

    def impressions(self, after: int = 0, limit: int = 10_000) -> list:
        page = self.store.impressions(after=after, limit=limit)
        self.rows_read += len(page)
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def same(a: Any, b: Any, path: str = "") -> None:
    """Equal, floats to rounding (sums taken in another order)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for n, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{n}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15), (path, a, b)
    else:
        assert a == b, (path, a, b)


def check_against_fresh(live: LiveAnalytics, store: StateStore, days: int = 14) -> dict:
    with live.lock:
        kept = live.figures(days=days, now=NOW).model_dump(mode="json")
    fresh = store_analytics(store, days=days, now=NOW).model_dump(mode="json")
    same(kept, fresh)
    for experiment in experiments(store).values():
        same(
            experiment_report(store, experiment, log=live.log_),
            experiment_report(store, experiment),
        )
    return kept


def shown(n: int, user: str, at: int, items: str, arm: str | None = None, **more) -> Impression:
    return Impression(f"q{n}", more.pop("placement", "recommendations"), at, tuple(items), user,
                      None, "v0001", "exp" if arm else None, arm, None, **more)  # fmt: skip


def did(n: int, kind: str, user: str, at: int, item: str, request: str | None = None,
        value: float | None = None) -> Event:  # fmt: skip
    return Event(f"x{n}", user, kind, at, item, None, None, request, value)


def test_figures_kept_over_appends_equal_a_fresh_computation(state):
    """The hand-made log's experiment ``exp``, and u7, u8 in its arms."""
    store = open_store(state)
    counting = CountingStore(store)
    live = LiveAnalytics(counting)  # type: ignore[arg-type]
    t = today_at(3600)
    first = check_against_fresh(live, store)
    assert first["placements"][0]["impressions"] == 0
    log = live.log_

    hand_made_log(store)
    # events before their impressions: a click naming q1 and a purchase that q2 will explain
    store.append_events([did(1, "click", "u7", t + 5, "a", "q1"), did(2, "purchase", "u7", t + 50,
                         "b", value=12.5), did(3, "view", "u7", t + 4, "a")])  # fmt: skip
    check_against_fresh(live, store)
    store.append_impressions([shown(1, "u7", t, "ab", "control"),
                              shown(2, "u7", t + 20, "b", "treatment")])  # fmt: skip
    store.append_events([did(4, "click", "u7", t + 6, "a", "q1"),  # repeated: not counted again
                         did(5, "cart", "u8", t + 30, "c", "q3")])  # fmt: skip
    kept = check_against_fresh(live, store)
    before = {(a["experiment"], a["arm"]): a for a in kept["placements"][0]["arms"]}
    assert before["exp", "control"]["clicks"] == 1 + 1  # the hand-made one, u7's before q1
    store.append_impressions([
        shown(3, "u8", t + 25, "cd", "treatment"),
        shown(4, "u8", t, "zz", placement="search", query="Lamp"),
    ])  # fmt: skip
    read_before = counting.rows_read
    later = check_against_fresh(live, store)
    assert counting.rows_read - read_before <= 2 + 2  # the new rows, and the last row of each log
    assert live.log_ is log  # kept, not read anew
    check_against_fresh(live, store, days=1)

    arms = {(a["experiment"], a["arm"]): a for a in later["placements"][0]["arms"]}
    assert arms["exp", "control"]["clicks"] == before["exp", "control"]["clicks"]
    # u8's cart, credited by name once q3 came
    assert arms["exp", "treatment"]["carts"] == before["exp", "treatment"]["carts"] + 1
    assert before["exp", "treatment"]["revenue"] == 10.0 + 12.5  # u7's purchase went to q2


def empty(state: str) -> None:
    """Delete every event and impression behind the store's back, numbering anew."""
    if state.startswith("redis://"):
        import redis

        redis.Redis.from_url(state).flushdb()
        return
    with sqlite3.connect(state) as db:
        db.execute("DELETE FROM events")
        db.execute("DELETE FROM impressions")
        db.execute("DELETE FROM recent")
        db.execute("DELETE FROM sqlite_sequence WHERE name IN ('events', 'impressions')")


def test_a_store_emptied_or_a_user_erased_is_read_anew(state):
    store = open_store(state)
    impressions = hand_made_log(store)
    store.append_impressions(
        [shown(1, "u9", today_at(90), "ab"), shown(2, "u1", today_at(95), "c")]
    )
    live = LiveAnalytics(store)
    for erased, users in [("u9", 6), ("u3", 5), ("u4", 4)]:  # u9 was shown lists, did nothing
        with live.lock:
            live.figures(now=NOW)
        log = live.log_
        store.delete_user(erased)
        store.append_change("users.delete", erased)
        with live.lock:
            figures = live.figures(now=NOW)
        assert live.log_ is not log
        same(
            figures.model_dump(mode="json"), store_analytics(store, now=NOW).model_dump(mode="json")
        )
        assert figures.placements[0].users == users - 1

    log = live.log_  # u1, u2 and the session s1 left
    empty(state)
    store.append_impressions(impressions[:2])  # more events than were read: numbered anew
    store.append_events([did(n, "click", "u1", today_at(70), "a", "r1") for n in range(30)])
    with live.lock:
        anew = live.figures(now=NOW).model_dump(mode="json")
    assert live.log_ is not log
    same(anew, store_analytics(store, now=NOW).model_dump(mode="json"))


def test_calls_together_share_one_computation_and_wait_off_the_request_path(
    served,  # noqa: F811
    store_dir,
    tmp_path,
    monkeypatch,
):
    state = str(tmp_path / "state.db")
    hand_made_log(open_store(state))
    made: list[int] = []
    real = analytics.store_analytics

    def slow(*args, **kwargs):
        made.append(1)
        time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(analytics, "store_analytics", slow)
    with worker(served, store_dir, state) as client:
        answers: list = []
        calls = [threading.Thread(target=lambda: answers.append(
            client.get("/admin/analytics/data", headers=ADMIN))) for _ in range(4)]  # fmt: skip
        for call in calls:
            call.start()
        time.sleep(0.3)
        started = time.perf_counter()
        assert client.get("/health/live").status_code == 200
        health = time.perf_counter() - started
        for call in calls:
            call.join()
        assert [a.status_code for a in answers] == [200] * 4
        assert len({a.text for a in answers}) == 1
        assert len(made) == 1
        assert health < 0.5  # answered while the figures were being made
        open_store(state).append_events([did(9, "click", "u1", today_at(70), "c", "r1")])
        again = client.get("/admin/analytics/data", headers=ADMIN).json()
    assert len(made) == 2  # the log grew: made again
    assert again["placements"][0]["clicks"] == answers[0].json()["placements"][0]["clicks"] + 1
