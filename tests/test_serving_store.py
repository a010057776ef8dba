"""One behavioural suite that every state store backend passes."""

from __future__ import annotations

import uuid

import pytest

from shopsense.errors import ShopsenseError
from shopsense.serving.store import RECENT_STEPS, Event, Impression, open_store


@pytest.fixture(params=["sqlite", "redis"])
def state(request, tmp_path):
    if request.param == "sqlite":
        store = open_store(str(tmp_path / "state.db"))
    else:
        import redis

        url = request.getfixturevalue("redis_url")
        redis.Redis.from_url(url).flushdb()
        store = open_store(url)
    yield store
    store.close()


def event(user: str, item: str | None, kind: str = "view", ts: int = 1, **extra) -> Event:
    return Event(uuid.uuid4().hex, user, kind, ts, item, **extra)


def test_events_are_logged_once_in_arrival_order(state):
    first = [event("u1", "a"), event("u1", "b", "cart"), event("u2", None, "search", query="tv")]
    assert state.append_events(first) == 3
    assert state.append_events([*first[1:], event("u2", "c")]) == 1  # retries are skipped
    logged = state.events()
    assert [e for _, e in logged][:3] == first
    assert logged[3][1].item_id == "c"
    seqs = [s for s, _ in logged]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert state.event_count() == 4
    assert [e.item_id for _, e in state.events(after=seqs[1])] == [None, "c"]


def test_recent_steps_keep_the_last_ones_oldest_first(state):
    state.append_events([event("u", f"i{n}", ts=n) for n in range(RECENT_STEPS + 5)])
    steps = state.recent("u")
    assert len(steps) == RECENT_STEPS
    assert steps[0].item_id == "i5" and steps[-1].item_id == f"i{RECENT_STEPS + 4}"
    assert [s.item_id for s in state.recent("u", 2)] == [
        f"i{RECENT_STEPS + 3}",
        f"i{RECENT_STEPS + 4}",
    ]
    assert state.recent("nobody") == []


def test_searches_are_logged_but_are_not_steps(state):
    state.append_events([event("u", None, "search", query="shoes", request_id="r1")])
    assert state.recent("u") == []
    assert state.events()[0][1].request_id == "r1"


def test_batch_lists_replace_older_ones(state):
    state.put_batch({"u1": [("a", 2.0), ("b", 1.0)], "u2": [("c", 0.5)]})
    state.put_batch({"u1": [("d", 3.0)]})
    assert state.batch("u1") == [("d", 3.0)]
    assert state.batch("u2") == [("c", 0.5)]
    assert state.batch("u3") is None


def test_counters_are_shared_totals(state):
    assert state.counter("events") == 0
    assert state.incr("events", 5) == 5
    assert state.incr("events") == 6
    assert state.counter("events") == 6


def test_deleting_a_user_forgets_them_everywhere(state):
    state.append_events([event("gone", "a"), event("gone", "b"), event("kept", "a")])
    state.put_batch({"gone": [("x", 1.0)], "kept": [("y", 1.0)]})
    assert state.delete_user("gone") == 2
    assert state.recent("gone") == [] and state.batch("gone") is None
    assert [e.user_id for _, e in state.events()] == ["kept"]
    assert state.batch("kept") == [("y", 1.0)] and len(state.recent("kept")) == 1


def test_impressions_are_logged_in_order_and_go_with_their_user(state):
    shown = [
        Impression("r1", "recommendations", 10, ("a", "b"), user_id="u1", model_version="v1",
                   experiment="exp", arm="control"),
        Impression("r2", "search", 11, ("c",), session_id="s9", query="tea", teams=("b",)),
        Impression("r3", "similar", 12, (), user_id="u2"),
    ]  # fmt: skip
    state.append_impressions(shown[:2])
    state.append_impressions(shown[2:])
    logged = state.impressions()
    assert [i for _, i in logged] == shown
    seqs = [s for s, _ in logged]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert [i.request_id for _, i in state.impressions(after=seqs[0], limit=1)] == ["r2"]
    state.delete_user("u1")
    assert [i.request_id for _, i in state.impressions()] == ["r2", "r3"]


