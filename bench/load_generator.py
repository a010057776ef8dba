"""The serving bench's load generator, run as a process of its own.

It shares two cores with the server, so it is kept lean: one asyncio loop,
persistent HTTP/1.1 connections, minimal parsing, and nothing else in the
process. (Run inside the bench process, it shared an interpreter with the
gigabytes the setup built, and every pause of that process counted as server
latency.)

``python -m bench.load_generator PLAN.json`` runs the plan's steps in order
and prints one JSON object: each step's result, with the CPU the server's
processes and this one spent on it.

A plan: ``{"port": P, "server_pid": PID, "seconds": S, "steps": [STEP, ...]}``;
a step may name its own ``port``, ``server_pid`` and ``seconds`` (to send
slices to two services in turn). A step:
``{"name": N, "requests": [[METHOD, PATH], ...], "concurrency": C}``
(closed loop) or ``"rate": R`` (open loop), ``"once": true`` to send each
request once, ``"warm_up"``: requests sent first at concurrency 2 and not
counted, ``"keep_latencies": true`` to return every latency (``latencies_ms``),
and ``"events": {"users": [...], "items": [...], "per_request": K}`` to post
fresh batches of K view events instead of ``requests``. A step
``{"together": [STEP, ...], "seconds": S}`` runs its steps at the same time,
each against its own ``port`` and ``server_pid`` (services compared under
the very same machine: whatever slows one slows the others), and reports
each under its own name.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import psutil

Request = tuple[str, str, Callable[[], bytes] | None]
POOL = 16  # keep-alive connections a load holds open


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


class Connections:
    """A pool of keep-alive connections, reused oldest-idle first, as a proxy's
    upstream pool does. The server's workers each hold some of them (the kernel
    spreads new connections over the workers' ``SO_REUSEPORT`` sockets), so
    turning over the whole pool spreads the requests over the workers; reusing
    the connection that just came back (a stack) would keep sending them to the
    same worker while the other sits idle."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = deque()
        self.opened = 0

    async def open(self, count: int) -> None:
        for _ in range(count):
            self.idle.append(await self._connect())

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.opened += 1
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def send(self, method: str, path: str, body: bytes | None) -> tuple[int, bool]:
        connection = self.idle.popleft() if self.idle else await self._connect()
        try:
            answer = await _request(*connection, method, path, body)
        except (ConnectionError, asyncio.IncompleteReadError):
            # A pooled connection the server closed while it sat idle (keep-alive
            # timeout): as an HTTP client's pool does, retry once on a new one.
            connection[1].close()
            connection = await self._connect()
            answer = await _request(*connection, method, path, body)
        self.idle.append(connection)
        return answer

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def closed_loop(
    port: int, requests: list[Request], concurrency: int, seconds: float, once: bool = False
) -> dict:
    """Send ``requests`` round-robin for ``seconds`` (``once``: each of them once,
    however long that takes) with ``concurrency`` in flight, over a pool of
    ``POOL`` connections (at least ``concurrency``)."""
    pool = Connections(port)
    await pool.open(max(POOL, concurrency))
    latencies: list[float] = []
    failures = ok = cached = 0
    deadline = time.perf_counter() + (float("inf") if once else seconds)
    counter = iter(range(len(requests) if once else 10**9))

    async def worker() -> None:
        nonlocal failures, ok, cached
        while time.perf_counter() < deadline:
            turn = next(counter, None)
            if turn is None:
                break
            method, path, body = requests[turn % len(requests)]
            payload = body and body()
            started = time.perf_counter()
            status, hit = await pool.send(method, path, payload)
            latencies.append(time.perf_counter() - started)
            cached += hit
            failures += status != 200
            ok += status == 200

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    pool.close()
    return {
        "concurrency": concurrency,
        "connections": pool.opened,
        **_summary(latencies, ok, failures, cached, elapsed),
    }


