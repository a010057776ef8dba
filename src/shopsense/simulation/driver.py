"""Simulated shoppers driving a running service over HTTP: ``shopsense simulate``.

Each shopper is a user of the synthetic store, drawn by activity. They run a
session or a few: each browses on its own first (views of a favourite leaf's
items, posted with no ``request_id``: the organic traffic a store's log is
mostly made of), asks for their recommendations and, as often as the
generator's sessions do, searches for an item of a favourite leaf; on every
list they examine, click, cart and buy by the ``ShopperModel`` and post those
events with the list's ``request_id`` (purchases with their value). What the
service answered is tallied per (placement, experiment, arm) beside the
model's *true* expectation of the very lists shown, so an experiment's
estimate can be checked against the truth; requests per second and latency
make it a load test with a shopper's mix of calls.

It is bounded: only a service on this machine (loopback), at most
``MAX_SHOPPERS`` shoppers, and it stops by itself after ``seconds`` (a request
under way finishes, and the events of a list already shown are still posted);
Ctrl-C stops it the same way. Who shops and what they do is a function of the
seed: each shopper has their own generator (seed, shopper), and each list its
own child of it, so neither the threads' interleaving nor the length of what
the service answers moves another draw.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import numpy as np

from shopsense.data.synthetic import SEARCH_SHARE
from shopsense.errors import ShopsenseError
from shopsense.simulation.shoppers import Outcome, Response, ShopperModel

MAX_SHOPPERS = 100_000
MAX_SECONDS = 3600.0
MAX_CONCURRENCY = 64
LIST_SIZE = 10
MAX_SESSIONS = 4
"""A shopper runs 1 + Poisson(activity / 2) sessions, at most this many."""
REQUEST_TIMEOUT = 10.0
Key = tuple[str, str | None, str | None]
"""(placement, experiment, arm) of a list."""


def loopback_address(url: str) -> tuple[str, int, str]:
    """``(host, port, path prefix)`` of an ``http://`` URL on this machine;
    any other URL is refused (the simulator is a load generator: it must not
    be pointed at someone else's service)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ShopsenseError(f"--url must be http://HOST:PORT, got {url!r}")
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        port = parts.port or 80
    except ValueError:
        loopback, port = False, 0
    if not loopback:
        raise ShopsenseError(
            f"--url must be a service on this machine (127.0.0.1, ::1 or localhost), got {url!r}"
        )
    return host, port, parts.path.rstrip("/")


@dataclass
class ArmTally:
    """What one (placement, experiment, arm) showed and what it brought:
    observed (the events posted) and expected (the model's truth)."""

    impressions: int = 0
    clicks: int = 0
    carts: int = 0
    purchases: int = 0
    revenue: float = 0.0
    true_clicks: float = 0.0
    true_carts: float = 0.0
    true_purchases: float = 0.0
    true_revenue: float = 0.0
    no_purchase: dict[str, float] = field(default_factory=dict)
    """Each shopper's true chance of buying nothing from all the lists they saw."""
    buyers: set[str] = field(default_factory=set)

    def shown(self, user_id: str, outcome: Outcome) -> None:
        self.impressions += 1
        self.true_clicks += outcome.clicks
        self.true_carts += outcome.carts
        self.true_purchases += outcome.purchases
        self.true_revenue += outcome.revenue
        before = self.no_purchase.get(user_id, 1.0)
        self.no_purchase[user_id] = before * (1.0 - outcome.buy_probability)

    def acted(self, user_id: str, response: Response) -> None:
        self.clicks += len(response.clicked)
        self.carts += len(response.carted)
        self.purchases += len(response.purchased)
        self.revenue += response.revenue
        if response.purchased:
            self.buyers.add(user_id)

    def merge(self, other: ArmTally) -> None:
        """Add another thread's tally (each shopper is one thread's alone)."""
        for name in (f.name for f in fields(self)):
            mine, theirs = getattr(self, name), getattr(other, name)
            if isinstance(mine, dict | set):
                mine.update(theirs)
            else:
                setattr(self, name, mine + theirs)

    def row(self, key: Key) -> dict[str, Any]:
        shoppers = len(self.no_purchase)
        impressions = max(self.impressions, 1)
        true_conversion = 1.0 - np.mean(list(self.no_purchase.values())) if shoppers else 0.0
        return {
            "placement": key[0],
            "experiment": key[1],
            "arm": key[2],
            "shoppers": shoppers,
            "impressions": self.impressions,
            "clicks": self.clicks,
            "carts": self.carts,
            "purchases": self.purchases,
            "revenue": round(self.revenue, 2),
            "ctr": self.clicks / impressions,
            "conversion": len(self.buyers) / max(shoppers, 1),
            "revenue_per_shopper": self.revenue / max(shoppers, 1),
            "true": {
                "clicks": self.true_clicks,
                "carts": self.true_carts,
                "purchases": self.true_purchases,
                "revenue": self.true_revenue,
                "ctr": self.true_clicks / impressions,
                "conversion": float(true_conversion),
                "revenue_per_shopper": self.true_revenue / max(shoppers, 1),
            },
        }


@dataclass
class SimulationReport:
    """What a run did; ``to_dict`` is what ``--json`` prints."""

    shoppers: int
    """Shoppers who started (at most those asked for: time may run out first)."""
    shoppers_asked: int
    sessions: int
    seconds: float
    stopped: str
    """``done`` (every shopper shopped), ``time`` (``seconds`` ran out) or ``interrupted``."""
    requests: int
    failures: dict[str, int]
    """Failed requests by HTTP status, or ``connection`` (refused, reset, timed out)."""
    events_posted: int
    searched: bool
    """False when the service has no search index (its /search answered 404):
    shoppers then only browse recommendations."""
    latency_ms: dict[str, dict[str, float]]
    """p50 and p99 of each kind of request (``recommendations``, ``search``,
    ``events``) and of ``all``."""
    arms: list[dict[str, Any]]

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "shoppers": self.shoppers,
            "shoppers_asked": self.shoppers_asked,
            "sessions": self.sessions,
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
            "requests": self.requests,
            "requests_per_second": round(self.requests_per_second, 1),
            "failures": self.failures,
            "events_posted": self.events_posted,
            "searched": self.searched,
            "latency_ms": self.latency_ms,
            "arms": self.arms,
        }

    def render(self) -> str:
        """The report as a person reads it."""
        failures = ", ".join(f"{n} × {what}" for what, n in sorted(self.failures.items()))
        latency = self.latency_ms.get("all", {})
        lines = [
            f"{self.shoppers:,} of {self.shoppers_asked:,} shoppers, {self.sessions:,} sessions "
            f"in {self.seconds:.1f} s (stopped: {self.stopped})",
            f"{self.requests:,} requests, {self.requests_per_second:,.1f}/s, latency p50 "
            f"{latency.get('p50', 0):.1f} ms, p99 {latency.get('p99', 0):.1f} ms; "
            f"failures: {failures or 'none'}; {self.events_posted:,} events posted"
            + ("" if self.searched else " (the service has no search index: no searches)"),
            f"{'placement':<16}{'experiment':<14}{'arm':<13}{'shoppers':>9}{'lists':>8}"
            f"{'clicks':>7}{'buys':>6}{'CTR':>8}{'true':>8}{'conv.':>8}{'true':>8}"
            f"{'rev/shopper':>12}{'true':>9}",
        ]
        for arm in self.arms:
            true = arm["true"]
            lines.append(
                f"{arm['placement']:<16}{arm['experiment'] or '-':<14}{arm['arm'] or '-':<13}"
                f"{arm['shoppers']:>9,}{arm['impressions']:>8,}{arm['clicks']:>7,}"
                f"{arm['purchases']:>6,}{arm['ctr']:>8.2%}{true['ctr']:>8.2%}"
                f"{arm['conversion']:>8.2%}{true['conversion']:>8.2%}"
                f"{arm['revenue_per_shopper']:>12.2f}{true['revenue_per_shopper']:>9.2f}"
            )
        return "\n".join(lines)


