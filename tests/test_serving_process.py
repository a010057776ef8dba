"""The service as a real process: durability under ``kill -9``, and the
OpenAPI contract checked by schemathesis."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopsense.models.registry import create_model
from shopsense.serving.store import open_store
from tests.serving_helpers import free_port, start_server

EVENTS = 10_000
PER_REQUEST = 50
API_KEY = "k"
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture(scope="module")
def model_dir(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("process") / "models" / "v0001"
    create_model("pop").fit(store).save(out)
    return out.parent


def test_kill_9_loses_no_acknowledged_event_and_duplicates_none(
    store, store_dir, model_dir, tmp_path
):
    state = tmp_path / "state.db"
    port = free_port()
    items = store.items["item_id"].tolist()
    events = [
        {"user_id": f"u{n % 97}", "type": "view", "item_id": items[n % len(items)],
         "event_id": uuid.uuid4().hex}
        for n in range(EVENTS)
    ]  # fmt: skip
    batches = [events[i : i + PER_REQUEST] for i in range(0, EVENTS, PER_REQUEST)]
    acknowledged: list[str] = []
    server = start_server(store_dir, model_dir, state, port)

    def killer() -> None:
        """``kill -9`` from another thread once a third is acknowledged, so it
        lands at an arbitrary point of a request."""
        while len(acknowledged) < EVENTS // 3:
            time.sleep(0.001)
        os.kill(server.pid, signal.SIGKILL)

    threading.Thread(target=killer, daemon=True).start()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for batch in batches:
            try:
                response = client.post("/events", json=batch)
            except httpx.TransportError:
                continue  # not acknowledged: the client would retry it later
            if response.status_code == 200:
                acknowledged.extend(e["event_id"] for e in batch)
    server.wait()
    assert 0 < len(acknowledged) < EVENTS
    logged = [e.event_id for _, e in open_store(str(state)).events(limit=EVENTS * 2)]
    assert set(acknowledged) <= set(logged)
    assert len(logged) == len(set(logged))
    # After a restart the client retries everything; each event is stored once.
    server = start_server(store_dir, model_dir, state, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for batch in batches:
                assert client.post("/events", json=batch).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    logged = [e.event_id for _, e in open_store(str(state)).events(limit=EVENTS * 2)]
    assert len(logged) == EVENTS and set(logged) == {e["event_id"] for e in events}


@pytest.fixture(scope="module")
def api_server(store, store_dir, model_dir, tmp_path_factory):
    """The service as a process, with a search index and an admin key, on
    copies of the dataset and models: generated calls delete users, which
    erases them from the files (the stateful phase feeds it ids /users lists)."""
    import shutil

    from shopsense.search.engine import build_index

    root = tmp_path_factory.mktemp("schemathesis")
    shutil.copytree(store_dir, root / "data")
    shutil.copytree(model_dir, root / "models")
    build_index(store.items, root / "index", store.source_events(), semantic=False)
    (root / "key").write_text(f"{API_KEY}\n")
    port = free_port()
    server = start_server(root / "data", root / "models", root / "state.db", port, "--index",
                          str(root / "index"), "--api-key-file", str(root / "key"))  # fmt: skip
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=30)


KEYS = pytest.mark.parametrize("key", [None, API_KEY], ids=["without the key", "with the key"])


@KEYS
def test_schemathesis_with_every_check_finds_nothing(api_server, key, tmp_path):
    """``schemathesis run --checks all``: every phase (examples, coverage,
    fuzzing, stateful), valid and invalid data, never a 5xx and every answer
    as the spec declares it (a bounded run: 15 cases an operation and phase).
    The hooks keep the one rule JSON Schema cannot state (price_min <= price_max),
    and the config counts 413 (a body over 1 MiB) as the refusal it is."""
    auth = ["--header", f"Authorization: Bearer {key}"] if key else []
    result = subprocess.run(
        [Path(sys.executable).with_name("schemathesis"), "--config-file", SCHEMATHESIS_CONFIG,
         "run", f"{api_server}/openapi.json",
         "--checks", "all", "--workers", "1", "--max-examples", "15", "--no-shrink",
         "--generation-database", "none", *auth],
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    failures = result.stdout[result.stdout.find("FAILURES") :]
    assert result.returncode == 0, failures[:8000] + result.stderr[-2000:]


POISONS = [float("nan"), float("inf"), float("-inf"), "\ud800", "a\udfffb"]


def poisoned(value: Any, data: st.DataObject) -> Any:
    """``value`` with one leaf, or a new entry of an empty container, made
    NaN, an infinity or a string holding a lone surrogate."""
    if isinstance(value, dict) and value:
        key = data.draw(st.sampled_from(sorted(value)))
        return {**value, key: poisoned(value[key], data)}
    if isinstance(value, list) and value:
        i = data.draw(st.integers(0, len(value) - 1))
        return [*value[:i], poisoned(value[i], data), *value[i + 1 :]]
    bad = data.draw(st.sampled_from(POISONS))
    return {"x": bad} if isinstance(value, dict) else [bad] if isinstance(value, list) else bad


@KEYS
def test_generated_nan_and_surrogate_payloads_are_422(api_server, key):
    """Bodies the spec generates, each with one value poisoned, sent escaped
    (``\\ud800``) or as raw UTF-8 of the surrogate: a 422 naming the body, short,
    in the declared shape (the 500s of issue 23)."""
    operations = [
        result.ok()
        for result in schemathesis.openapi.from_url(
            f"{api_server}/openapi.json"
        ).get_all_operations()
    ]
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    with httpx.Client(base_url=api_server, headers=headers, timeout=10) as client:
        with_bodies = [o for o in operations if o.body]
        assert {o.path for o in with_bodies} == {"/events", "/items"}
        for operation in with_bodies:

            @given(case=operation.as_strategy(), data=st.data(), raw=st.booleans())
            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
            def check(case, data, raw: bool) -> None:
                body = poisoned(case.body, data)
                text = json.dumps(body, ensure_ascii=not raw).encode("utf-8", "surrogatepass")
                response = client.request(case.method, case.formatted_path, content=text)
                assert response.status_code == 422, (case.path, text[:200], response.text)
                assert len(response.content) < 1000
                assert [set(e) for e in response.json()["detail"]] == [{"loc", "msg", "type"}]

            check()


def test_workers_share_the_port_and_the_connections(store_dir, model_dir, tmp_path):
    """With ``--workers 2`` each worker listens itself, so a burst of clients
    that connect at once is spread over both (uvicorn's shared socket gave the
    whole burst to one); SIGTERM stops them all."""
    import psutil

    port = free_port()
    server = start_server(store_dir, model_dir, tmp_path / "state.db", port, "--workers", "2")
    try:
        deadline = time.monotonic() + 60
        while True:  # the second worker may start listening later than the first
            children = psutil.Process(server.pid).children()
            workers = [c for c in children if _listening(c, port)]
            if len(workers) == 2:
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        burst = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
        while True:  # until the workers have accepted them all
            held = [sum(c.status == "ESTABLISHED" for c in w.net_connections()) for w in workers]
            if sum(held) == 16 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for connection in burst:
            connection.close()
        assert sum(held) == 16 and min(held) > 0
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)


def _listening(process, port: int) -> bool:
    return any(c.status == "LISTEN" and c.laddr.port == port for c in process.net_connections())


def test_serve_refuses_what_it_cannot_serve_before_starting(store_dir, model_dir, tmp_path, capsys):
    from tests.test_cli import run

    base = ("serve", "--data", str(store_dir), "--models", str(model_dir))
    code, _, err = run(capsys, *base, "--api-key-file", str(tmp_path / "missing"))
    assert code == 1 and "API key file" in err and "not found" in err
    code, _, err = run(capsys, *base, "--workers", "2", "--port", "0")
    assert code == 1 and "fixed --port" in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        code, _, err = run(capsys, *base, "--workers", "2", "--port", port)
    assert code == 1 and f"cannot listen on 127.0.0.1:{port}" in err