def test_events_keep_their_value(state):
    state.append_events([event("u", "a", "purchase", value=12.5), event("u", "b")])
    assert [e.value for _, e in state.events()] == [12.5, None]


def test_documents_are_replaced_by_name_within_their_collection(state):
    assert state.documents("experiments") == {}
    state.put_document("experiments", "e1", {"arms": ["a", "b"], "share": 0.5})
    state.put_document("experiments", "e2", {"arms": []})
    state.put_document("experiments", "e1", {"arms": ["a"], "name": "Ä"})
    state.put_document("other", "e1", {"x": 1})
    assert state.documents("experiments") == {"e1": {"arms": ["a"], "name": "Ä"},
                                              "e2": {"arms": []}}  # fmt: skip


def test_a_sqlite_store_from_before_event_values_gains_the_column(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL "
        "UNIQUE, user_id TEXT NOT NULL, type TEXT NOT NULL, timestamp INTEGER NOT NULL, "
        "item_id TEXT, session_id TEXT, query TEXT, request_id TEXT)"
    )
    old.execute("INSERT INTO events VALUES (1, 'e', 'u', 'view', 1, 'a', NULL, NULL, NULL)")
    old.commit()
    old.close()
    store = open_store(str(path))
    store.append_events([event("u", "b", "purchase", value=3.0)])
    first = store.events()[0][1]
    assert (first.event_id, first.value) == ("e", None)
    assert store.events()[1][1].value == 3.0
    store.close()


def test_a_second_connection_sees_the_same_state(state, tmp_path):
    state.append_events([event("u", "a")])
    url = str(state.path) if hasattr(state, "path") else state.url
    other = open_store(url)
    assert other.event_count() == 1 and other.recent("u")[0].item_id == "a"
    other.close()


def test_unknown_store_urls_are_a_clear_error():
    with pytest.raises(ShopsenseError, match="unknown store"):
        open_store("mongodb://localhost")


def test_sqlite_writes_from_many_threads_all_land_and_a_failed_one_blocks_none(tmp_path):
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    store = open_store(str(tmp_path / "state.db"))
    with pytest.raises(sqlite3.Error):  # a value SQLite cannot store: rolled back
        store.append_events([event("u", "a"), event("u", "b", ts=object())])
    assert store.event_count() == 0
    batches = [[event(f"u{t}", f"i{n}") for n in range(50)] for t in range(8)]
    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(store.append_events, batches)) == 400
    assert store.event_count() == 400
    store.close()


def test_the_change_log_numbers_entries_without_gaps_and_keeps_their_order(state):
    assert state.last_change() == 0 and state.changes() == []
    assert state.append_change("items.upsert", [{"item_id": "a", "title": "Ä"}]) == 1
    assert state.append_change("users.delete", "u1") == 2
    assert state.append_change("items.delete", ["a"]) == 3
    assert state.last_change() == 3
    log = state.changes()
    assert [(c.seq, c.kind) for c in log] == [(1, "items.upsert"), (2, "users.delete"),
                                              (3, "items.delete")]  # fmt: skip
    assert log[0].payload == [{"item_id": "a", "title": "Ä"}] and log[1].payload == "u1"
    assert [c.seq for c in state.changes(after=1)] == [2, 3]
    assert [c.seq for c in state.changes(after=1, limit=1)] == [2]
    assert state.changes(after=3) == []


def test_change_log_appends_from_many_threads_get_distinct_consecutive_numbers(state):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        seqs = list(pool.map(lambda n: state.append_change("items.delete", [str(n)]), range(40)))
    assert sorted(seqs) == list(range(1, 41))
    assert sorted(c.payload[0] for c in state.changes()) == sorted(str(n) for n in range(40))


def test_a_claim_has_one_holder_however_many_ask_at_once(state):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        holders = list(pool.map(lambda n: state.claim("placement", f"owner{n}"), range(16)))
    assert len(set(holders)) == 1 and holders[0].startswith("owner")
    state.release("placement", "somebody else")  # only the holder lets go
    assert state.claim("placement", "late") == holders[0]
    state.release("placement", holders[0])
    assert state.claim("placement", "late") == "late"
