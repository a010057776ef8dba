"""Diginetica (CIKM Cup 2016) ``train-item-views.csv``:
``session_id;user_id;item_id;timeframe;eventdate``.

Most sessions are anonymous (``user_id`` NA): the session then stands for the
user. ``timeframe`` is milliseconds since the session's start, added to the date.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shopsense.data.formats.common import ReadOptions, files_in
from shopsense.data.sources import Source, delimited_event_chunks


def _transform(frame: pd.DataFrame) -> pd.DataFrame:
    anonymous = frame["user_id"].isna() | (frame["user_id"] == "NA")
    frame["user_id"] = frame["user_id"].where(~anonymous, "session:" + frame["session_id"])
    day = pd.to_datetime(frame["eventdate"], errors="coerce", utc=True, format="%Y-%m-%d")
    offset = pd.to_numeric(frame["timeframe"], errors="coerce") / 1000.0
    seconds = (day - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1) + offset
    parsed = seconds.notna()
    # Unparseable dates keep their text, so the cleaner quarantines it as written.
    frame["timestamp"] = np.where(parsed, seconds.astype(str), frame["eventdate"])
    frame["type"] = "view"
    return frame.drop(columns=["timeframe", "eventdate"])


def read(paths: list[Path], options: ReadOptions) -> Source:
    files = files_in(paths, (".csv",))
    events = delimited_event_chunks(files, ";", _transform, options.chunk_rows)
    return Source(name="diginetica", events=events, files=[str(f) for f in files])
