"""Impressions written off the request path.

A request only appends its impression to an in-memory queue (no I/O, no
lock held across I/O); one thread per worker writes the queue to the state
store in batches every ``FLUSH_SECONDS``, and once more at shutdown. What this
buys is a p99 that does not wait for a disk or Redis write; what it costs is
that a worker killed with ``kill -9`` loses at most the impressions of its last
``FLUSH_SECONDS``. Impressions are for counting, not for money (events are
stored before the answer), so that is the trade a store wants. While the
store is down the queue holds up to ``MAX_QUEUED`` impressions, then drops the
oldest and counts them.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

from shopsense.serving.store import Impression, StateStore, StoreUnavailable

LOG = logging.getLogger("shopsense.serving")
FLUSH_SECONDS = 0.25
BATCH = 1000
MAX_QUEUED = 100_000


class ImpressionLog:
    """``on_written`` is called with each batch once it is stored (the metrics)."""

    def __init__(
        self,
        store: StateStore,
        max_queued: int = MAX_QUEUED,
        on_written: Callable[[list[Impression]], None] | None = None,
    ) -> None:
        self.store = store
        self.max_queued = max_queued
        self.on_written = on_written
        self._queue: collections.deque[Impression] = collections.deque()
        self._flushing = threading.Lock()
        self.written = 0
        self.dropped = 0
        self._failing = False

    def record(self, impression: Impression) -> None:
        """Queue one impression (called on the request path: O(1), never blocks)."""
        self._queue.append(impression)
        if len(self._queue) > self.max_queued:
            self._queue.popleft()
            self.dropped += 1

    def flush(self) -> int:
        """Write what is queued, in batches; returns how many were written. A
        batch the store refuses stays queued, in order, for the next flush."""
        written = 0
        with self._flushing:
            while batch := self._take(BATCH):
                try:
                    self.store.append_impressions(batch)
                except StoreUnavailable as e:
                    self._queue.extendleft(reversed(batch))
                    if not self._failing:  # once an outage, not four times a second
                        LOG.warning("impressions kept until the store is back: %s", e)
                    self._failing = True
                    break
                if self._failing:
                    LOG.warning("the store is back: %d impressions written", len(batch))
                    self._failing = False
                written += len(batch)
                if self.on_written is not None:
                    self.on_written(batch)
        self.written += written
        return written

    def _take(self, n: int) -> list[Impression]:
        taken: list[Impression] = []
        try:
            while len(taken) < n:
                taken.append(self._queue.popleft())
        except IndexError:  # the queue ran dry
            pass
        return taken

    def run(self, stop: threading.Event) -> None:
        """The writer thread: flush every ``FLUSH_SECONDS`` until ``stop``, then once more."""
        while not stop.wait(FLUSH_SECONDS):
            self.flush()
        self.flush()
