"""Two machines sharing one Redis: how soon a catalogue change made on one is
searchable on the other (issue 23's staleness bar).

Two services, each ``serve --workers 2`` with a dataset, model registry and
hybrid search index folder of its own (as two machines have), share a Redis
state store started here on loopback. Each round puts one new item on
machine A and polls machine B's search for it on fresh connections every
10 ms. In half the rounds B is asked only for its readiness, so its
background follower must apply the change (the bound is ``FOLLOW_SECONDS``);
in the other half B is searched at once, and a search catches up before it
answers, so the figure is what applying the change costs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from bench.serving_load import wait_ready
from shopsense.data.ingest import ingest
from shopsense.data.synthetic import StoreConfig, write_store

ROUNDS = 20
KEY = "bench-key"


def run() -> dict:
    from shopsense.data.dataset import Dataset
    from shopsense.models.registry import create_model
    from shopsense.search.engine import build_index
    from shopsense.serving.replica import FOLLOW_SECONDS

    redis_server = shutil.which("redis-server")
    if redis_server is None:
        raise RuntimeError("this benchmark needs redis-server (apt-get install redis-server)")
    out: dict = {"rounds": ROUNDS, "follow_seconds": FOLLOW_SECONDS}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_store(StoreConfig(users=2000, items=1000, days=30, seed=5), root / "raw")
        ingest("parquet", [root / "raw"], root / "a" / "data", progress=False)
        dataset = Dataset.load(root / "a" / "data")
        create_model("als").fit(dataset).save(root / "a" / "models" / "v0001")
        build_index(dataset.items, root / "a" / "index", dataset.source_events())
        shutil.copytree(root / "a", root / "b")
        redis_port, ports = _free_port(), (_free_port(), _free_port())
        redis = subprocess.Popen(
            [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--dir", str(root)], stdout=subprocess.DEVNULL,
        )  # fmt: skip
        env = {**os.environ, "SHOPSENSE_API_KEY": KEY, "OMP_NUM_THREADS": "1"}
        state = f"redis://127.0.0.1:{redis_port}/0"
        servers = [_serve(root / m, state, port, env) for m, port in zip("ab", ports, strict=True)]
        try:
            for port in ports:
                wait_ready(port)
            idle, busy = [], []
            for n in range(ROUNDS):
                waited = n % 2 == 0
                seconds = _round(ports, n, idle_first=waited)
                (idle if waited else busy).append(seconds)
        finally:
            for process in [*servers, redis]:
                process.terminate()
            for process in [*servers, redis]:
                process.wait(timeout=60)
    for name, values in (("idle", idle), ("busy", busy)):
        ms = np.array(values) * 1000
        out[f"{name}_p50_ms"] = round(float(np.median(ms)), 1)
        out[f"{name}_max_ms"] = round(float(ms.max()), 1)
    print(
        f"two machines (serve --workers 2 each, own folders) sharing one Redis, {ROUNDS} "
        f"catalogue changes made on A: applied by an idle B after p50 {out['idle_p50_ms']} ms, "
        f"max {out['idle_max_ms']} ms (bound: FOLLOW_SECONDS = {FOLLOW_SECONDS} s); found by "
        f"B's search asked at once after p50 {out['busy_p50_ms']} ms, max {out['busy_max_ms']} ms"
    )
    return out


def _round(ports: tuple[int, int], n: int, idle_first: bool) -> float:
    """Seconds from A's answer to a PUT /items until B has it: with
    ``idle_first``, until a worker of B reports it applied with no search
    asked of B (its background follower's doing); else until B's first search
    finds it (the request catches up itself)."""
    item = {"item_id": f"bench-{n}", "title": f"Quuxal{n} widget", "category": "Widgets"}
    with httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}", timeout=60) as a:
        response = a.put("/items", json=[item], headers={"Authorization": f"Bearer {KEY}"})
        response.raise_for_status()
    done = time.monotonic()
    while True:
        with httpx.Client(base_url=f"http://127.0.0.1:{ports[1]}", timeout=60) as b:
            if idle_first:
                seen = b.get("/health/ready").json()["changes_applied"] > n
            else:
                hits = b.get("/search", params={"q": f"quuxal{n} widget"}).json()["hits"]
                seen = bool(hits) and hits[0]["item_id"] == item["item_id"]
        if seen:
            return time.monotonic() - done
        time.sleep(0.01)


def _serve(machine: Path, state: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "shopsense", "serve", "--data", str(machine / "data"),
         "--models", str(machine / "models"), "--index", str(machine / "index"),
         "--state", state, "--port", str(port), "--workers", "2"],
        env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
