"""Generic CSV / TSV / JSON-lines / Parquet files with a column mapping.

A folder may hold ``events*``, ``items*`` and ``users*`` files; any other file
of the format counts as events. ``shopsense generate`` writes this layout.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from shopsense.data.formats.common import (
    ReadOptions,
    canonical_events,
    canonical_items,
    canonical_users,
    files_in,
)
from shopsense.data.sources import (
    Chunk,
    Source,
    event_chunks,
    read_delimited,
    read_jsonl,
    read_parquet,
    read_table_whole,
)

SUFFIXES = {
    "csv": (".csv",),
    "tsv": (".tsv", ".tab"),
    "jsonl": (".jsonl", ".ndjson", ".json"),
    "parquet": (".parquet", ".pq"),
}


def _chunks(fmt: str, path: Path, chunk_rows: int) -> Iterator[Chunk]:
    if fmt == "csv":
        return read_delimited(path, ",", chunk_rows=chunk_rows)
    if fmt == "tsv":
        return read_delimited(path, "\t", chunk_rows=chunk_rows)
    if fmt == "jsonl":
        return read_jsonl(path, chunk_rows)
    return read_parquet(path, chunk_rows)


def read(fmt: str, paths: list[Path], options: ReadOptions) -> Source:
    files = files_in(paths, SUFFIXES[fmt])
    items_files = [f for f in files if f.name.startswith(("items", "catalog", "products"))]
    users_files = [f for f in files if f.name.startswith("users")]
    event_files = [f for f in files if f not in items_files and f not in users_files]

    def whole(group: list[Path]) -> pd.DataFrame:
        frames = [
            read_table_whole(_chunks(fmt, f, options.chunk_rows), with_origin=True) for f in group
        ]
        return pd.concat(frames, ignore_index=True)

    items = canonical_items(whole(items_files), options.mapping) if items_files else None
    users = canonical_users(whole(users_files), options.mapping) if users_files else None
    events: Iterator[Chunk] = itertools.chain.from_iterable(
        event_chunks(
            _chunks(fmt, f, options.chunk_rows),
            lambda frame: canonical_events(frame, options, ("item_category",)),
        )
        for f in event_files
    )
    return Source(
        name=f"{fmt}:{', '.join(p.name for p in paths)}",
        events=events,
        items=items,
        users=users,
        timestamp_unit=options.timestamp_unit or "s",
        files=[str(f) for f in files],
    )