class _Client:
    """One keep-alive HTTP connection (a worker thread's own)."""

    def __init__(self, host: str, port: int, prefix: str, api_key: str | None) -> None:
        self.connection = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT)
        self.prefix = prefix
        self.headers = {"User-Agent": "shopsense-simulate", "Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def call(self, method: str, target: str, body: Any = None) -> tuple[int, Any]:
        """``(status, JSON answer or None)``; a transport failure raises ``OSError``
        or ``http.client.HTTPException`` and leaves the connection to reopen."""
        payload = None if body is None else json.dumps(body).encode()
        try:
            self.connection.request(method, self.prefix + target, payload, self.headers)
            response = self.connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()
            raise
        try:
            return response.status, json.loads(data) if data else None
        except ValueError:
            return response.status, None

    def close(self) -> None:
        self.connection.close()


@dataclass
class _Worker:
    """A thread's share of the run, merged into the report at the end."""

    client: _Client
    tallies: defaultdict[Key, ArmTally] = field(default_factory=lambda: defaultdict(ArmTally))
    latencies: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: Counter[str] = field(default_factory=Counter)
    shoppers: int = 0
    sessions: int = 0
    events: int = 0


class Simulation:
    """``shoppers`` simulated shoppers of ``model`` against the service at
    ``url``, ``concurrency`` at a time, for at most ``seconds``."""

    def __init__(
        self,
        url: str,
        model: ShopperModel,
        shoppers: int,
        seed: int = 0,
        seconds: float = 60.0,
        concurrency: int = 4,
        api_key: str | None = None,
    ) -> None:
        self.address = loopback_address(url)
        if not 1 <= shoppers <= min(MAX_SHOPPERS, len(model.users)):
            raise ShopsenseError(
                f"shoppers must be within 1 and {min(MAX_SHOPPERS, len(model.users)):,} "
                f"(the store has {len(model.users):,} users), got {shoppers:,}"
            )
        if not 0 < seconds <= MAX_SECONDS:
            raise ShopsenseError(f"seconds must be within 0 and {MAX_SECONDS:g}, got {seconds}")
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ShopsenseError(f"concurrency must be within 1 and {MAX_CONCURRENCY}")
        self.url = url
        self.model = model
        self.shoppers = shoppers
        self.seed = seed
        self.seconds = seconds
        self.concurrency = concurrency
        self.api_key = api_key

    def chosen(self) -> np.ndarray:
        """The rows of the users who shop, in order: each user's arrival is an
        exponential clock of rate ``activity``, and the first ``shoppers`` to
        arrive shop (a draw without replacement weighted by activity)."""
        rng = np.random.default_rng(self.seed)
        arrival = rng.exponential(size=len(self.model.users)) / self.model.activity
        return np.argsort(arrival, kind="stable")[: self.shoppers]

    def run(self) -> SimulationReport:
        """Shop until every shopper is done, ``seconds`` pass or Ctrl-C."""
        self._order = self.chosen()
        self._next_shopper = 0
        self._claim = threading.Lock()
        self._stop = threading.Event()
        self._stopped = "done"
        self._no_search = threading.Event()
        self._check_service()
        started = time.monotonic()
        self._deadline = started + self.seconds
        workers = [_Worker(_Client(*self.address, self.api_key)) for _ in range(self.concurrency)]
        threads = [
            threading.Thread(target=self._work, args=(w,), daemon=True, name=f"shopper-{n}")
            for n, w in enumerate(workers)
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        except KeyboardInterrupt:
            self._stopped = "interrupted"
            self._stop.set()
            for thread in threads:
                thread.join()
        return self._report(workers, time.monotonic() - started)

    # ------------------------------------------------------------------ shopping
    def _check_service(self) -> None:
        client = _Client(*self.address, self.api_key)
        try:
            status, _ = client.call("GET", "/health/live")
        except (OSError, http.client.HTTPException) as e:
            raise ShopsenseError(f"no shopsense service answers at {self.url}: {e}") from None
        finally:
            client.close()
        if status != 200:
            raise ShopsenseError(f"the service at {self.url} is not live (/health/live: {status})")

    def _work(self, worker: _Worker) -> None:
        try:
            while (index := self._claim_shopper()) is not None and self._shop(worker, index):
                pass
        finally:
            worker.client.close()

    def _claim_shopper(self) -> int | None:
        with self._claim:
            if self._next_shopper >= len(self._order) or self._out_of_time():
                return None
            self._next_shopper += 1
            return self._next_shopper - 1

    def _out_of_time(self) -> bool:
        if not self._stop.is_set() and time.monotonic() >= self._deadline:
            self._stopped = "time"
            self._stop.set()
        return self._stop.is_set()

    def _shop(self, worker: _Worker, index: int) -> bool:
        """One shopper's sessions; False once time is up."""
        row = self._order[index]
        user_id = str(self.model.users[row])
        rng = np.random.default_rng([self.seed, index])
        sessions = 1 + min(int(rng.poisson(self.model.activity[row] / 2)), MAX_SESSIONS - 1)
        worker.shoppers += 1
        for n in range(sessions):
            session_id = f"sim{self.seed}-{index}-{n}"
            worker.sessions += 1
            if not self._look_around(worker, user_id, session_id, rng):
                return False
            query = {"k": LIST_SIZE, "session_id": session_id}
            target = f"/recommendations/{quote(user_id, safe='')}?{urlencode(query)}"
            if not self._browse(worker, user_id, session_id, "recommendations", target, rng):
                return False
            if rng.random() < SEARCH_SHARE:
                words = self.model.query(user_id, rng)  # drawn even where search is off
                query = {"q": words, "user_id": user_id, "session_id": session_id}
                target = f"/search?{urlencode({**query, 'per_page': LIST_SIZE})}"
                if self._no_search.is_set():
                    continue
                if not self._browse(worker, user_id, session_id, "search", target, rng):
                    return False
        return True

    def _look_around(
        self, worker: _Worker, user_id: str, session_id: str, rng: np.random.Generator
    ) -> bool:
        """The session's own browsing (``ShopperModel.browse``), posted as views
        that follow no list: what a store's event log mostly holds, and what a
        retrained model learns moved tastes from. False once time is up."""
        if self._out_of_time():
            return False
        common = {"user_id": user_id, "session_id": session_id, "type": "view"}
        views = [{**common, "item_id": item} for item in self.model.browse(user_id, rng)]
        if self._call(worker, "events", "POST", "/events", views) is not None:
            worker.events += len(views)
        return True

    def _browse(
        self,
        worker: _Worker,
        user_id: str,
        session_id: str,
        placement: str,
        target: str,
        rng: np.random.Generator,
    ) -> bool:
        """Ask for a list, act on it and post what was done; False once time is up."""
        if self._out_of_time():
            return False
        reactions = rng.spawn(1)[0]  # this list's own draws
        answer = self._call(worker, placement, "GET", target)
        if answer is None:
            return True
        entries = answer.get("items" if placement == "recommendations" else "hits") or []
        shown = [str(entry["item_id"]) for entry in entries]
        tally = worker.tallies[(placement, answer.get("experiment"), answer.get("arm"))]
        tally.shown(user_id, self.model.expected(user_id, shown))
        response = self.model.respond(user_id, shown, reactions)
        common = {"user_id": user_id, "session_id": session_id}
        if answer.get("request_id") is not None:
            common["request_id"] = answer["request_id"]
        events = [
            *({**common, "type": "click", "item_id": shown[r]} for r in response.clicked),
            *({**common, "type": "cart", "item_id": item} for item in response.carted),
            *(
                {**common, "type": "purchase", "item_id": item, "value": value}
                for item, value in zip(response.purchased, response.values, strict=True)
            ),
        ]
        if events and self._call(worker, "events", "POST", "/events", events) is not None:
            tally.acted(user_id, response)
            worker.events += len(events)
        return True

    def _call(self, worker: _Worker, kind: str, method: str, target: str, body: Any = None) -> Any:
        """The JSON answer of a request that succeeded, else None (counted as a failure)."""
        started = time.perf_counter()
        try:
            status, answer = worker.client.call(method, target, body)
        except (OSError, http.client.HTTPException):
            status, answer = None, None
        worker.latencies[kind].append(time.perf_counter() - started)
        if kind == "search" and status == 404:  # a service without a search index
            self._no_search.set()
        if status is None or not 200 <= status < 300 or answer is None:
            worker.failures["connection" if status is None else str(status)] += 1
            return None
        return answer

    # -------------------------------------------------------------------- report
    def _report(self, workers: list[_Worker], seconds: float) -> SimulationReport:
        tallies: defaultdict[Key, ArmTally] = defaultdict(ArmTally)
        latencies: defaultdict[str, list[float]] = defaultdict(list)
        failures: Counter[str] = Counter()
        for worker in workers:
            for key, tally in worker.tallies.items():
                tallies[key].merge(tally)
            for kind, values in worker.latencies.items():
                latencies[kind].extend(values)
            failures.update(worker.failures)
        latencies["all"] = [v for kind in list(latencies) for v in latencies[kind]]
        return SimulationReport(
            shoppers=sum(w.shoppers for w in workers),
            shoppers_asked=self.shoppers,
            sessions=sum(w.sessions for w in workers),
            seconds=seconds,
            stopped=self._stopped,
            requests=len(latencies["all"]),
            failures=dict(failures),
            events_posted=sum(w.events for w in workers),
            searched=not self._no_search.is_set(),
            latency_ms={kind: _percentiles(values) for kind, values in latencies.items()},
            arms=[
                tallies[key].row(key)
                for key in sorted(tallies, key=lambda k: tuple(str(part) for part in k))
            ],
        )


def _percentiles(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {"p50": 0.0, "p99": 0.0}
    p50, p99 = np.percentile(np.asarray(seconds) * 1000.0, [50, 99])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3)}
