"""One truth across workers and machines: the change log and its followers.

A change to what the service answers from (a catalogue upsert or delete, a
user's deletion, a model reload) is never applied by the worker that received
it alone. It is appended to the change log in the state store, which numbers
entries 1, 2, 3, … without gaps, and every worker (on every machine sharing
the store) applies the entries in that order, exactly once, to its own copy of
what they change. This is Elasticsearch's translog replayed on every replica,
or a Kafka consumer with an offset:

- **Own copies, one writer each.** A worker searches a private copy of the
  index folder the service was started with (``private_index_copy``); the
  original is never written by a worker's catalogue changes, so two workers
  never write one file. A new or restarted worker copies the original and
  replays the whole log.
- **Read-your-writes.** A worker appends the caller's change and then catches
  up before answering, so the caller's next request sees it, whichever
  worker takes it.
- **Bounded staleness for everyone else.** Before every request that depends
  on the log, a worker reads the log's head (one indexed read) and applies
  what it has not; a background thread also catches up every
  ``FOLLOW_SECONDS``, so an idle worker is at most that far behind, and a busy
  one not at all.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil

from shopsense.serving.store import Change, StateStore

LOG = logging.getLogger("shopsense.serving")
FOLLOW_SECONDS = 1.0
CATCH_UP_BATCH = 500
REPLICA_ROOT = "shopsense-replicas"


class ChangeFollower:
    """Applies the store's change log to this process, in order, exactly once.

    ``applied`` is this process's offset: the entries 1 … ``applied`` are in
    effect here. ``apply`` receives each batch of new entries in order."""

    def __init__(self, store: StateStore, apply: Callable[[list[Change]], None]) -> None:
        self.store = store
        self._apply = apply
        self.applied = 0
        self.failed = 0
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._lock = threading.Lock()

    def catch_up(self) -> None:
        """Apply every entry appended before this call started; returns once done
        (other threads that call meanwhile wait for the same entries)."""
        head = self.store.last_change()
        if head <= self.applied:
            return
        with self._lock:
            while self.applied < head:
                pending = self.store.changes(self.applied, CATCH_UP_BATCH)
                if not pending:
                    break
                try:
                    self._apply(pending)
                except Exception:
                    # A change every worker accepted when it was logged: failing here
                    # is a bug, and retrying it on every request would wedge the worker.
                    LOG.exception("changes %s-%s could not be applied", pending[0].seq,
                                  pending[-1].seq)  # fmt: skip
                    self.failed += len(pending)
                self.applied = pending[-1].seq

    def behind(self) -> int:
        """How many logged changes this process has not applied yet."""
        return max(0, self.store.last_change() - self.applied)


def follow(follower: ChangeFollower, stop: threading.Event) -> None:
    """Catch up every ``FOLLOW_SECONDS`` until ``stop``; a store outage is waited out."""
    while not stop.wait(FOLLOW_SECONDS):
        try:
            follower.catch_up()
        except Exception as e:  # the store is down: requests answer 503 meanwhile
            LOG.warning("cannot read the change log: %s", e)


def private_index_copy(index: Path) -> Path:
    """A copy of the index folder that only this process writes, removed when the
    process exits (copies left by processes that were killed are removed here). The
    embedding cache stays behind: each copy caches what it embeds itself, as
    the cache's files are not written safely by two processes at once."""
    root = Path(tempfile.gettempdir()) / REPLICA_ROOT
    root.mkdir(exist_ok=True)
    for old in root.iterdir():
        pid = old.name.split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    copy = root / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    shutil.copytree(index, copy, ignore=shutil.ignore_patterns("embeddings"))
    atexit.register(shutil.rmtree, copy, ignore_errors=True)
    LOG.info("copied %s to %s in %.2f s", index, copy, time.perf_counter() - started)
    return copy