async def open_loop(port: int, requests: list[Request], rate: float, count: int) -> dict:
    """Send ``count`` of ``requests`` in turn, request i due at i / ``rate``
    seconds, whatever the earlier ones are doing (a new connection when none of
    the pool is idle). Latency counts from when a request was due, so a server
    that falls behind shows it (no coordinated omission, as in wrk2)."""
    pool = Connections(port)
    await pool.open(POOL)
    latencies: list[float] = []
    failures = ok = cached = 0

    async def one(turn: int, due: float) -> None:
        nonlocal failures, ok, cached
        method, path, body = requests[turn % len(requests)]
        status, hit = await pool.send(method, path, body and body())
        latencies.append(time.perf_counter() - due)
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
    pool.close()
    return {
        "offered_per_second": rate,
        "connections": pool.opened,
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
        "latencies_ms": np.round(ms, 3).tolist(),
    }


def _event_batches(spec: dict) -> Callable[[], bytes]:
    """A maker of fresh view-event batches: every event new (its own id)."""
    rng = np.random.default_rng(0)
    users, items, k = np.array(spec["users"]), np.array(spec["items"]), spec["per_request"]

    def batch() -> bytes:
        who, what = rng.integers(0, len(users), k), rng.integers(0, len(items), k)
        chosen = zip(users[who], items[what], strict=True)
        return json.dumps(
            [
                {"user_id": str(u), "type": "view", "item_id": str(i), "event_id": uuid.uuid4().hex}
                for u, i in chosen
            ]
        ).encode()

    return batch


def _requests(step: dict) -> list[Request]:
    if "events" in step:
        return [("POST", "/events", _event_batches(step["events"]))]
    return [(method, path, None) for method, path in step["requests"]]


def _warm_up(port: int, step: dict, seconds: float) -> int:
    """Send the step's warm-up (or its first 50 requests) once; how many succeeded."""
    warm_up = [(method, path, None) for method, path in step.get("warm_up", [])]
    requests = warm_up or _requests(step)[:50]
    return asyncio.run(closed_loop(port, requests, 2, seconds, once=True))["succeeded"]


def _load(port: int, step: dict, seconds: float) -> Coroutine[Any, Any, dict]:
    """The step's load, to be awaited."""
    requests = _requests(step)
    once = step.get("once", False)
    if "rate" in step:
        count = len(requests) if once else int(step["rate"] * seconds)
        return open_loop(port, requests, step["rate"], count)
    return closed_loop(port, requests, step["concurrency"], seconds, once)


def run_steps(steps: list[tuple[int, dict]], seconds: float) -> list[dict]:
    """Warm each (port, step) up, then run their loads at the same time."""
    warm = [_warm_up(port, step, seconds) for port, step in steps]

    async def together() -> list[dict]:
        return await asyncio.gather(*(_load(port, step, seconds) for port, step in steps))

    results = asyncio.run(together())
    for result, (_, step), succeeded in zip(results, steps, warm, strict=True):
        result["warm_up_succeeded"] = succeeded
        if not step.get("keep_latencies"):
            del result["latencies_ms"]
    return results


def main(plan_path: str) -> None:
    plan: dict[str, Any] = json.loads(Path(plan_path).read_text())
    me = psutil.Process()
    served_by: dict[int, list[psutil.Process]] = {}

    def cpu(ps: list[psutil.Process]) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in ps)

    def processes(step: dict) -> list[psutil.Process]:
        pid = step.get("server_pid", plan["server_pid"])
        if pid not in served_by:
            server = psutil.Process(pid)
            served_by[pid] = [server, *server.children(recursive=True)]
        return served_by[pid]

    out = {}
    for entry in plan["steps"]:
        steps = entry.get("together", [entry])
        seconds = entry.get("seconds", plan["seconds"])
        servers_before = [cpu(processes(step)) for step in steps]
        me_before = cpu([me])
        results = run_steps([(step.get("port", plan["port"]), step) for step in steps], seconds)
        me_spent = cpu([me]) - me_before
        every = sum(max(r["requests"] + r["warm_up_succeeded"], 1) for r in results)
        for step, result, before in zip(steps, results, servers_before, strict=True):
            served = max(result["requests"] + result["warm_up_succeeded"], 1)
            result["server_cpu_ms_per_request"] = round(
                (cpu(processes(step)) - before) / served * 1e3, 3
            )
            result["load_generator_cpu_ms_per_request"] = round(me_spent / every * 1e3, 3)
            out[step["name"]] = result
            shown = {k: v for k, v in result.items() if k != "latencies_ms"}
            print(f"  {step['name']}: {shown}", file=sys.stderr, flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
