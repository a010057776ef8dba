"""Cleaning: every input row is accepted, dropped as an exact duplicate, or
quarantined with a reason. Nothing is lost silently, and the report's counts
always add up to the input rows (``TableReport.check``).

Numbers must be finite: ``inf``, ``-inf`` and values past the float range
(``1e400``) are quarantined (``bad_price``, ``bad_timestamp``, ``bad_value``,
``bad_created_at``) like any text that is not a number, since no exporter
writes them for a real price or time. Empty, ``NaN`` and ``null`` are how
exporters (pandas among them) write a missing value, so they read as missing:
a missing price is allowed, a missing timestamp is not.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from shopsense.data.schema import (
    EVENT_TYPES,
    IN_STOCK_WORDS,
    ITEM_COLUMNS,
    RAW_EVENT_COLUMNS,
    USER_COLUMNS,
)
from shopsense.data.sources import ORIGIN_FILE, ORIGIN_RECORD, BadLine, Chunk, TimestampUnit

EARLIEST_TIMESTAMP = 631_152_000  # 1990-01-01 UTC: before any online store's logs
FUTURE_SLACK_SECONDS = 86_400
DEDUP_COLUMNS = ("user_id", "item_id", "type", "timestamp", "session_id", "query")
MAX_SEGMENTS = 8


@dataclass
class TableReport:
    """Row accounting of one table: ``accepted + duplicates + quarantined == input_rows``."""

    input_rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)

    def add(self, other: TableReport) -> None:
        self.input_rows += other.input_rows
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.quarantined.update(other.quarantined)

    def move_to_quarantine(self, reason: str, n: int) -> None:
        """Rows accepted earlier and rejected by a later, global step (k-core)."""
        self.accepted -= n
        self.quarantined[reason] += n

    def check(self) -> None:
        total = self.accepted + self.duplicates + sum(self.quarantined.values())
        if total != self.input_rows:
            raise AssertionError(f"row accounting broken: {total} != {self.input_rows}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_rows": self.input_rows,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "quarantined": dict(sorted(self.quarantined.items())),
        }


NA_TOKENS = pa.array(["", "NA", "NaN", "nan", "None", "null"])
TEXT = pd.ArrowDtype(pa.string())


def _arrow_text(series: pd.Series) -> pa.ChunkedArray | pa.Array:
    """The values as Arrow strings, whatever they were read as."""
    if isinstance(series.dtype, pd.ArrowDtype) and pa.types.is_string(series.dtype.pyarrow_dtype):
        return series.array._pa_array
    try:
        return pc.cast(pa.array(series, from_pandas=True), pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        values = series.astype(object)
        return pa.array(
            values.where(values.isna(), values.astype(str)), pa.string(), from_pandas=True
        )


def _text(series: pd.Series) -> pd.Series:
    """Stripped strings, with empty and NA-like values as missing (vectorized in Arrow)."""
    arr = pc.utf8_trim_whitespace(_arrow_text(series))
    arr = pc.if_else(pc.is_in(arr, value_set=NA_TOKENS), pa.scalar(None, pa.string()), arr)
    return pd.Series(pd.arrays.ArrowExtensionArray(arr), index=series.index, dtype=TEXT)


def parse_timestamps(raw: pd.Series, unit: TimestampUnit) -> np.ndarray:
    """Seconds since the epoch as float, NaN where the text does not parse."""
    if unit == "iso":
        parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
        secs = (parsed - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
        return secs.to_numpy(dtype=float, na_value=np.nan)
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return values / 1000.0 if unit == "ms" else values


def _representable(seconds: np.ndarray) -> np.ndarray:
    """Finite and within int64 seconds (NaN, inf and 1e300 are not)."""
    with np.errstate(invalid="ignore"):
        return np.abs(seconds) < 2.0**63


def default_time_window(unit: TimestampUnit) -> tuple[float, float] | None:
    if unit == "order":
        return None
    return float(EARLIEST_TIMESTAMP), time.time() + FUTURE_SLACK_SECONDS


class _Rejector:
    """Collects the first reason each row fails, in the order checks are made."""

    def __init__(self, n: int) -> None:
        self.reason = np.full(n, None, dtype=object)

    def reject(self, mask: np.ndarray, reason: str) -> None:
        self.reason[mask & (self.reason == None)] = reason  # noqa: E711 (object array)

    @property
    def ok(self) -> np.ndarray:
        return self.reason == None  # noqa: E711


def _rejected_rows(
    frame: pd.DataFrame,
    reasons: np.ndarray,
    table: str,
    files: str | pd.Series,
    records: np.ndarray | pd.Series,
) -> pd.DataFrame:
    """Quarantine lines of the rejected rows: ``files`` is one name or one per row;
    columns starting with ``_`` are shopsense's, not the source's, and left out."""
    mask = reasons != None  # noqa: E711
    bad = frame.loc[mask, [c for c in frame.columns if not c.startswith("_")]]
    return pd.DataFrame(
        {
            "table": table,
            "file": files if isinstance(files, str) else np.asarray(files)[mask],
            "record": np.asarray(records)[mask],
            "reason": reasons[mask],
            "row": bad.astype(object).where(bad.notna(), None).to_dict(orient="records"),
        }
    )


def bad_line_rows(bad_lines: list[BadLine], table: str, file: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "table": table,
            "file": file,
            "record": [line.record for line in bad_lines],
            "reason": [line.reason for line in bad_lines],
            "row": [{"text": line.text} for line in bad_lines],
        }
    )


class EventCleaner:
    """Validates event chunks one at a time, remembering row hashes to drop
    exact duplicates across chunks (8 bytes per accepted row)."""

    def __init__(
        self,
        timestamp_unit: TimestampUnit = "s",
        time_window: tuple[float, float] | None = None,
        catalog: pd.Index | None = None,
    ) -> None:
        self.timestamp_unit = timestamp_unit
        self.time_window = time_window
        self.catalog = catalog
        self.report = TableReport()
        self._seen: list[np.ndarray] = []

    def clean(self, chunk: Chunk) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Return (accepted events with ``timestamp`` as int64 seconds and their
        record numbers as ``_record``, quarantined rows)."""
        raw = chunk.frame
        for col in RAW_EVENT_COLUMNS:
            if col not in raw.columns:
                raw[col] = None
        n = len(raw)
        report = TableReport(input_rows=n + len(chunk.bad_lines))
        report.quarantined.update(line.reason for line in chunk.bad_lines)
        frame = pd.DataFrame(
            {c: _text(raw[c]) for c in ("user_id", "item_id", "session_id", "query")}
        )
        frame["type"] = _text(raw["type"]).str.lower()
        rej = _Rejector(n)
        rej.reject(frame["user_id"].isna().to_numpy(), "missing_user_id")
        rej.reject(~frame["type"].isin(EVENT_TYPES).to_numpy(), "unknown_event_type")
        rej.reject(
            (frame["item_id"].isna() & (frame["type"] != "search")).to_numpy(), "missing_item_id"
        )
        ts_text = _text(raw["timestamp"])
        ts = parse_timestamps(ts_text, self.timestamp_unit)
        rej.reject(ts_text.isna().to_numpy(), "missing_timestamp")
        rej.reject(~_representable(ts), "bad_timestamp")
        if self.time_window is not None:
            lo, hi = self.time_window
            with np.errstate(invalid="ignore"):
                rej.reject((ts < lo) | (ts >= hi), "timestamp_out_of_range")
        if self.catalog is not None:
            known = frame["item_id"].isna() | frame["item_id"].isin(self.catalog)
            rej.reject(~known.to_numpy(), "unknown_item")
        value_text = _text(raw["value"])
        value = pd.to_numeric(value_text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        rej.reject(value_text.notna().to_numpy() & ~np.isfinite(value), "bad_value")
        frame["timestamp"] = np.where(rej.ok, np.floor(ts), 0).astype(np.int64)
        frame["value"] = value
        frame[ORIGIN_RECORD] = chunk.records
        context = raw["context"]
        if context.dtype == object and context.notna().any():  # JSON lines give dicts
            context = context.map(
                lambda v: json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v
            )
        frame["context"] = _text(context)
        if "item_category" in raw.columns:
            frame["item_category"] = _text(raw["item_category"])
        for reason, count in Counter(rej.reason[~rej.ok]).items():
            report.quarantined[reason] += count
        quarantine = pd.concat(
            [
                bad_line_rows(chunk.bad_lines, "events", chunk.file),
                _rejected_rows(raw, rej.reason, "events", chunk.file, chunk.records),
            ],
            ignore_index=True,
        )
        good = frame[rej.ok]
        keep = self._first_occurrences(good)
        report.duplicates = int((~keep).sum())
        accepted = good[keep].reset_index(drop=True)
        report.accepted = len(accepted)
        report.check()
        self.report.add(report)
        return accepted, quarantine

    def _first_occurrences(self, good: pd.DataFrame) -> np.ndarray:
        """Rows not seen before; seen hashes sit in a few sorted segments that are
        merged now and then, so a chunk costs the same however many came before."""
        hashes = pd.util.hash_pandas_object(good[list(DEDUP_COLUMNS)], index=False).to_numpy()
        keep = ~pd.Series(hashes).duplicated().to_numpy()
        for segment in self._seen:
            pos = np.minimum(np.searchsorted(segment, hashes), len(segment) - 1)
            keep &= segment[pos] != hashes
        if keep.any():
            self._seen.append(np.sort(hashes[keep]))
            if len(self._seen) > MAX_SEGMENTS:
                self._seen = [np.sort(np.concatenate(self._seen))]
        return keep


def _clean_table(
    frame: pd.DataFrame,
    id_column: str,
    table: str,
    extra_checks: list[tuple[np.ndarray, str]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, TableReport]:
    """Shared catalog/users cleaning: ids present, exact duplicates dropped,
    a repeated id with different content quarantined (the first one wins).

    Rows carry where they came from (``_file``, ``_record``: ``read_table_whole``
    with ``with_origin``); that and the other ``_`` columns are not content."""
    report = TableReport(input_rows=len(frame))
    frame = frame.reset_index(drop=True)
    ids = _text(frame[id_column])
    frame[id_column] = ids
    rej = _Rejector(len(frame))
    rej.reject(ids.isna().to_numpy(), f"missing_{id_column}")
    for mask, reason in extra_checks or []:
        rej.reject(mask, reason)
    content = [c for c in frame.columns if not c.startswith("_")]
    hashes = pd.util.hash_pandas_object(frame[content].astype(str), index=False)
    exact_dup = hashes.duplicated().to_numpy() & rej.ok
    id_dup = ids.duplicated().to_numpy() & ~exact_dup
    rej.reject(id_dup, f"duplicate_{id_column}")
    for reason, count in Counter(rej.reason[~rej.ok]).items():
        report.quarantined[reason] += count
    quarantine = _rejected_rows(
        frame, rej.reason, table, frame[ORIGIN_FILE], frame[ORIGIN_RECORD].astype(np.int64)
    )
    accepted = frame[rej.ok & ~exact_dup].reset_index(drop=True)
    report.duplicates = int(exact_dup.sum())
    report.accepted = len(accepted)
    report.check()
    return accepted, quarantine, report


def _to_epoch_seconds(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Numbers as seconds, else ISO dates; returns (seconds, unparseable mask)."""
    text = _text(raw)
    numeric = parse_timestamps(text, "s")
    iso = parse_timestamps(text.where(np.isnan(numeric), None), "iso")
    secs = np.where(np.isnan(numeric), iso, numeric)
    return secs, text.notna().to_numpy() & ~_representable(secs)


def clean_items(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, TableReport]:
    """Catalog rows: id required, price a finite non-negative number when given,
    ``in_stock`` one of ``IN_STOCK_WORDS`` (true when not given)."""
    frame = frame.copy()
    for col in ITEM_COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    price_text = _text(frame["price"])
    price = pd.to_numeric(price_text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    created, bad_created = _to_epoch_seconds(frame["created_at"])
    stock_text = _text(frame["in_stock"]).str.lower().astype(object)
    stock = stock_text.map(IN_STOCK_WORDS)
    checks = [
        (price_text.notna().to_numpy() & ~np.isfinite(price), "bad_price"),
        (price < 0, "negative_price"),
        (bad_created, "bad_created_at"),
        ((stock_text.notna() & stock.isna()).to_numpy(), "bad_in_stock"),
    ]
    frame["_price"], frame["_created"] = price, created
    frame["_in_stock"] = stock.where(stock.notna(), True).astype(bool)
    accepted, quarantine, report = _clean_table(frame, "item_id", "items", checks)
    accepted["price"] = accepted["_price"].astype(float)
    accepted["created_at"] = pd.array(
        np.floor(accepted["_created"].to_numpy(dtype=float)), dtype="Float64"
    ).astype("Int64")
    accepted["in_stock"] = accepted["_in_stock"].astype(bool)
    accepted = accepted[list(ITEM_COLUMNS)].copy()
    for col in ("title", "description", "category", "brand"):
        accepted[col] = _text(accepted[col])
    accepted["attributes"] = accepted["attributes"].map(_json_object)
    return accepted, quarantine, report


def clean_users(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, TableReport]:
    frame = frame.copy()
    for col in USER_COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    accepted, quarantine, report = _clean_table(frame, "user_id", "users")
    accepted = accepted[list(USER_COLUMNS)].copy()
    accepted["attributes"] = accepted["attributes"].map(_json_object)
    return accepted, quarantine, report


def _json_object(value: Any) -> str:
    """Attributes are stored as a JSON object string ("{}" when absent)."""
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "{}"
    text = str(value)
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return json.dumps({"value": text}, ensure_ascii=False)
    return json.dumps(
        parsed if isinstance(parsed, dict) else {"value": parsed},
        ensure_ascii=False,
        sort_keys=True,
    )
