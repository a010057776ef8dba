"""The service under load (issue 6's speed bar).

A synthetic store of 100k users × 50k items; ALS trained on it; a hybrid
search index with a ranker trained on the store's click logs; batch lists
for every user. ``shopsense serve --workers 2`` runs in hybrid mode on
loopback, and a load generator in a process of its own
(``bench/load_generator.py``: one asyncio loop, persistent HTTP/1.1
connections, minimal parsing so it takes little of the CPU it shares with the
server) drives it two ways:

- closed loop, a fixed number of requests in flight: the capacity;
- open loop at the bar's rate (500 recommendations or 200 searches a second,
  each request due at its time whatever the earlier ones are doing, latency
  counted from then): the latency a store sees at that traffic.

Searches are drawn from the store's query log with its frequencies; the cold
passes come first and send each distinct query once with the result cache
empty (half of them closed loop, the other half open loop). Users are drawn
uniformly. Reports requests (or events) per second, p50/p99 latency and the
concurrency or rate for ``/recommendations``, ``/search`` and ``/events``,
the CPU the server and the load generator spent per request, the resident
memory of the serving processes, and what impression logging costs (three
services loaded at once: off, on, and off again as an A/A control).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import psutil

from bench.common import OUTPUT, REPO
from shopsense.compute import usable_cores
from shopsense.data.dataset import Dataset
from shopsense.data.ingest import ingest
from shopsense.data.synthetic import StoreConfig, write_store

USERS, ITEMS = 100_000, 50_000
SECONDS = float(os.environ.get("SHOPSENSE_LOAD_SECONDS", 20))
CACHE = Path(os.environ.get("SHOPSENSE_EMBEDDING_CACHE", OUTPUT / "cache" / "embeddings"))
EVENTS_PER_REQUEST = 500
RATE = 500  # recommendations a second: the open loop's rate (the bar's)
COST_SETS = 3 * (int(os.environ.get("SHOPSENSE_COST_SETS", 15)) // 3)  # three rounds
COST_SLICE_SECONDS = float(os.environ.get("SHOPSENSE_COST_SLICE_SECONDS", 5))


def _serving_memory_mib(server: subprocess.Popen) -> float:
    parent = psutil.Process(server.pid)
    processes = [parent, *parent.children(recursive=True)]
    return round(sum(p.memory_info().rss for p in processes) / 2**20, 1)


def run() -> dict:
    import torch

    from shopsense.models.registry import create_model
    from shopsense.search.engine import build_index
    from shopsense.search.index.settings import SearchSettings
    from shopsense.search.ranking.training import judgments_from_events, train_ranker
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
        server = _serve(root, state, port)
        try:
            wait_ready(port)
            rng = np.random.default_rng(0)
            users = dataset.users["user_id"].to_numpy()[rng.integers(0, USERS, 2000)]
            recs = [["GET", f"/recommendations/{u}?k=10"] for u in users]
            # Queries as shoppers send them: drawn from the store's query log, so a
            # frequent query comes often (and its encoding may be cached, as in a store).
            logged = events["query"].dropna().astype(str).to_numpy()
            queries = logged[rng.integers(0, len(logged), 20_000)]
            searches = [["GET", "/search?" + _query(q)] for q in queries]
            # And the worst case for the result cache: every distinct query once, before
            # any other search (the cache starts empty). They warm up on queries
            # outside the log, so none of their own is cached before.
            distinct = [["GET", "/search?" + _query(q)] for q in dict.fromkeys(logged)]
            out["distinct_queries"] = len(distinct)
            cold = {
                "once": True,
                "warm_up": [["GET", "/search?" + _query(f"warm {i}")] for i in range(50)],
            }
            posted = {"users": users.tolist(), "items": dataset.items["item_id"].tolist()}
            # Closed loop (a fixed number in flight) gives the capacity; open loop at
            # the bar's rate gives the latency a store sees at that traffic. The cold
            # passes split the distinct queries in two, so each starts uncached.
            steps = [
                {"name": "recommendations", "requests": recs, "concurrency": 8},
                {"name": "recommendations_at_rate", "requests": recs, "rate": RATE},
                {
                    "name": "search_distinct_queries",
                    "requests": distinct[0::2],
                    "concurrency": 4,
                    **cold,
                },
                {
                    "name": "search_distinct_queries_at_rate",
                    "requests": distinct[1::2],
                    "rate": 200,
                    **cold,
                },
                {"name": "search", "requests": searches, "concurrency": 4},
                {"name": "search_concurrency_8", "requests": searches, "concurrency": 8},
                {"name": "search_at_rate", "requests": searches, "rate": 200},
                {
                    "name": "events",
                    "events": {**posted, "per_request": EVENTS_PER_REQUEST},
                    "concurrency": 4,
                },
            ]
            out.update(_drive(root, port, server, steps))
            e = out["events"]
            acknowledged = (e["succeeded"] + e["warm_up_succeeded"]) * EVENTS_PER_REQUEST
            e["events_per_second"] = round(e["requests_per_second"] * EVENTS_PER_REQUEST)
            out["serving_memory_mib"] = _serving_memory_mib(server)
        finally:
            server.terminate()
            server.wait(timeout=60)
        out["impression_cost"] = _impression_cost(root, state, port, recs)
        store = open_store(state)
        out["events_acknowledged"] = acknowledged
        out["events_lost"] = acknowledged - store.event_count()
        store.close()
    _print(out)
    return out


def _serve(root: Path, state: str, port: int, impressions: bool = True) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "shopsense", "serve", "--data", str(root / "data"),
         "--models", str(root / "models"), "--index", str(root / "index"),
         "--state", state, "--port", str(port), "--workers", "2"],
        env={**os.environ, "OMP_NUM_THREADS": "1",
             "SHOPSENSE_IMPRESSIONS": "1" if impressions else "0"},
    )  # fmt: skip


def _drive(root: Path, port: int, server: subprocess.Popen, steps: list[dict]) -> dict:
    """Run ``steps`` through the load generator (a process of its own)."""
    plan = {"port": port, "server_pid": server.pid, "seconds": SECONDS, "steps": steps}
    (root / "plan.json").write_text(json.dumps(plan))
    driven = subprocess.run(
        [sys.executable, "-m", "bench.load_generator", str(root / "plan.json")],
        cwd=REPO, stdout=subprocess.PIPE, text=True, check=True,
    )  # fmt: skip
    return json.loads(driven.stdout)


COST_SIDES = {"off": False, "control": False, "on": True}
"""The impression cost's services: logging off, a second one off (the A/A
control: how far two identical services differ here), and logging on."""


def _cost_round(
    root: Path, state: str, port: int, order: tuple[str, ...], kinds: dict, sets: range
) -> dict:
    """One round of the impression cost: the services started in ``order``,
    then each kind of load sent to all of them at once, one slice a set."""
    servers: dict[str, tuple[int, subprocess.Popen]] = {}
    try:
        for offset, side in enumerate(order):
            copy = root / f"state_{side}.db"
            copy.unlink(missing_ok=True)
            with (
                closing(sqlite3.connect(state)) as source,
                closing(sqlite3.connect(copy)) as target,
            ):
                source.backup(target)  # a WAL database is more than its main file
            servers[side] = (
                port + offset,
                _serve(root, str(copy), port + offset, COST_SIDES[side]),
            )
            wait_ready(port + offset)
        steps = []
        for kind, step in kinds.items():
            for index in sets:
                together = []
                for side in order:
                    side_port, server = servers[side]
                    slice_of = {"port": side_port, "server_pid": server.pid}
                    together.append({**step, **slice_of, "name": f"{kind} {side} {index}"})
                steps.append({"together": together, "seconds": COST_SLICE_SECONDS})
        return _drive(root, port, servers[order[0]][1], steps)
    finally:
        for _, server in servers.values():
            server.terminate()
        for _, server in servers.values():
            server.wait(timeout=60)


def _impression_cost(root: Path, state: str, port: int, recs: list[list[str]]) -> dict:
    """/recommendations with impression logging off and on, beside an A/A
    control: three services up at once (each with its own copy of the
    state), the load sent to all three at the same time in
    ``COST_SLICE_SECONDS`` slices, one a set, ``COST_SETS`` sets. Runs of one
    service minutes apart, and slices sent to each in turn, differed by more
    than the 10% bar on this machine; loads at the same time meet the same
    machine, so what slows one slows the others. At concurrency 8 each, the
    services share the cores, and a service's throughput says what a request
    costs it. At the bar's rate, each gets a third of it (the machine serves
    500 requests a second). The service started first ran faster in an A/A
    run, so the sets come in three rounds, each service started first in one.
    Every figure is a ratio to the "off" service with a 95% bootstrap
    interval over the sets: throughput and CPU the median of the sets'
    ratios; p99 over all of a service's requests, and the median of the sets'
    ratios of slice p99s. The control's ratios say what "no difference" looks
    like here."""
    kinds = {
        "concurrency_8": {"requests": recs, "concurrency": 8, "keep_latencies": True},
        "at_rate": {"requests": recs, "rate": RATE / len(COST_SIDES), "keep_latencies": True},
    }
    sides = tuple(COST_SIDES)
    per_round = COST_SETS // len(sides)
    driven: dict = {}
    for round_ in range(len(sides)):
        order = sides[round_:] + sides[:round_]
        sets = range(round_ * per_round, (round_ + 1) * per_round)
        driven.update(_cost_round(root, state, port, order, kinds, sets))
    out: dict = {"sets": COST_SETS, "slice_seconds": COST_SLICE_SECONDS}
    for kind in kinds:
        slices = {
            side: [driven[f"{kind} {side} {index}"] for index in range(COST_SETS)] for side in sides
        }
        figures: dict = {"failed": sum(s["failed"] for got in slices.values() for s in got)}
        for side in ("control", "on"):
            against = {}
            for figure, name in (
                ("requests_per_second", "requests_per_second"),
                ("p99_ms", "slice_p99_ms"),
                ("server_cpu_ms_per_request", "server_cpu_ms_per_request"),
            ):
                off, other = ([s[figure] for s in slices[k]] for k in ("off", side))
                against[name] = _paired(off, other)
            against["p99_ms"] = _pooled_p99(slices["off"], slices[side])
            figures[side] = against
        out[kind] = figures
    return out


def _paired(off: list[float], other: list[float]) -> dict:
    """Each side's median, the median of the sets' ratios (other / off) and its
    95% bootstrap interval over the sets."""
    ratios = np.divide(other, off)
    rng = np.random.default_rng(0)
    resampled = np.median(rng.choice(ratios, (2000, len(ratios))), axis=1)
    return {
        "off": float(np.median(off)),
        "other": float(np.median(other)),
        "ratio": float(np.median(ratios)),
        "interval": [float(np.percentile(resampled, q)) for q in (2.5, 97.5)],
    }


def _pooled_p99(off: list[dict], other: list[dict]) -> dict:
    """p99 over all of each side's requests, their ratio, and its 95% bootstrap
    interval from resampling the sets (a set's slices stay together)."""

    def p99(slices: list[dict], chosen: np.ndarray) -> float:
        return float(np.percentile(np.concatenate([slices[i]["latencies_ms"] for i in chosen]), 99))

    every = np.arange(len(off))
    rng = np.random.default_rng(0)
    ratios = []
    for _ in range(500):
        chosen = rng.choice(every, len(every))
        ratios.append(p99(other, chosen) / p99(off, chosen))
    low, high = (float(np.percentile(ratios, q)) for q in (2.5, 97.5))
    first, second = p99(off, every), p99(other, every)
    return {"off": round(first, 2), "other": round(second, 2), "ratio": second / first,
            "interval": [low, high]}  # fmt: skip


def _query(text: str) -> str:
    from urllib.parse import urlencode

    return urlencode({"q": text, "per_page": 10})


def wait_ready(port: int) -> None:
    import httpx

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.2)  # a 503 (not ready yet) waits too
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
            else f"concurrency {s['concurrency']} over {s['connections']} connections"
        )
        cache = ""
        if name.startswith("search"):
            cache = f"; {s['from_cache'] / max(s['requests'], 1):.1%} from the result cache"
        print(
            f"  {what}: {s['requests_per_second']} req/s, p50 {s['p50_ms']} ms, "
            f"p99 {s['p99_ms']} ms at {load}{cache}; server CPU "
            f"{s['server_cpu_ms_per_request']} ms a request (bar {bar})"
        )
    print(
        f"  /events: {e['events_per_second']} events/s in batches of {EVENTS_PER_REQUEST} at "
        f"concurrency {e['concurrency']}; {out['events_lost']} of "
        f"{out['events_acknowledged']:,} acknowledged events missing from the log "
        f"(bar ≥ 2,000 events/s, 0 lost)"
    )
    print(f"  serving processes' memory: {out['serving_memory_mib']} MiB")
    _print_impression_cost(out["impression_cost"])


def _print_impression_cost(cost: dict) -> None:
    print(
        f"  impression logging, /recommendations, each figure a ratio to the service "
        f"with logging off, 95% interval over {cost['sets']} sets of "
        f"{cost['slice_seconds']} s slices (three services loaded at once; bar: logging "
        f"on costs at most 10% of throughput and p99; the A/A control is a second "
        f"service with logging off):"
    )
    loads = (("concurrency_8", "at concurrency 8 each"), ("at_rate", f"at {RATE} req/s in all"))
    for kind, load in loads:
        for figure, what in (
            ("requests_per_second", "throughput"),
            ("p99_ms", "p99 over all requests"),
            ("slice_p99_ms", "p99 of a slice"),
            ("server_cpu_ms_per_request", "server CPU a request"),
        ):
            if kind == "at_rate" and figure == "requests_per_second":
                continue  # the rate is offered, not measured
            row = []
            for side in ("on", "control"):
                f = cost[kind][side][figure]
                low, high = f["interval"]
                row.append(f"{side} {f['other']:.2f} ({f['ratio']:.3f}, {low:.3f}–{high:.3f})")
            off = cost[kind]["on"][figure]["off"]
            print(f"    {what} {load}: off {off:.2f}; " + "; ".join(row))
