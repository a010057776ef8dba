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

from shopsense.search.finetune import CROSS_FIT
from shopsense.serving.store import Change, StateStore

LOG = logging.getLogger("shopsense.serving")
FOLLOW_SECONDS = 1.0
CATCH_UP_BATCH = 500
REPLICA_ROOT = "shopsense-replicas"


class ChangeApplyError(Exception):
    """Applying log entries failed after ``applied`` (the last entry in effect)."""

    def __init__(self, applied: int, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.applied = applied
        self.cause = cause


class ChangeFollower:
    """Applies the store's change log to this process, in order, exactly once.

    ``applied`` is this process's offset: the entries 1 … ``applied`` are in
    effect here. ``apply`` receives each batch of new entries in order and
    returns; when one fails it raises ``ChangeApplyError`` saying how far it
    got. The follower then stays there: the failed entry is tried again (by
    the background thread every ``FOLLOW_SECONDS``, not by every request),
    and until it applies, ``problem`` says why and readiness fails, so a load
    balancer stops sending this worker traffic. An entry is never skipped: an
    erasure that failed here must not be lost.

    A log whose head is behind ``applied`` was reset (a state store emptied or
    replaced): what this process applied is no longer in it, so it refuses to
    go on (``problem``) rather than ignore the new entries that reuse old
    numbers."""

    def __init__(self, store: StateStore, apply: Callable[[list[Change]], None]) -> None:
        self.store = store
        self._apply = apply
        self.applied = 0
        self.problem: str | None = None
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._lock = threading.Lock()
        self._failed_at = 0.0

    def catch_up(self, retry: bool = False) -> None:
        """Apply every entry appended before this call started; returns once done
        (other threads that call meanwhile wait for the same entries). After a
        failure, only a call with ``retry`` (or one ``FOLLOW_SECONDS`` later)
        tries again; the others serve what is applied."""
        head = self.store.last_change()
        if head < self.applied:
            self.problem = (
                f"the change log went back from entry {self.applied} to {head} (its state "
                "store was emptied or replaced): restart the service to rebuild from it"
            )
            return
        if head == self.applied:
            return
        if self.problem and not retry and time.monotonic() - self._failed_at < FOLLOW_SECONDS:
            return
        with self._lock:
            while self.applied < head:
                pending = self.store.changes(self.applied, CATCH_UP_BATCH)
                if not pending:
                    break
                try:
                    self._apply(pending)
                except ChangeApplyError as e:
                    self.applied = e.applied
                    self._failed_at = time.monotonic()
                    self.problem = f"change {e.applied + 1} cannot be applied yet: {e.cause}"
                    LOG.error("%s (tried again every %s s)", self.problem, FOLLOW_SECONDS)
                    return
                self.applied = pending[-1].seq
                self.problem = None

    def behind(self) -> int:
        """How many logged changes this process has not applied yet."""
        return max(0, self.store.last_change() - self.applied)


def follow(follower: ChangeFollower, stop: threading.Event) -> None:
    """Catch up every ``FOLLOW_SECONDS`` until ``stop``; a store outage is waited out."""
    while not stop.wait(FOLLOW_SECONDS):
        try:
            follower.catch_up(retry=True)
        except Exception as e:  # the store is down: requests answer 503 meanwhile
            LOG.warning("cannot read the change log: %s", e)


def replica_root() -> Path:
    return Path(tempfile.gettempdir()) / f"{REPLICA_ROOT}-{os.getuid()}"


def remove_copy(copy: Path) -> None:
    shutil.rmtree(copy, ignore_errors=True)


def private_index_copy(index: Path) -> Path:
    """A copy of the index folder that only this process writes, removed when the
    process exits (copies left by processes that were killed are removed here). The
    embedding cache stays behind: each copy caches what it embeds itself, as
    the cache's files are not written safely by two processes at once. So do
    the fold encoders a ranker's training keeps (``CROSS_FIT``): serving never
    reads them."""
    root = replica_root()
    root.mkdir(mode=0o700, exist_ok=True)  # this user's alone: the copies hold profiles
    for old in root.iterdir():
        pid = old.name.split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    copy = root / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    shutil.copytree(index, copy, ignore=shutil.ignore_patterns("embeddings", CROSS_FIT))
    atexit.register(remove_copy, copy)  # and at the app's shutdown: SIGTERM skips atexit
    LOG.info("copied %s to %s in %.2f s", index, copy, time.perf_counter() - started)
    return copy
