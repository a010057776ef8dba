"""Home Depot ``products.csv`` (product_uid,title, optional description/brand) as a catalog."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from shopsense.data.formats.common import (
    ReadOptions,
    canonical_items,
    files_in,
    unescape_html,
)
from shopsense.data.sources import Source, read_delimited, read_table_whole


def read(paths: list[Path], options: ReadOptions) -> Source:
    files = [f for f in files_in(paths, (".csv",)) if f.name.startswith("product")]
    frames = []
    for f in files:
        frame = read_table_whole(
            read_delimited(f, ",", chunk_rows=options.chunk_rows), with_origin=True
        )
        frame = frame.rename(
            columns={
                "product_uid": "item_id",
                "product_title": "title",
                "product_description": "description",
            }
        )
        items = canonical_items(frame, {})
        for column in {"title", "description"} & set(items.columns):
            items[column] = unescape_html(items[column])
        frames.append(items)
    return Source(
        name="homedepot",
        events=iter(()),
        items=pd.concat(frames, ignore_index=True),
        files=[str(f) for f in files],
    )
