"""The HTTP service in process: recommendations, search, events, admin, batch, reload."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import anyio
import numpy as np
import pytest
from fastapi.testclient import TestClient

from shopsense.compute import usable_cores
from shopsense.data.schema import category_leaf
from shopsense.models.registry import create_model, load_model
from shopsense.search.engine import build_index
from shopsense.serving.app import create_app
from shopsense.serving.batch import precompute
from shopsense.serving.recommendations import ModelBundle
from shopsense.serving.schemas import MAX_EVENTS
from shopsense.serving.service import ServiceSettings, ThreadSlots
from shopsense.serving.store import open_store

KEY = "test-key"
ADMIN = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def served(store, store_dir, tmp_path_factory):
    """A model registry with one version and a lexical search index."""
    root = tmp_path_factory.mktemp("served")
    create_model("itemknn").fit(store).save(root / "models" / "v0001")
    build_index(store.items, root / "index", store.source_events(), semantic=False)
    return {"data": store_dir, "models": root / "models", "index": root / "index", "root": root}


def make_client(served, tmp_path, **overrides) -> TestClient:
    settings = ServiceSettings(
        data=served["data"],
        models=served["models"],
        index=served["index"],
        state=str(tmp_path / "state.db"),
        api_key=KEY,
        watch_seconds=0,
    )
    for name, value in overrides.items():
        setattr(settings, name, value)
    return TestClient(create_app(settings))


@pytest.fixture
def client(served, tmp_path):
    with make_client(served, tmp_path) as c:
        yield c


def known_user(store) -> str:
    counts = np.bincount(store.interactions["user"], minlength=store.n_users)
    return str(store.users["user_id"].iloc[int(np.argmax(counts))])


def test_a_known_user_gets_k_items_with_reasons(client, store):
    user = known_user(store)
    body = client.get(f"/recommendations/{user}", params={"k": 5}).json()
    assert len(body["items"]) == 5 and body["request_id"] and body["model_version"] == "v0001"
    assert all(i["reason"] for i in body["items"])
    assert any(i["reason"].startswith("because you") for i in body["items"])
    seen = set(store.items["item_id"].to_numpy()[store.interactions.query("user == 0")["item"]])
    first = client.get(f"/recommendations/{store.users['user_id'].iloc[0]}").json()["items"]
    assert not seen & {i["item_id"] for i in first}


def test_new_and_anonymous_users_get_popular_items_never_a_404(client, store):
    new = client.get("/recommendations/someone-new", params={"k": 4})
    assert new.status_code == 200 and len(new.json()["items"]) == 4
    assert all(i["reason"].startswith("popular in") for i in new.json()["items"])
    category = store.items["category"].iloc[0].split(" > ")[0]
    anonymous = client.get("/recommendations", params={"k": 6, "category": category}).json()
    assert len(anonymous["items"]) == 6
    assert all(i["category"].startswith(category) for i in anonymous["items"])


def test_live_views_of_one_category_shift_the_next_recommendations(client, store):
    user = known_user(store)
    before = client.get(f"/recommendations/{user}", params={"k": 10}).json()["items"]
    counts = store.items["category"].value_counts()
    shown = {i["category"] for i in before}
    leaf = next(c for c in counts[counts >= 12].index if c not in shown)
    in_leaf = store.items.index[store.items["category"] == leaf][:3]
    events = [
        {"user_id": user, "type": "view", "item_id": store.items["item_id"].iloc[i]}
        for i in in_leaf
    ]
    assert client.post("/events", json=events).json()["accepted"] == 3
    after = client.get(f"/recommendations/{user}", params={"k": 10}).json()["items"]
    share = [sum(i["category"] == leaf for i in items) for items in (before, after)]
    assert share[1] > share[0] and share[1] >= 3
    assert any("because you viewed" in i["reason"] for i in after if i["category"] == leaf)


def test_similar_items_and_unknown_items(client, store):
    item = store.items["item_id"].iloc[3]
    body = client.get(f"/items/{item}/similar", params={"k": 5}).json()
    assert 0 < len(body["items"]) <= 5 and item not in {i["item_id"] for i in body["items"]}
    missing = client.get("/items/no-such-item/similar")
    assert missing.status_code == 404 and "no-such-item" in missing.json()["detail"]


def test_search_filters_facets_and_suggest(client, store):
    brand, title, category = store.items[["brand", "title", "category"]].iloc[0]
    word = title.split()[0]
    leaf = category_leaf(category)  # a query many brands' items match
    body = client.get("/search", params={"q": leaf, "brand": [brand], "per_page": 5}).json()
    assert body["hits"] and all(h["brand"] == brand for h in body["hits"])
    brands = {f["value"] for f in body["facets"]["brand"]}
    assert brand in brands and len(brands) > 1  # disjunctive: other brands still counted
    again = client.get("/search", params={"q": leaf, "brand": [brand], "per_page": 5}).json()
    assert again["from_cache"] and again["hits"] == body["hits"]
    assert 'shopsense_search_cache_total{result="hit"}' in client.get("/metrics").text
    assert client.get("/suggest", params={"q": word[:3]}).json()
    bad = client.get("/search", params={"q": "x", "sort": "cheapest"})
    assert bad.status_code == 422 and "sort" in bad.text


def test_a_search_with_a_user_is_logged_for_click_attribution(client, served, tmp_path, store):
    word = store.items["title"].iloc[0].split()[-2]
    body = client.get("/search", params={"q": word, "user_id": "shopper"}).json()
    logged = open_store(str(tmp_path / "state.db")).events()
    assert logged[-1][1].type == "search" and logged[-1][1].request_id == body["request_id"]


def test_events_are_idempotent_and_bad_ones_are_refused(client, store):
    item = store.items["item_id"].iloc[0]
    one = {"user_id": "u1", "type": "cart", "item_id": item, "event_id": "e-1"}
    assert client.post("/events", json=one).json() == {
        "received": 1,
        "accepted": 1,
        "duplicates": 0,
    }
    assert client.post("/events", json=[one, {**one, "event_id": "e-2"}]).json()["duplicates"] == 1
    wrong_type = client.post("/events", json={**one, "type": "teleport"})
    assert wrong_type.status_code == 422 and "type" in wrong_type.text
    unknown = client.post("/events", json={**one, "item_id": "nope", "event_id": "e-3"})
    assert unknown.status_code == 404 and "not in the catalog" in unknown.text
    assert client.post("/events", json={"user_id": "u", "type": "search"}).status_code == 422
    too_many = [{**one, "event_id": str(n)} for n in range(MAX_EVENTS + 1)]
    assert client.post("/events", json=too_many).status_code == 422
    huge = client.post(
        "/events",
        content=b"[" + b" " * (2 << 20) + b"]",
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    assert (
        client.post(
            "/events", content=b"{not json", headers={"Content-Type": "application/json"}
        ).status_code
        == 422
    )


def test_admin_needs_the_key(client, store):
    assert client.post("/admin/reload").status_code == 401
    assert (
        client.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    assert client.post("/admin/reload", headers=ADMIN).json() == {"model_version": "v0001"}


def test_upserted_items_are_searchable_and_deleted_users_forgotten(client, tmp_path):
    item = {"item_id": "new-1", "title": "Zyzzyva telescope", "price": 99.0, "brand": "Orbit"}
    other = {**item, "item_id": "new-2", "attributes": {"color": "teal"}}
    assert client.put("/items", json=[item, other], headers=ADMIN).json() == {"upserted": 2}
    hits = client.get("/search", params={"q": "zyzzyva"}).json()["hits"]
    assert {h["item_id"] for h in hits[:2]} == {"new-1", "new-2"}
    teal = client.get("/search", params={"q": "zyzzyva", "attribute": "color:teal"}).json()
    assert [h["item_id"] for h in teal["hits"]] == ["new-2"]
    assert client.get("/search", params={"q": "x", "attribute": "teal"}).status_code == 422
    event = {"user_id": "leaver", "type": "view", "item_id": "new-1"}
    assert client.post("/events", json=[event, event]).json()["accepted"] == 2
    gone = client.delete("/users/leaver", headers=ADMIN).json()
    assert gone == {"user_id": "leaver", "events_deleted": 2, "files": {}}
    state = open_store(str(tmp_path / "state.db"))
    assert all(e.user_id != "leaver" for _, e in state.events()) and state.recent("leaver") == []


def test_health_and_metrics(client):
    assert client.get("/health/live").json() == {"status": "ok", "model_version": None}
    assert client.get("/health/ready").json()["status"] == "ready"
    client.get("/recommendations/x")
    text = client.get("/metrics").text
    assert 'shopsense_requests_total{endpoint="/recommendations/{user_id}"' in text
    assert "shopsense_request_seconds_bucket" in text
    assert client.get("/").status_code == 200 and "storefront" in client.get("/").text


def test_batch_lists_are_resumable_and_served_in_batch_mode(served, store, tmp_path):
    bundle = ModelBundle(served["models"] / "v0001", store)
    state = open_store(str(tmp_path / "state.db"))
    out = tmp_path / "batch"
    first = precompute(bundle, state, out, k=20, chunk=100)
    assert first["complete"] and first["users"] == store.n_users
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == -(-store.n_users // 100)
    kept = parts[0].read_bytes()
    parts[-1].unlink()  # an interrupted run: the last part is missing
    precompute(bundle, state, out, k=20, chunk=100)
    assert parts[0].read_bytes() == kept and parts[-1].is_file()
    user = known_user(store)
    stored = [i for i, _ in state.batch(user)]
    model = load_model(served["models"] / "v0001")
    ids, _ = model.recommend(np.array([store.users["user_id"].tolist().index(user)]), k=20)
    assert stored == store.items["item_id"].to_numpy()[ids[0]].tolist()
    with make_client(served, tmp_path, mode="batch") as c:
        body = c.get(f"/recommendations/{user}", params={"k": 5}).json()
        assert [i["item_id"] for i in body["items"]] == stored[:5] and body["mode"] == "batch"
    with make_client(served, tmp_path, mode="hybrid") as c:
        hybrid = c.get(f"/recommendations/{user}", params={"k": 5}).json()["items"]
        assert {i["item_id"] for i in hybrid} <= set(stored)


def test_a_new_version_swaps_in_without_a_failed_request(served, store, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(served["models"], models)
    user = known_user(store)
    failures, done = [], threading.Event()
    with make_client({**served, "models": models}, tmp_path) as c:

        def hammer() -> None:
            while not done.is_set():
                r = c.get(f"/recommendations/{user}", params={"k": 5})
                if r.status_code != 200 or len(r.json()["items"]) != 5:
                    failures.append(r.status_code)

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        for n in range(2, 5):
            create_model("itemknn", k=20 + n).fit(store).save(models / f"v000{n}")
            assert c.post("/admin/reload", headers=ADMIN).json()["model_version"] == f"v000{n}"
        done.set()
        for t in threads:
            t.join()
        assert c.get(f"/recommendations/{user}").json()["model_version"] == "v0004"
    assert failures == []


def test_the_service_runs_on_the_redis_store(served, store, redis_url):
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    with make_client(served, Path("unused"), state=redis_url) as c:
        user = known_user(store)
        item = store.items["item_id"].iloc[5]
        event = {"user_id": user, "type": "view", "item_id": item, "event_id": uuid.uuid4().hex}
        assert c.post("/events", json=[event, event]).json()["accepted"] == 1
        assert c.get(f"/recommendations/{user}").status_code == 200
        assert open_store(redis_url).recent(user)[-1].item_id == item


def test_the_sequential_model_reads_the_live_session(store, tmp_path):
    """Online mode with SASRec: the posted steps join the user's sequence."""
    from shopsense.models.sasrec import SASRec
    from shopsense.serving.recommendations import RecommendationService
    from shopsense.serving.store import Event

    # Trained enough to have learnt the categories: full softmax and no averaging of
    # the weights (an EMA over 40 short epochs stays near where it started).
    learns_fast = {"dropout": 0.3, "loss": "ce", "init": "random", "ema_decay": 0.0}
    model = SASRec(
        hidden=32, layers=1, heads=2, max_len=12, epochs=40, learning_rate=5e-3, **learns_fast
    )
    model.fit(store).save(tmp_path / "m")
    state = open_store(str(tmp_path / "state.db"))
    service = RecommendationService(ModelBundle(tmp_path / "m", store), state, "online")
    user = known_user(store)
    before = service.recommend(user, 10)
    counts = store.items["category"].value_counts()
    leaf = next(c for c in counts[counts >= 12].index if c not in {r.category for r in before})
    rows = store.items.index[store.items["category"] == leaf][:3]
    state.append_events(
        [
            Event(f"e{n}", user, "view", 2_000_000_000 + n, store.items["item_id"][r])
            for n, r in enumerate(rows)
        ]
    )
    after = service.recommend(user, 10)
    assert sum(r.category == leaf for r in after) >= 3
    assert not {store.items["item_id"][r] for r in rows} & {r.item_id for r in after}


