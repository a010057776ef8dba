"""Alibaba Taobao UserBehavior.csv: ``user,item,category,behavior,timestamp``, no header."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from shopsense.data.formats.common import ReadOptions, files_in, map_types
from shopsense.data.sources import Source, delimited_event_chunks

COLUMNS = ["user_id", "item_id", "item_category", "type", "timestamp"]
TYPES = {"view": "pv", "purchase": "buy", "cart": "cart", "fav": "fav"}
# The published collection window, 2017-11-25 to 2017-12-03 inclusive, in UTC+8.
WINDOW = (1_511_539_200.0, 1_512_316_800.0)


def _transform(frame: pd.DataFrame) -> pd.DataFrame:
    frame["type"] = map_types(frame["type"], TYPES)
    return frame


def read(paths: list[Path], options: ReadOptions) -> Source:
    files = files_in(paths, (".csv",))
    events = delimited_event_chunks(files, ",", _transform, options.chunk_rows, COLUMNS)
    return Source(
        name="taobao",
        events=events,
        timestamp_unit="s",
        time_window=WINDOW,
        files=[str(f) for f in files],
    )
