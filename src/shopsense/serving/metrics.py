"""Prometheus metrics of the service: requests and their latency per
endpoint, events accepted, search cache hits, searches that found nothing,
worker processes.

``/metrics`` is the whole service's, whichever worker answers. A service of
one process renders its own registry. With several (``serve --workers N``)
each process writes its values to files in one folder, named by
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, chosen
when prometheus_client is imported), and ``/metrics`` sums the files of all of
them: a worker that died keeps its counts in the totals, and ``serve``'s
supervisor drops its live gauges. ``uvicorn --factory`` with several workers
gets the same totals by setting ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder
(uvicorn does not drop a dead worker's gauges, so ``shopsense_workers`` may
count it until the folder is emptied at the next start).
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)
MULTIPROCESS_FOLDER = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        folder = os.environ.get(MULTIPROCESS_FOLDER)
        self._rendered = self.registry
        if folder:  # every process's files, read at each scrape
            self._rendered = CollectorRegistry()
            MultiProcessCollector(self._rendered, folder)
        workers = Gauge(
            "shopsense_workers",
            "Server processes running (each counts itself while it lives).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        workers.set(1)
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
        self._answered: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._events = Counter(
            "shopsense_events_accepted",
            "Events stored (duplicates excluded).",
            registry=self.registry,
        )

        search_cache = Counter(
            "shopsense_search_cache",
            "Searches by whether the result cache answered them (hit) or not (miss).",
            ["result"],
            registry=self.registry,
        )
        self._search_hits, self._search_misses = (
            search_cache.labels("hit"),
            search_cache.labels("miss"),
        )
        self._zero_results = Counter(
            "shopsense_search_zero_results",
            "Searches whose query matched no item (a browse of the catalogue is not one).",
            registry=self.registry,
        )

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count and time one answer. The labelled children are kept per
        (endpoint, method, status): ``labels()`` checks and locks on every call."""
        key = (endpoint, method, status)
        children = self._answered.get(key)
        if children is None:
            children = (
                self._requests.labels(endpoint, method, str(status)),
                self._latency.labels(endpoint),
            )
            self._answered[key] = children
        counted, timed = children
        counted.inc()
        timed.observe(seconds)

    def events_accepted(self, n: int) -> None:
        self._events.inc(n)

    def search_answered(self, from_cache: bool, zero_results: bool) -> None:
        (self._search_hits if from_cache else self._search_misses).inc()
        if zero_results:
            self._zero_results.inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self._rendered), CONTENT_TYPE_LATEST
