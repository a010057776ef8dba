"""What a client may send and how often (``shopsense.serving.limits``): hostile
requests are refused in milliseconds while the worker keeps answering, strict
JSON, short error bodies, a counted JSON 500, the rate limit, CORS, the
storefront's headers and the admin key's comparison."""

from __future__ import annotations

import json
import re
import socket
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from shopsense.models.registry import create_model
from shopsense.serving.app import create_app
from shopsense.serving.service import ServiceSettings
from tests.serving_helpers import free_port, start_server

KEY = "limits-key"
ADMIN = {"Authorization": f"Bearer {KEY}"}
JSON = {"Content-Type": "application/json"}
FAST = 0.5  # seconds: a refusal takes milliseconds; the old code took 15-30 s
RESPONSIVE = 0.5  # seconds for /health/live while hostile requests are in hand


@pytest.fixture(scope="module")
def models(store, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("limits") / "models"
    create_model("pop").fit(store).save(root / "v0001")
    return root


def make_client(store_dir: Path, models: Path, state: Path, **overrides) -> TestClient:
    settings = ServiceSettings(
        data=store_dir, models=models, state=str(state), api_key=KEY, watch_seconds=0
    )
    for name, value in overrides.items():
        setattr(settings, name, value)
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def client(store_dir, models, tmp_path):
    with make_client(store_dir, models, tmp_path / "state.db") as c:
        yield c


def an_event(store) -> dict:
    return {"user_id": "u1", "type": "view", "item_id": str(store.items["item_id"].iloc[0])}


# ----------------------------------------------------------------- in process
def test_nan_infinity_and_lone_surrogates_are_422_not_500(client, store):
    item = an_event(store)["item_id"]
    bodies = [
        b'{"user_id": "u", "type": "view", "item_id": "%s", "timestamp": NaN}',
        b'{"user_id": "u", "type": "view", "item_id": "%s", "timestamp": Infinity}',
        b'[{"user_id": "u", "type": "view", "item_id": "%s", "timestamp": -Infinity}]',
        b'{"user_id": "\\ud800", "type": "view", "item_id": "%s"}',
        b'{"user_id": "u", "type": "view", "item_id": "%s", "session_id": "a\\udfffb"}',
        b'{"user_id": "\xed\xa0\x80", "type": "view", "item_id": "%s"}',  # UTF-8 of U+D800
        b'{"user_id": "\xff", "type": "view", "item_id": "%s"}',
        b'{"user_id": ' + b"[" * 100_000 + b"]" * 100_000 + b', "item_id": "%s"}',
    ]
    for body in bodies:
        response = client.post("/events", content=body.replace(b"%s", item.encode()), headers=JSON)
        assert response.status_code == 422, body[:80]
        assert response.json()["detail"][0]["loc"] == ["body"]
    nan_price = b'[{"item_id": "n1", "title": "t", "price": NaN}]'
    assert client.put("/items", content=nan_price, headers={**JSON, **ADMIN}).status_code == 422
    paired = {**an_event(store), "user_id": "\U0001f600"}  # sent as the pair \ud83d\ude00
    assert client.post("/events", content=json.dumps(paired), headers=JSON).status_code == 200


def test_error_bodies_never_echo_the_input(client, store):
    """900 KB of ``{}`` came back as an 83 MB 422 after 29 s."""
    many = b"[" + b",".join([b"{}"] * 300_000) + b"]"
    started = time.perf_counter()
    response = client.post("/events", content=many, headers=JSON)
    assert response.status_code == 422 and time.perf_counter() - started < FAST
    assert len(response.content) < 500 and "at most 1000 entries" in response.text
    few = [{"user_id": "x" * 5000, "type": "view", "item_id": "y" * 5000}] * 50
    response = client.post("/events", json=few)
    assert response.status_code == 422 and len(response.content) < 10_000
    assert all(set(error) == {"loc", "msg", "type"} for error in response.json()["detail"])
    assert "x" * 200 not in response.text


def test_an_unhandled_error_is_a_counted_json_500(client):
    def fail(*args, **kwargs):
        raise RuntimeError("a bug")

    client.app.state.service.recommender.recommend_with_rules = fail
    response = client.get("/recommendations/someone")
    assert response.status_code == 500 and response.json() == {"detail": "internal server error"}
    metrics = client.get("/metrics").text
    assert 'endpoint="/recommendations/{user_id}",method="GET",status="500"' in metrics


def test_the_admin_key_is_compared_in_constant_time(client, monkeypatch):
    import shopsense.serving.service as app_module

    compared = []
    real = app_module.secrets.compare_digest

    def recording(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(app_module.secrets, "compare_digest", recording)
    for wrong in (b"Bearer wrong", "Bearer é".encode()):  # a non-ASCII key too
        assert client.post("/admin/reload", headers={"Authorization": wrong}).status_code == 401
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers=ADMIN).status_code == 200
    assert len(compared) == 4 and compared[-1] == (KEY.encode(), KEY.encode())


def test_cors_is_off_by_default_and_allows_only_the_configured_origins(
    client, store_dir, models, tmp_path
):
    preflight = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/events", headers=preflight).headers
    assert (
        "access-control-allow-origin"
        not in client.get("/health/live", headers={"Origin": "https://shop.example"}).headers
    )
    with make_client(
        store_dir, models, tmp_path / "cors.db", cors_origins=("https://shop.example",)
    ) as allowed:
        answer = allowed.options(
            "/events", headers={**preflight, "Access-Control-Request-Headers": "content-type"}
        )
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "https://shop.example"
        assert "POST" in answer.headers["access-control-allow-methods"]
        elsewhere = {**preflight, "Origin": "https://evil.example"}
        assert allowed.options("/events", headers=elsewhere).status_code == 400
        live = allowed.get("/health/live", headers={"Origin": "https://shop.example"})
        assert live.headers["access-control-allow-origin"] == "https://shop.example"


def test_the_storefront_forbids_framing_and_foreign_scripts(client):
    for path in ("/", "/static/app.js", "/static/index.html"):
        headers = client.get(path).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert "default-src 'self'" in headers["content-security-policy"], path
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"]
    # The API docs load Swagger UI from its CDN: no storefront policy there.
    assert "content-security-policy" not in client.get("/docs").headers


def test_the_spec_declares_what_the_service_answers(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [("/items", "put"), ("/users/{user_id}", "delete"),
                         ("/admin/reload", "post")]:  # fmt: skip
        assert "401" in paths[path][method]["responses"], path
    for path in ("/items/{item_id}/similar", "/search", "/suggest", "/events"):
        method = "post" if path == "/events" else "get"
        assert "404" in paths[path][method]["responses"], path
    for operation in (o for methods in paths.values() for o in methods.values()):
        assert {"413", "422", "429", "431"} <= set(operation["responses"])
    attribute = next(p for p in paths["/search"]["get"]["parameters"] if p["name"] == "attribute")
    pattern = re.compile(attribute["schema"]["items"]["pattern"])
    assert pattern.match("color:red") and pattern.match("a:b:c")
    assert not any(pattern.match(bad) for bad in ("", ":", "a:", ":b", "teal"))


# ----------------------------------------------------------------- a real server
@pytest.fixture(scope="module")
def server(store_dir, models, tmp_path_factory):
    port = free_port()
    process = start_server(store_dir, models, tmp_path_factory.mktemp("srv") / "s.db", port)
    yield port
    process.terminate()
    process.wait(timeout=30)


def raw_status(port: int, request: bytes, chunks: int = 0) -> int:
    """Send a request over a bare socket and return the answer's status; with
    ``chunks``, that many 64 KiB chunks of a chunked body follow from another
    thread, never ended (a server that waits for the end of it hangs)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)

        def stream() -> None:
            chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
            try:
                for _ in range(chunks):
                    sock.sendall(chunk)
            except OSError:
                pass  # the server answered and closed

        threading.Thread(target=stream, daemon=True).start()
        answer = b""
        while b"\r\n" not in answer:
            got = sock.recv(4096)
            if not got:
                break
            answer += got
    return int(answer.split(b" ", 2)[1])


def test_hostile_requests_are_refused_fast_while_the_worker_stays_responsive(server, store):
    port = server
    item = an_event(store)["item_id"]
    request = b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"

    def post(body: bytes) -> bytes:
        return request + b"Content-Length: %d\r\n\r\n" % len(body) + body

    get = b"GET /health/live HTTP/1.1\r\nHost: x\r\n"
    many = b"[" + b",".join([b"{}"] * 300_000) + b"]"  # 900 KB
    surrogate = b'{"user_id": "\\ud800", "type": "view", "item_id": "%s"}' % item.encode()
    hostile = {  # name: (what is sent, 64 KiB chunks streamed after it, the status due)
        "900 KB of {}": (post(many), 0, 422),
        "20 MB chunked, never ended": (request + b"Transfer-Encoding: chunked\r\n\r\n", 320, 413),
        "Content-Length 20 MB": (request + b"Content-Length: 20000000\r\n\r\n", 0, 413),
        "1 MB header": (get + b"X-Big: " + b"a" * (1 << 20) + b"\r\n\r\n", 0, 431),
        "32 MB header": (get + b"X-Big: " + b"a" * (32 << 20) + b"\r\n\r\n", 0, 431),
        "10,000 headers": (
            get + b"".join(b"X-%d: v\r\n" % n for n in range(10_000)) + b"\r\n",
            0,
            431,
        ),
        "NaN": (post(b'{"user_id": NaN}'), 0, 422),
        "lone surrogate": (post(surrogate), 0, 422),
    }
    live: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            while not done.is_set():
                started = time.perf_counter()
                ok = c.get("/health/live").status_code == 200
                live.append(time.perf_counter() - started if ok else float("inf"))
                time.sleep(0.005)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    while not live:
        time.sleep(0.01)
    took: dict[str, list[float]] = {name: [] for name in hostile}
    until = time.monotonic() + 2  # a second or two of hostile requests, one after another
    try:
        while time.monotonic() < until:
            for name, (sent, chunks, expected) in hostile.items():
                started = time.perf_counter()
                assert raw_status(port, sent, chunks) == expected, name
                took[name].append(time.perf_counter() - started)
    finally:
        done.set()
        prober.join(timeout=10)
    print(
        {
            name: f"median {1000 * statistics.median(t):.1f} ms, max {1000 * max(t):.1f} ms"
            for name, t in took.items()
        }
    )
    print(f"/health/live meanwhile: {len(live)} probes, max {1000 * max(live):.1f} ms")
    assert all(max(t) < FAST for t in took.values()), took
    assert len(live) > 20 and max(live) < RESPONSIVE


def test_the_rate_limit_holds_across_two_workers(store_dir, models, tmp_path):
    """20 a second per client for the service: each of two workers allows 10
    a second and a burst of 20; fresh connections spread over both."""
    port = free_port()
    process = start_server(store_dir, models, tmp_path / "s.db", port, "--workers", "2",
                           "--rate-limit", "20", "--rate-limit-exempt", "")  # fmt: skip
    try:
        statuses, waits = [], []
        started = time.monotonic()
        fresh = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", limits=fresh, timeout=10) as c:
            for _ in range(150):
                response = c.get("/recommendations", params={"k": 1})
                statuses.append(response.status_code)
                if response.status_code == 429:
                    waits.append(int(response.headers["retry-after"]))
            elapsed = time.monotonic() - started
            assert all(c.get("/health/live").status_code == 200 for _ in range(50))
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert set(statuses) == {200, 429} and waits and min(waits) >= 1
    assert 20 <= statuses.count(200) <= 40 + 20 * elapsed + 2
