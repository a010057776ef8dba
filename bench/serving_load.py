"""The service under load (issue 6's speed bar).

A synthetic store of 100k users × 50k items; ALS trained on it; a hybrid
search index with a ranker trained on the store's click logs; batch lists
for every user. ``shopsense serve --workers 2`` runs in hybrid mode on
loopback, and a load generator in this process (one asyncio loop, persistent
HTTP/1.1 connections, minimal parsing so it takes little of the CPU it shares
with the server) drives it two ways:

- closed loop, a fixed number of requests in flight: the capacity;
- open loop at the bar's rate (500 recommendations or 200 searches a second,
  each request due at its time whatever the earlier ones are doing, latency
  counted from then): the latency a store sees at that traffic.

Searches are drawn from the store's query log with its frequencies; the cold
passes come first and send each distinct query once with the result cache
empty (half of them closed loop, the other half open loop). Users are drawn
uniformly. Reports requests (or events) per second, p50/p99 latency and the
concurrency or rate for ``/recommendations``, ``/search`` and ``/events``,
and the resident memory of the serving processes.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.common import OUTPUT
from shopsense.compute import usable_cores
from shopsense.data.dataset import Dataset
from shopsense.data.ingest import ingest
from shopsense.data.synthetic import StoreConfig, write_store

USERS, ITEMS = 100_000, 50_000
SECONDS = float(os.environ.get("SHOPSENSE_LOAD_SECONDS", 20))
CACHE = Path(os.environ.get("SHOPSENSE_EMBEDDING_CACHE", OUTPUT / "cache" / "embeddings"))
EVENTS_PER_REQUEST = 500


async def _request(reader, writer, method: str, path: str, body: bytes | None) -> tuple[int, bool]:
    """(status, whether a search was answered from the engine's result cache)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    writer.write(head.encode() + b"\r\n" + (body or b""))
    await writer.drain()
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("the server closed the connection")
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    answer = await reader.readexactly(length)
    return int(status_line.split()[1]), b'"from_cache":true' in answer


async def _load(
    port: int, requests: list[tuple[str, str, Any]], concurrency: int, once: bool = False
) -> dict:
    """Send ``requests`` round-robin for ``SECONDS`` (``once``: each of them once,
    however long that takes) with ``concurrency`` in flight."""
    latencies: list[float] = []
    failures = ok = cached = 0
    deadline = time.perf_counter() + (float("inf") if once else SECONDS)
    counter = iter(range(len(requests) if once else 10**9))

    async def worker() -> None:
        nonlocal failures, ok, cached
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            turn = next(counter, None)
            if turn is None:
                break
            method, path, body = requests[turn % len(requests)]
            if callable(body):
                body = body()  # a fresh event batch: every event new
            started = time.perf_counter()
            status, hit = await _request(reader, writer, method, path, body)
            latencies.append(time.perf_counter() - started)
            cached += hit
            failures += status != 200
            ok += status == 200
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"concurrency": concurrency, **_summary(latencies, ok, failures, cached, elapsed)}


async def _load_at_rate(
    port: int, requests: list[tuple[str, str, Any]], rate: float, count: int
) -> dict:
    """Open loop: send ``count`` of ``requests`` in turn, request i due at
    i / ``rate`` seconds, whatever the earlier ones are doing (a new connection
    when none is idle). Latency counts from when a request was due, so a server
    that falls behind shows it (no coordinated omission, as in wrk2)."""
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(16)]
    opened = len(idle)  # connections opened in all
    latencies: list[float] = []
    failures = ok = cached = 0

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        nonlocal opened
        opened += 1
        return await asyncio.open_connection("127.0.0.1", port)

    async def one(turn: int, due: float) -> None:
        nonlocal failures, ok, cached
        connection = idle.pop() if idle else await connect()
        method, path, body = requests[turn % len(requests)]
        try:
            status, hit = await _request(*connection, method, path, body)
        except (ConnectionError, asyncio.IncompleteReadError):
            # A pooled connection the server closed while it sat idle (keep-alive
            # timeout): as an HTTP client's pool does, retry once on a new one.
            connection[1].close()
            connection = await connect()
            status, hit = await _request(*connection, method, path, body)
        latencies.append(time.perf_counter() - due)
        idle.append(connection)
        cached += hit
        failures += status != 200
        ok += status == 200

    started = time.perf_counter()
    pending = []
    for turn in range(count):
        due = started + turn / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        pending.append(asyncio.create_task(one(turn, due)))
    await asyncio.gather(*pending)
    elapsed = time.perf_counter() - started
    for _, writer in idle:
        writer.close()
    return {
        "offered_per_second": rate,
        "connections": opened,
        **_summary(latencies, ok, failures, cached, elapsed),
    }


