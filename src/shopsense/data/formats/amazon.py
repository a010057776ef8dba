"""Amazon reviews as implicit feedback: a folder with ``interactions.csv``
(user_id,item_id,timestamp) and ``items.csv`` (item_id,title). A review
implies a purchase."""

from __future__ import annotations

from pathlib import Path

from shopsense.data.formats.common import ReadOptions, canonical_items, only_folder, unescape_html
from shopsense.data.sources import (
    Source,
    event_chunks,
    read_delimited,
    read_table_whole,
    require_file,
)


def read(paths: list[Path], options: ReadOptions) -> Source:
    folder = only_folder(paths, "amazon")
    inter = require_file(folder / "interactions.csv", "amazon interactions.csv")
    items_path = require_file(folder / "items.csv", "amazon items.csv")
    items = canonical_items(read_table_whole(read_delimited(items_path, ","), with_origin=True), {})
    items["title"] = unescape_html(items["title"])

    def transform(frame):
        frame["type"] = options.default_type or "purchase"
        return frame

    events = event_chunks(read_delimited(inter, ",", chunk_rows=options.chunk_rows), transform)
    return Source(
        name=f"amazon:{folder.name}",
        events=events,
        items=items,
        files=[str(inter), str(items_path)],
    )