def test_a_version_written_to_the_registry_is_picked_up(served, store, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(served["models"], models)
    with make_client({**served, "models": models}, tmp_path, watch_seconds=0.05) as c:
        create_model("itemknn", k=15).fit(store).save(models / "v0002")
        for _ in range(200):
            if c.get("/health/ready").json()["model_version"] == "v0002":
                break
            threading.Event().wait(0.05)
        assert c.get("/recommendations/x").json()["model_version"] == "v0002"


def test_thread_slots_cap_how_many_run_at_once():
    slots = ThreadSlots(2)
    lock = threading.Lock()
    active, peak = [0], [0]

    def work() -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1

    async def many() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(partial(anyio.to_thread.run_sync, work, limiter=slots.limiter()))

    anyio.run(many)
    anyio.run(many)  # another event loop gets its own limiter
    assert peak[0] == 2


def test_recommendations_and_searches_run_at_most_one_per_core_at_once(client, monkeypatch):
    service = client.app.state.service
    lock = threading.Lock()
    active, peak = [0], [0]

    def counted(method):
        def run(*args, **kwargs):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.02)
            try:
                return method(*args, **kwargs)
            finally:
                with lock:
                    active[0] -= 1

        return run

    monkeypatch.setattr(service.recommender, "recommend", counted(service.recommender.recommend))
    monkeypatch.setattr(service.engine, "search", counted(service.engine.search))
    paths = ["/recommendations/someone", "/recommendations", "/search?q=shirt"] * 6
    with ThreadPoolExecutor(len(paths)) as pool:
        codes = list(pool.map(lambda path: client.get(path).status_code, paths))
    assert codes == [200] * len(paths)
    assert peak[0] == usable_cores()
