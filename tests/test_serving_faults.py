"""Fault injection on the real service: ``serve --workers 2`` under concurrent
catalogue changes, a restart, a Redis outage under load, and two machines
sharing one Redis. Loopback only; every process here is started and ended by
the test itself, by its id."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from shopsense.models.registry import create_model
from shopsense.search.engine import SearchEngine, build_index
from shopsense.serving.replica import replica_root
from shopsense.serving.store import open_store
from tests.serving_helpers import free_port, start_server

KEY = "fault-key"
ADMIN = {"Authorization": f"Bearer {KEY}"}
STALENESS_SECONDS = 3.0  # FOLLOW_SECONDS (1 s) with room for a loaded CI machine


@pytest.fixture(scope="module")
def served(store, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults")
    create_model("pop").fit(store).save(root / "models" / "v0001")
    build_index(store.items, root / "index", store.source_events(), semantic=False)
    return root


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("SHOPSENSE_API_KEY", KEY)


def serve(served: Path, data: Path, state: str, port: int, *extra: str) -> subprocess.Popen:
    return start_server(data, served / "models", state, port, "--index", str(served / "index"),
                        *extra)  # fmt: skip


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=60)


def item(n: int) -> dict:
    return {"item_id": f"new-{n}", "title": f"Zorblax{n} gadget", "category": "Gadgets"}


def fresh_get(port: int, path: str, **params) -> httpx.Response:
    """A request on a new connection, so the kernel may give it to either worker."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        return client.get(path, params=params)


def state_url(kind: str, request, tmp_path: Path) -> str:
    if kind == "sqlite":
        return str(tmp_path / "state.db")
    import redis

    url = request.getfixturevalue("redis_url")
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_concurrent_catalogue_changes_on_two_workers_reach_every_search(
    served, store_dir, tmp_path, kind, request
):
    state = state_url(kind, request, tmp_path)
    port = free_port()
    server = serve(served, store_dir, state, port, "--workers", "2")
    try:
        base = f"http://127.0.0.1:{port}"

        def put(n: int) -> int:
            with httpx.Client(base_url=base, timeout=30) as client:
                return client.put("/items", json=[item(n)], headers=ADMIN).status_code

        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(put, range(10))) == {200}
        replicas = set()
        for n in range(50):
            response = fresh_get(port, "/search", q=f"zorblax{n % 10} gadget")
            assert response.status_code == 200, response.text
            assert response.json()["hits"][0]["item_id"] == f"new-{n % 10}"
            replicas.add(fresh_get(port, "/health/ready").json()["replica"])
        assert len(replicas) == 2  # both workers were asked
        for name in replicas:  # each worker's own copy: catalogue and lexical index agree
            pid = name.split(":")[1]
            (copy,) = replica_root().glob(f"{pid}-*")
            engine = SearchEngine(copy, semantic=False)
            assert engine.lexical.searcher.num_docs == len(engine.catalog.live_rows)
            assert {f"new-{n}" for n in range(10)} <= set(engine.catalog.row_of)
    finally:
        stop(server)
    server = serve(served, store_dir, state, port, "--workers", "2")
    try:  # after a restart every worker replays the log
        for n in range(20):
            hits = fresh_get(port, "/search", q=f"zorblax{n % 10} gadget").json()["hits"]
            assert hits[0]["item_id"] == f"new-{n % 10}"
    finally:
        stop(server)
    original = SearchEngine(served / "index", semantic=False)
    assert "new-0" not in original.catalog.row_of  # the index it was started with: unwritten
    assert original.lexical.searcher.num_docs == len(original.catalog.live_rows)


def test_a_redis_outage_under_load_answers_503_then_recovers_losing_nothing(
    served, store_dir, store, tmp_path
):
    redis_server = shutil.which("redis-server")
    assert redis_server, "redis-server is needed (apt-get install redis-server)"
    redis_port = free_port()
    command = [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "yes", "--appendfsync", "always",
               "--dir", str(tmp_path)]  # fmt: skip
    redis_process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{redis_port}/0"
    _wait_for_redis(redis_port)
    port = free_port()
    server = serve(served, store_dir, url, port, "--workers", "2")
    items = store.items["item_id"].tolist()
    acknowledged: list[str] = []
    statuses: dict[int, int] = {}
    retry_after: set[str | None] = set()
    stop_load = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            n = 0
            while not stop_load.is_set():
                batch = [{"user_id": f"u{n}", "type": "view", "item_id": items[n % len(items)],
                          "event_id": uuid.uuid4().hex} for n in range(n, n + 5)]  # fmt: skip
                n += 5
                response = client.post("/events", json=batch)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    acknowledged.extend(e["event_id"] for e in batch)
                elif response.status_code == 503:
                    retry_after.add(response.headers.get("retry-after"))
                recommend = client.get(f"/recommendations/u{n}")
                statuses[recommend.status_code] = statuses.get(recommend.status_code, 0) + 1

    try:
        threads = [threading.Thread(target=load) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        redis_process.terminate()  # Redis stops (its AOF is fsynced on every write)
        redis_process.wait(timeout=30)
        time.sleep(2.0)
        during = dict(statuses)
        redis_process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        _wait_for_redis(redis_port)
        time.sleep(2.0)  # the service recovers by itself, without a restart
        after_ok = len(acknowledged)
        time.sleep(1.0)
        stop_load.set()
        for thread in threads:
            thread.join(timeout=60)
        assert len(acknowledged) > after_ok  # still accepting after the outage
        assert during.get(503, 0) > 0 and retry_after == {"1"}
        assert set(statuses) <= {200, 503}, statuses  # never a 500
        logged = {e.event_id for _, e in open_store(url).events(limit=10**6)}
        assert set(acknowledged) <= logged  # no acknowledged event was lost
    finally:
        stop_load.set()
        stop(server)
        redis_process.terminate()
        redis_process.wait(timeout=30)


def _wait_for_redis(port: int) -> None:
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)


def test_two_machines_sharing_redis_see_each_others_catalogue_changes(
    served, store_dir, tmp_path, redis_url
):
    """Two services with their own dataset and index folders (as two machines
    would have) and one Redis: a change made on one is searchable on the other
    within the staleness bound, without a request to the first."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    machines = []
    for name in ("a", "b"):
        root = tmp_path / name
        shutil.copytree(store_dir, root / "data")
        shutil.copytree(served / "index", root / "index")
        shutil.copytree(served / "models", root / "models")
        port = free_port()
        process = start_server(root / "data", root / "models", redis_url, port,
                               "--index", str(root / "index"))  # fmt: skip
        machines.append((process, port))
    try:
        (_, port_a), (_, port_b) = machines
        with httpx.Client(base_url=f"http://127.0.0.1:{port_a}") as a:
            assert a.put("/items", json=[item(7)], headers=ADMIN).status_code == 200
        changed = time.monotonic()
        # b's background follower applies it; poll b's readiness, not its search,
        # so that no request of ours is what makes b catch up.
        while fresh_get(port_b, "/health/ready").json()["changes_applied"] < 1:
            assert time.monotonic() - changed < STALENESS_SECONDS
            time.sleep(0.05)
        assert fresh_get(port_b, "/search", q="zorblax7").json()["hits"][0]["item_id"] == "new-7"
    finally:
        for process, _ in machines:
            stop(process)
