"""RecBole atomic files: ``.inter``, ``.item``, ``.user``, TSV with ``name:type`` headers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from shopsense.data.formats.common import ReadOptions, canonical_items, canonical_users, files_in
from shopsense.data.sources import Source, event_chunks, header_of, read_delimited, read_table_whole

INTER_NAMES = {
    "user_id": "user_id",
    "item_id": "item_id",
    "timestamp": "timestamp",
    "rating": "value",
    "session_id": "session_id",
}
TITLE_NAMES = ("title", "movie_title", "name", "item_name")
CATEGORY_NAMES = ("class", "categories", "category", "genre", "genres")


def _names(path: Path) -> list[str]:
    """Field names without their ``:type`` suffix."""
    return [h.split(":", 1)[0] for h in header_of(path, "\t")]


def _read_small(path: Path) -> pd.DataFrame:
    return read_table_whole(
        read_delimited(path, "\t", _names(path), quoting=False, header=True), with_origin=True
    )


def _items(path: Path) -> pd.DataFrame:
    frame = _read_small(path)
    rename = {"item_id": "item_id"}
    for col in frame.columns:
        if col in TITLE_NAMES and "title" not in rename.values():
            rename[col] = "title"
        elif col in CATEGORY_NAMES and "category" not in rename.values():
            rename[col] = "category"
        elif col in ("brand", "price", "description"):
            rename[col] = col
    frame = frame.rename(columns=rename)
    if "category" in frame.columns:
        # token_seq categories ("Action Comedy"): the first is the leaf, all are kept.
        genres = frame["category"].fillna("").str.split()
        frame["genres"] = genres
        frame["category"] = genres.map(lambda g: g[0] if g else None)
    return canonical_items(frame, {})


def read(paths: list[Path], options: ReadOptions) -> Source:
    files = files_in(paths, (".inter", ".item", ".user"))
    inter = [f for f in files if f.suffix == ".inter"]
    item_files = [f for f in files if f.suffix == ".item"]
    user_files = [f for f in files if f.suffix == ".user"]
    items = pd.concat([_items(f) for f in item_files], ignore_index=True) if item_files else None
    users = (
        canonical_users(pd.concat([_read_small(f) for f in user_files], ignore_index=True), {})
        if user_files
        else None
    )

    def transform(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.rename(columns=INTER_NAMES)
        frame["type"] = options.default_type or "view"
        return frame

    events = (
        chunk
        for path in inter
        for chunk in event_chunks(
            read_delimited(
                path, "\t", _names(path), options.chunk_rows, quoting=False, header=True
            ),
            transform,
        )
    )
    name = inter[0].stem if inter else "recbole"
    return Source(
        name=f"recbole:{name}",
        events=events,
        items=items,
        users=users,
        files=[str(f) for f in files],
    )
