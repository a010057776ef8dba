"""The embedded default store: one SQLite file in WAL mode.

An event batch is one transaction committed with ``synchronous=FULL`` before
the service answers, so an acknowledged event survives the process being
killed; the unique event id makes a client's retry harmless. Each thread
gets its own connection (SQLite connections are not shared across threads).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from shopsense.errors import ShopsenseError
from shopsense.serving.store import (
    RECENT_STEPS,
    Change,
    Event,
    Impression,
    StateStore,
    Step,
    unavailable_on,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    type TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    item_id TEXT,
    session_id TEXT,
    query TEXT,
    request_id TEXT,
    value REAL
);
CREATE INDEX IF NOT EXISTS events_user ON events (user_id);
CREATE TABLE IF NOT EXISTS recent (
    user_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    type TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batch (user_id TEXT PRIMARY KEY, items TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    timestamp INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS impressions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT,
    impression TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS impressions_user ON impressions (user_id);
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    name TEXT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (collection, name)
) WITHOUT ROWID;
"""
COLUMNS = "event_id, user_id, type, timestamp, item_id, session_id, query, request_id, value"
ADDED_COLUMNS = {"value": "REAL"}
"""Columns of ``events`` newer than some stores on disk: added when such a store opens."""


@unavailable_on(sqlite3.OperationalError)
class SQLiteStore(StateStore):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ShopsenseError(f"cannot create {self.path.parent}: {e.strerror}") from None
        self._local = threading.local()
        # Writers of this process queue here, in turn, rather than in SQLite's
        # busy handler, which sleeps up to 100 ms between tries (a 1.3 s p99 for
        # event batches posted four at a time); other processes still meet there.
        self._writer = threading.Lock()
        db = self._connection()
        db.executescript(SCHEMA)
        have = {row[1] for row in db.execute("PRAGMA table_info(events)")}
        for column, kind in ADDED_COLUMNS.items():
            if column not in have:
                db.execute(f"ALTER TABLE events ADD COLUMN {column} {kind}")

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, in autocommit mode (reads see committed data)."""
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            except sqlite3.Error as e:
                raise ShopsenseError(f"cannot open state store {self.path}: {e}") from None
            _switch_to_wal(db)
            db.execute("PRAGMA synchronous=FULL")
            self._local.db = db
        return db

    def _write(self) -> _Transaction:
        return _Transaction(self._connection(), self._writer)

    # ------------------------------------------------------------- events
    def append_events(self, events: list[Event]) -> int:
        new = 0
        with self._write() as db:
            for e in events:
                cursor = db.execute(
                    f"INSERT OR IGNORE INTO events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (e.event_id, e.user_id, e.type, e.timestamp, e.item_id, e.session_id,
                     e.query, e.request_id, e.value),
                )  # fmt: skip
                if cursor.rowcount == 0:
                    continue
                new += 1
                if e.item_id is not None and e.type != "search":
                    db.execute(
                        "INSERT INTO recent VALUES (?, ?, ?, ?, ?)",
                        (e.user_id, cursor.lastrowid, e.item_id, e.type, e.timestamp),
                    )
            for user in {e.user_id for e in events}:
                db.execute(
                    "DELETE FROM recent WHERE user_id = ? AND seq NOT IN "
                    "(SELECT seq FROM recent WHERE user_id = ? ORDER BY seq DESC LIMIT ?)",
                    (user, user, RECENT_STEPS),
                )
        return new

    def events(self, after: int = 0, limit: int = 10_000) -> list[tuple[int, Event]]:
        db = self._connection()
        rows = db.execute(
            f"SELECT seq, {COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
        return [(r[0], Event(*r[1:])) for r in rows]

    def event_count(self) -> int:
        db = self._connection()
        return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def recent(self, user_id: str, n: int = RECENT_STEPS) -> list[Step]:
        db = self._connection()
        rows = db.execute(
            "SELECT item_id, type, timestamp FROM recent WHERE user_id = ? "
            "ORDER BY seq DESC LIMIT ?",
            (user_id, n),
        ).fetchall()
        return [Step(*r) for r in reversed(rows)]

    # ------------------------------------------------------------- batch
    def put_batch(self, recommendations: dict[str, list[tuple[str, float]]]) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO batch VALUES (?, ?)",
                ((u, json.dumps(items)) for u, items in recommendations.items()),
            )

    def batch(self, user_id: str) -> list[tuple[str, float]] | None:
        db = self._connection()
        row = db.execute("SELECT items FROM batch WHERE user_id = ?", (user_id,)).fetchone()
        return None if row is None else [(i, float(s)) for i, s in json.loads(row[0])]

    # ------------------------------------------------------------- counters
    def incr(self, counter: str, by: int = 1) -> int:
        with self._write() as db:
            row = db.execute(
                "INSERT INTO counters VALUES (?, ?) ON CONFLICT (name) "
                "DO UPDATE SET value = value + excluded.value RETURNING value",
                (counter, by),
            ).fetchone()
        return int(row[0])

    def counter(self, counter: str) -> int:
        db = self._connection()
        row = db.execute("SELECT value FROM counters WHERE name = ?", (counter,)).fetchone()
        return 0 if row is None else int(row[0])

    def delete_user(self, user_id: str) -> int:
        with self._write() as db:
            removed = db.execute("DELETE FROM events WHERE user_id = ?", (user_id,)).rowcount
            db.execute("DELETE FROM recent WHERE user_id = ?", (user_id,))
            db.execute("DELETE FROM batch WHERE user_id = ?", (user_id,))
            db.execute("DELETE FROM impressions WHERE user_id = ?", (user_id,))
        return int(removed)

    # ------------------------------------------------------------- impressions
    def append_impressions(self, impressions: list[Impression]) -> None:
        """The batch goes in as one JSON array read by one statement: one step,
        so the writer thread gives up and takes back the GIL twice a batch (the
        statement and the commit) rather than once an impression, which made
        request threads wait for it."""
        rows = json.dumps([i.to_dict() for i in impressions], ensure_ascii=False)
        with self._write() as db:
            db.execute(
                "INSERT INTO impressions (user_id, impression) "
                "SELECT json_extract(value, '$.user_id'), value FROM json_each(?) ORDER BY key",
                (rows,),
            )

    def impressions(self, after: int = 0, limit: int = 10_000) -> list[tuple[int, Impression]]:
        rows = self._connection().execute(
            "SELECT seq, impression FROM impressions WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        )
        return [(seq, Impression.from_dict(json.loads(raw))) for seq, raw in rows]

    # ------------------------------------------------------------- documents
    def put_document(self, collection: str, name: str, document: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO documents VALUES (?, ?, ?)",
                (collection, name, json.dumps(document, ensure_ascii=False)),
            )

    def documents(self, collection: str) -> dict[str, dict[str, Any]]:
        rows = self._connection().execute(
            "SELECT name, document FROM documents WHERE collection = ?", (collection,)
        )
        return {name: json.loads(raw) for name, raw in rows}

    def claim(self, key: str, owner: str) -> str:
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO claims VALUES (?, ?)", (key, owner))
            return db.execute("SELECT owner FROM claims WHERE key = ?", (key,)).fetchone()[0]

    def release(self, key: str, owner: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, owner))

    # ------------------------------------------------------------- change log
    def append_change(self, kind: str, payload: Any) -> int:
        """The next sequence number is taken inside the write transaction
        (``BEGIN IMMEDIATE`` excludes other writers), so numbers have no gaps."""
        with self._write() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM changes").fetchone()[0]
            db.execute(
                "INSERT INTO changes VALUES (?, ?, ?, ?)",
                (seq, kind, json.dumps(payload, ensure_ascii=False), int(time.time())),
            )
        return int(seq)

    def changes(self, after: int = 0, limit: int = 1000) -> list[Change]:
        rows = self._connection().execute(
            "SELECT seq, kind, payload, timestamp FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        )
        return [Change(seq, kind, json.loads(payload), ts) for seq, kind, payload, ts in rows]

    def last_change(self) -> int:
        row = self._connection().execute("SELECT MAX(seq) FROM changes").fetchone()
        return int(row[0] or 0)

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _switch_to_wal(db: sqlite3.Connection, tries: int = 100) -> None:
    """WAL mode, waiting for a connection that opens the same new file at once
    (two workers starting on a fresh state store): the switch answers
    "database is locked" at once instead of waiting as a write would."""
    for _ in range(tries - 1):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e):
                raise
            time.sleep(0.05)
    db.execute("PRAGMA journal_mode=WAL")


class _Transaction:
    """``with`` block = one ``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on
    error), holding this process's writer lock throughout."""

    def __init__(self, db: sqlite3.Connection, writer: threading.Lock) -> None:
        self.db = db
        self.writer = writer

    def __enter__(self) -> sqlite3.Connection:
        self.writer.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.writer.release()
            raise
        return self.db

    def __exit__(self, kind, value, traceback) -> None:
        try:
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            self.writer.release()
