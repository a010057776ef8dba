"""Calendar context of events: hour, weekday, weekend, month, holiday."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import numpy as np
import pandas as pd

DEFAULT_HOLIDAYS: tuple[str, ...] = ("01-01", "02-14", "11-11", "12-24", "12-25", "12-31")
"""Month-day holidays every year (New Year, Valentine's, Singles' Day, Christmas...)."""


def calendar_features(
    timestamps: Iterable[int] | np.ndarray,
    holidays: Iterable[str | dt.date] = DEFAULT_HOLIDAYS,
    utc_offset_hours: float = 0.0,
) -> pd.DataFrame:
    """One row per Unix timestamp: ``hour``, ``weekday`` (0 = Monday),
    ``is_weekend``, ``month``, ``is_holiday``.

    ``holidays`` holds "MM-DD" strings (every year) or dates (that day only);
    ``utc_offset_hours`` gives local time (8 for China).
    """
    ts = pd.to_datetime(
        np.asarray(
            list(timestamps) if not isinstance(timestamps, np.ndarray) else timestamps,
            dtype=np.int64,
        ),
        unit="s",
    )
    local = ts + pd.Timedelta(hours=utc_offset_hours)
    every_year = {h for h in holidays if isinstance(h, str)}
    dated = {h for h in holidays if isinstance(h, dt.date)}
    month_day = local.strftime("%m-%d")
    dates = local.date
    is_holiday = np.array(
        [md in every_year or d in dated for md, d in zip(month_day, dates, strict=True)], dtype=bool
    )
    return pd.DataFrame(
        {
            "hour": np.asarray(local.hour, np.int8),
            "weekday": np.asarray(local.day_of_week, np.int8),
            "is_weekend": np.asarray(local.day_of_week) >= 5,
            "month": np.asarray(local.month, np.int8),
            "is_holiday": is_holiday,
        }
    )
