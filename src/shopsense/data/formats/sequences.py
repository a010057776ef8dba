"""S3-Rec / SASRec sequence files: one line per user, ``user item item ...``.

There are no clock times: an event's timestamp is its position in the line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from shopsense.data.formats.common import ReadOptions, files_in
from shopsense.data.sources import EventChunk, Source


def _chunks(path: Path, options: ReadOptions) -> Iterator[EventChunk]:
    users: list[str] = []
    items: list[str] = []
    positions: list[int] = []
    malformed: list[tuple[int | None, str]] = []
    record = 0

    def flush() -> EventChunk:
        frame = pd.DataFrame(
            {"user_id": users, "item_id": items, "timestamp": [str(p) for p in positions]}
        )
        frame["type"] = options.default_type or "view"
        return EventChunk(frame, str(path), record, malformed[:])

    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                malformed.append((number, line.rstrip("\n")))
                continue
            user = fields[0]
            users.extend([user] * (len(fields) - 1))
            items.extend(fields[1:])
            positions.extend(range(len(fields) - 1))
            if len(users) >= options.chunk_rows:
                chunk = flush()
                yield chunk
                record += len(chunk.frame)
                users, items, positions = [], [], []
                malformed.clear()
    if users or malformed or record == 0:
        yield flush()


def read(paths: list[Path], options: ReadOptions) -> Source:
    files = files_in(paths, (".txt",))
    events = (chunk for f in files for chunk in _chunks(f, options))
    return Source(
        name=f"sequences:{files[0].stem}",
        events=events,
        timestamp_unit="order",
        time_is_order=True,
        files=[str(f) for f in files],
    )
