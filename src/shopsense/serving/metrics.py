"""Prometheus metrics of one service process: requests and their latency per
endpoint, events accepted. Each process has its own registry (a scraper
sums the workers)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "shopsense_requests",
            "HTTP requests by endpoint, method and status.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "shopsense_request_seconds",
            "Time to answer, by endpoint.",
            ["endpoint"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._events = Counter(
            "shopsense_events_accepted",
            "Events stored (duplicates excluded).",
            registry=self.registry,
        )

        self._search_cache = Counter(
            "shopsense_search_cache",
            "Searches by whether the result cache answered them (hit) or not (miss).",
            ["result"],
            registry=self.registry,
        )

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self._requests.labels(endpoint, method, str(status)).inc()
        self._latency.labels(endpoint).observe(seconds)

    def events_accepted(self, n: int) -> None:
        self._events.inc(n)

    def search_answered(self, from_cache: bool) -> None:
        self._search_cache.labels("hit" if from_cache else "miss").inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
