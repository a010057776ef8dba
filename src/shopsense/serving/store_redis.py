"""The shared store on Redis, for several API processes or machines.

Events go into one stream (``XADD``, arrival order) with a set of seen event
ids for idempotency; a batch is one ``MULTI``/``EXEC`` transaction, run by a
Lua script so that duplicates inside and across batches are skipped
atomically. Durability is Redis's: run it with ``appendonly yes`` and
``appendfsync always`` for the guarantee the SQLite store gives.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

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

PREFIX = "shopsense:"
STREAM_SEQ = 1_000_000
# KEYS: seen set, stream; ARGV: recent-steps length, then per event: id, json,
# recent key ('' for none), step json. Returns how many events were new.
APPEND = """
local new = 0
local i = 2
while i <= #ARGV do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[2], '*', 'e', ARGV[i + 1])
    if ARGV[i + 2] ~= '' then
      redis.call('RPUSH', ARGV[i + 2], ARGV[i + 3])
      redis.call('LTRIM', ARGV[i + 2], -tonumber(ARGV[1]), -1)
    end
    new = new + 1
  end
  i = i + 4
end
return new
"""

# KEYS: claims hash; ARGV: key, owner. Deletes the claim only if owner holds it.
RELEASE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


@unavailable_on(redis.ConnectionError, redis.TimeoutError)
class RedisStore(StateStore):
    """The change log is one list: ``RPUSH`` is atomic and answers the list's new
    length, which is the entry's sequence number (1, 2, … with no gaps)."""

    def __init__(self, url: str) -> None:
        self.url = url
        # Bounded waits: a Redis that hangs must give 503s, not requests that never end.
        self._redis = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=5, socket_connect_timeout=2
        )
        try:
            self._redis.ping()
        except redis.RedisError as e:
            raise ShopsenseError(f"cannot reach Redis at {url}: {e}") from None
        self._append = self._redis.register_script(APPEND)
        self._release = self._redis.register_script(RELEASE)

    def _key(self, *parts: str) -> str:
        return PREFIX + ":".join(parts)

    def append_events(self, events: list[Event]) -> int:
        args: list[str | int] = [RECENT_STEPS]
        for e in events:
            step = ""
            if e.item_id is not None and e.type != "search":
                step = json.dumps([e.item_id, e.type, e.timestamp])
            args += [
                e.event_id,
                json.dumps(e.to_dict()),
                self._key("recent", e.user_id) if step else "",
                step,
            ]
        return int(self._append(keys=[self._key("seen"), self._key("events")], args=args))

    def events(self, after: int = 0, limit: int = 10_000) -> list[tuple[int, Event]]:
        return [
            (seq, Event(**json.loads(fields["e"])))
            for seq, fields in self._stream_after(self._key("events"), after, limit)
        ]

    def _stream_after(
        self, stream: str, after: int, limit: int
    ) -> list[tuple[int, dict[str, str]]]:
        """A stream's entries after sequence number ``after``: an entry's number
        is its id's milliseconds × ``STREAM_SEQ`` + its sequence part."""
        start = "-" if after <= 0 else f"{after // STREAM_SEQ}-{after % STREAM_SEQ + 1}"
        out = []
        for stream_id, fields in self._redis.xrange(stream, start, "+", count=limit):
            ms, seq = stream_id.split("-")
            out.append((int(ms) * STREAM_SEQ + int(seq), fields))
        return out

    def event_count(self) -> int:
        return int(self._redis.xlen(self._key("events")))

    def recent(self, user_id: str, n: int = RECENT_STEPS) -> list[Step]:
        return [
            Step(*json.loads(s)) for s in self._redis.lrange(self._key("recent", user_id), -n, -1)
        ]

    def put_batch(self, recommendations: dict[str, list[tuple[str, float]]]) -> None:
        if recommendations:
            self._redis.hset(
                self._key("batch"),
                mapping={u: json.dumps(items) for u, items in recommendations.items()},
            )

    def batch(self, user_id: str) -> list[tuple[str, float]] | None:
        raw = self._redis.hget(self._key("batch"), user_id)
        return None if raw is None else [(i, float(s)) for i, s in json.loads(raw)]

    def incr(self, counter: str, by: int = 1) -> int:
        return int(self._redis.hincrby(self._key("counters"), counter, by))

    def counter(self, counter: str) -> int:
        return int(self._redis.hget(self._key("counters"), counter) or 0)

    def delete_user(self, user_id: str) -> int:
        """Rewrites the user's stream entries away (a full scan of the events and
        the impressions: deletion is rare)."""
        stream, shown = self._key("events"), self._key("impressions")
        doomed, seen = [], []
        for stream_id, fields in self._redis.xrange(stream):
            event = json.loads(fields["e"])
            if event["user_id"] == user_id:
                doomed.append(stream_id)
                seen.append(event["event_id"])
        theirs = [
            stream_id
            for stream_id, fields in self._redis.xrange(shown)
            if json.loads(fields["i"]).get("user_id") == user_id
        ]
        with self._redis.pipeline() as pipe:
            if doomed:
                pipe.xdel(stream, *doomed)
                pipe.srem(self._key("seen"), *seen)
            if theirs:
                pipe.xdel(shown, *theirs)
            pipe.delete(self._key("recent", user_id))
            pipe.hdel(self._key("batch"), user_id)
            pipe.execute()
        return len(doomed)

    def append_impressions(self, impressions: list[Impression]) -> None:
        with self._redis.pipeline() as pipe:  # MULTI/EXEC: the batch or nothing
            for impression in impressions:
                entry = json.dumps(impression.to_dict(), ensure_ascii=False)
                pipe.xadd(self._key("impressions"), {"i": entry})
            pipe.execute()

    def impressions(self, after: int = 0, limit: int = 10_000) -> list[tuple[int, Impression]]:
        return [
            (seq, Impression.from_dict(json.loads(fields["i"])))
            for seq, fields in self._stream_after(self._key("impressions"), after, limit)
        ]

    def put_document(self, collection: str, name: str, document: dict[str, Any]) -> None:
        self._redis.hset(self._key("documents", collection), name, json.dumps(document))

    def documents(self, collection: str) -> dict[str, dict[str, Any]]:
        raw = self._redis.hgetall(self._key("documents", collection))
        return {name: json.loads(doc) for name, doc in raw.items()}

    def claim(self, key: str, owner: str) -> str:
        claims = self._key("claims")
        self._redis.hsetnx(claims, key, owner)
        return str(self._redis.hget(claims, key))

    def release(self, key: str, owner: str) -> None:
        self._release(keys=[self._key("claims")], args=[key, owner])

    def append_change(self, kind: str, payload: Any) -> int:
        entry = {"kind": kind, "payload": payload, "timestamp": int(time.time())}
        return int(self._redis.rpush(self._key("changes"), json.dumps(entry, ensure_ascii=False)))

    def changes(self, after: int = 0, limit: int = 1000) -> list[Change]:
        raw = self._redis.lrange(self._key("changes"), after, after + limit - 1)
        return [Change(after + 1 + n, **json.loads(entry)) for n, entry in enumerate(raw)]

    def last_change(self) -> int:
        return int(self._redis.llen(self._key("changes")))

    def close(self) -> None:
        self._redis.close()
