"""S3-Rec / SASRec sequence files: one line per user, ``user item item ...``.

There are no clock times: an event's timestamp is its position in the line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from shopsense.data.formats.common import ReadOptions, files_in
from shopsense.data.sources import MALFORMED, BadLine, Chunk, Source, numbered_lines


def _chunks(path: Path, options: ReadOptions) -> Iterator[Chunk]:
    """Events in chunks; every event of a line has that line's number as its record."""
    users: list[str] = []
    items: list[str] = []
    positions: list[int] = []
    records: list[int] = []
    bad_lines: list[BadLine] = []
    emitted = False

    def flush() -> Chunk:
        frame = pd.DataFrame(
            {"user_id": users, "item_id": items, "timestamp": [str(p) for p in positions]}
        )
        frame["type"] = options.default_type or "view"
        return Chunk(frame, str(path), np.array(records, np.int64), bad_lines)

    for number, line in numbered_lines(path):
        fields = [] if isinstance(line, BadLine) else line.split()
        if len(fields) >= 2:
            n = len(fields) - 1
            users.extend([fields[0]] * n)
            items.extend(fields[1:])
            positions.extend(range(n))
            records.extend([number] * n)
        else:
            bad_lines.append(
                line if isinstance(line, BadLine) else BadLine(number, MALFORMED, line)
            )
        if max(len(users), len(bad_lines)) >= options.chunk_rows:  # bounded, even on bad lines
            yield flush()
            users, items, positions, records, bad_lines, emitted = [], [], [], [], [], True
    if users or bad_lines or not emitted:
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