def _summary(latencies: list[float], ok: int, failures: int, cached: int, elapsed: float) -> dict:
    ms = np.array(latencies) * 1000
    return {
        "requests": len(ms),
        "succeeded": ok,
        "failed": failures,
        "from_cache": cached,
        "requests_per_second": round(len(ms) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def _serving_memory_mib(server: subprocess.Popen) -> float:
    parent = psutil.Process(server.pid)
    processes = [parent, *parent.children(recursive=True)]
    return round(sum(p.memory_info().rss for p in processes) / 2**20, 1)


def run() -> dict:
    import torch

    from shopsense.models.registry import create_model
    from shopsense.search.engine import SearchSettings, build_index
    from shopsense.search.ranker import judgments_from_events, train_ranker
    from shopsense.serving.batch import precompute
    from shopsense.serving.recommendations import ModelBundle
    from shopsense.serving.store import open_store

    out: dict = {"users": USERS, "items": ITEMS, "seconds_per_test": SECONDS}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        write_store(StoreConfig(users=USERS, items=ITEMS, days=30, seed=21), root / "raw")
        ingest("parquet", [root / "raw"], root / "data", progress=False)
        dataset = Dataset.load(root / "data")
        out["events_in_store"] = len(dataset.events)
        create_model("als").fit(dataset).save(root / "models" / "v0001")
        torch.set_num_threads(usable_cores())
        events = dataset.source_events()
        engine = build_index(
            dataset.items,
            root / "index",
            events,
            settings=SearchSettings(embedding_cache=str(CACHE)),
        )
        # The ranking a store with click logs runs: LambdaRank trained on them.
        train_ranker(engine, judgments_from_events(events)).save(root / "index" / "ranker.txt")
        state = str(root / "state.db")
        bundle = ModelBundle(root / "models" / "v0001", dataset)
        store = open_store(state)
        precompute(bundle, store, root / "batch", k=100)
        store.close()
        out["setup_seconds"] = round(time.perf_counter() - started, 1)
        print(f"  setup (store, ALS, index, batch lists) {out['setup_seconds']} s", flush=True)
        port = 8765
        server = subprocess.Popen(
            [sys.executable, "-m", "shopsense", "serve", "--data", str(root / "data"),
             "--models", str(root / "models"), "--index", str(root / "index"),
             "--state", state, "--port", str(port), "--workers", "2"],
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        try:
            _wait_ready(port)
            rng = np.random.default_rng(0)
            users = dataset.users["user_id"].to_numpy()[rng.integers(0, USERS, 2000)]
            recs = [("GET", f"/recommendations/{u}?k=10", None) for u in users]
            # Queries as shoppers send them: drawn from the store's query log, so a
            # frequent query comes often (and its encoding may be cached, as in a store).
            logged = events["query"].dropna().astype(str).to_numpy()
            queries = logged[rng.integers(0, len(logged), 20_000)]
            searches = [("GET", "/search?" + _query(q), None) for q in queries]
            # And the worst case for the result cache: every distinct query once, before
            # any other search (the cache starts empty).
            distinct = [("GET", "/search?" + _query(q), None) for q in dict.fromkeys(logged)]
            out["distinct_queries"] = len(distinct)
            items = dataset.items["item_id"].to_numpy()

            def event_batch() -> bytes:
                chosen_users = users[rng.integers(0, len(users), EVENTS_PER_REQUEST)]
                chosen_items = items[rng.integers(0, ITEMS, EVENTS_PER_REQUEST)]
                return json.dumps(
                    [
                        {
                            "user_id": str(u),
                            "type": "view",
                            "item_id": str(i),
                            "event_id": uuid.uuid4().hex,
                        }
                        for u, i in zip(chosen_users, chosen_items, strict=True)
                    ]
                ).encode()

            batches = [("POST", "/events", event_batch)]
            acknowledged = 0
            # Closed loop (a fixed number in flight) gives the capacity; open loop at
            # the bar's rate gives the latency a store sees at that traffic. The cold
            # passes split the distinct queries in two, so each starts uncached.
            steps: list[tuple[str, list, dict]] = [
                ("recommendations", recs, {"concurrency": 8}),
                ("recommendations_at_rate", recs, {"rate": 500}),
                ("search_distinct_queries", distinct[0::2], {"concurrency": 4, "once": True}),
                ("search_distinct_queries_at_rate", distinct[1::2], {"rate": 200, "once": True}),
                ("search", searches, {"concurrency": 4}),
                ("search_concurrency_8", searches, {"concurrency": 8}),
                ("search_at_rate", searches, {"rate": 200}),
                ("events", batches, {"concurrency": 4}),
            ]
            # The setup left millions of objects in this process: a full pass of the
            # collector over them stops the load generator for a second, which would
            # count as the server's latency. Kept out of its passes from here on.
            gc.collect()
            gc.freeze()
            for name, requests, how in steps:
                once = how.get("once", False)
                # Warm-up (the first requests load lazy parts); the cold passes warm
                # up on queries outside the log, so none of their own is cached before.
                warming = requests[:50]
                if once:
                    warming = [("GET", "/search?" + _query(f"warm {i}"), None) for i in range(50)]
                warm = asyncio.run(_load(port, warming, 2))
                if "rate" in how:
                    count = len(requests) if once else int(how["rate"] * SECONDS)
                    result = asyncio.run(_load_at_rate(port, requests, how["rate"], count))
                else:
                    result = asyncio.run(_load(port, requests, how["concurrency"], once))
                if name == "events":
                    acknowledged += (warm["succeeded"] + result["succeeded"]) * EVENTS_PER_REQUEST
                    result["events_per_second"] = round(
                        result["requests_per_second"] * EVENTS_PER_REQUEST
                    )
                out[name] = result
                print(f"  {name}: {result}", flush=True)
            out["serving_memory_mib"] = _serving_memory_mib(server)
        finally:
            server.terminate()
            server.wait(timeout=60)
        store = open_store(state)
        out["events_acknowledged"] = acknowledged
        out["events_lost"] = acknowledged - store.event_count()
        store.close()
    _print(out)
    return out


def _query(text: str) -> str:
    from urllib.parse import urlencode

    return urlencode({"q": text, "per_page": 10})


def _wait_ready(port: int) -> None:
    import httpx

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.5)
    raise RuntimeError("the service did not start")


def _print(out: dict) -> None:
    e = out["events"]
    print(
        f"service, {out['users']:,} users × {out['items']:,} items, 2 workers, "
        f"hybrid mode, load generator on the same machine:"
    )
    for name, what, bar in (
        ("recommendations", "/recommendations", "≥ 500 req/s, p99 ≤ 20 ms"),
        ("recommendations_at_rate", "/recommendations", "≥ 500 req/s, p99 ≤ 20 ms"),
        ("search", "/search, queries at their log frequencies", "≥ 200 req/s, p99 ≤ 40 ms"),
        ("search_concurrency_8", "/search, queries at their log frequencies", "the same"),
        ("search_at_rate", "/search, queries at their log frequencies", "the same"),
        (
            "search_distinct_queries",
            f"/search, each of {(out['distinct_queries'] + 1) // 2:,} distinct queries once",
            "the same",
        ),
        (
            "search_distinct_queries_at_rate",
            f"/search, each of the other {out['distinct_queries'] // 2:,} distinct queries once",
            "the same",
        ),
    ):
        s = out[name]
        load = (
            f"{s['offered_per_second']} req/s offered (open loop, {s['connections']} connections)"
            if "offered_per_second" in s
            else f"concurrency {s['concurrency']}"
        )
        cache = ""
        if name.startswith("search"):
            cache = f"; {s['from_cache'] / max(s['requests'], 1):.1%} from the result cache"
        print(
            f"  {what}: {s['requests_per_second']} req/s, p50 {s['p50_ms']} ms, "
            f"p99 {s['p99_ms']} ms at {load}{cache} (bar {bar})"
        )
    print(
        f"  /events: {e['events_per_second']} events/s in batches of {EVENTS_PER_REQUEST} at "
        f"concurrency {e['concurrency']}; {out['events_lost']} of "
        f"{out['events_acknowledged']:,} acknowledged events missing from the log "
        f"(bar ≥ 2,000 events/s, 0 lost)"
    )
    print(f"  serving processes' memory: {out['serving_memory_mib']} MiB")
