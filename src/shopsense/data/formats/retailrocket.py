"""RetailRocket ``events.csv``: ``timestamp,visitorid,event,itemid,transactionid``
with millisecond timestamps and events view / addtocart / transaction."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from shopsense.data.formats.common import ReadOptions, files_in, map_types
from shopsense.data.sources import Source, delimited_event_chunks

TYPES = {"view": "view", "cart": "addtocart", "purchase": "transaction"}


def _transform(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.rename(columns={"visitorid": "user_id", "itemid": "item_id", "event": "type"})
    frame["type"] = map_types(frame["type"], TYPES)
    tid = frame.pop("transactionid")
    frame["context"] = ('{"transaction_id": "' + tid + '"}').where(tid.notna(), None)
    return frame


def read(paths: list[Path], options: ReadOptions) -> Source:
    files = [f for f in files_in(paths, (".csv",)) if f.name.startswith("events")]
    events = delimited_event_chunks(files, ",", _transform, options.chunk_rows)
    return Source(
        name="retailrocket", events=events, timestamp_unit="ms", files=[str(f) for f in files]
    )
