"""What a format reader hands to ingestion, and the chunked file readers they share.

Files are read in chunks of ``chunk_rows`` so a 10M-row CSV goes through in
bounded memory; every field is read as a string so cleaning can quarantine
the original text of a bad row.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shopsense.errors import ShopsenseError

TimestampUnit = Literal["s", "ms", "iso", "order"]
DEFAULT_CHUNK_ROWS = 1_000_000


@dataclass
class EventChunk:
    """Raw events of one chunk, columns named as in ``RAW_EVENT_COLUMNS``.

    ``malformed`` holds lines that could not even be split into fields.
    An optional ``item_category`` column describes items the catalog lacks.
    """

    frame: pd.DataFrame
    file: str
    first_record: int
    malformed: list[tuple[int | None, str]] = field(default_factory=list)


@dataclass
class Source:
    """Everything one format reader found under the user's paths."""

    name: str
    events: Iterable[EventChunk]
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    timestamp_unit: TimestampUnit = "s"
    time_window: tuple[float, float] | None = None
    time_is_order: bool = False
    files: list[str] = field(default_factory=list)


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ShopsenseError(f"{what} not found: {path}")
    return path


def header_of(path: Path, delimiter: str, encoding: str = "utf-8") -> list[str]:
    with open(path, encoding=encoding, newline="") as f:
        line = f.readline()
    if not line.strip():
        raise ShopsenseError(f"{path} is empty")
    return [c.strip() for c in next(csv.reader([line], delimiter=delimiter))]


def read_delimited(
    path: Path | io.BytesIO,
    delimiter: str,
    column_names: list[str] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    encoding: str = "utf-8",
    quoting: bool = True,
    label: str | None = None,
) -> Iterator[tuple[pd.DataFrame, list[tuple[int | None, str]], int]]:
    """Yield ``(frame, malformed_lines, first_record)``, all fields as strings.

    With ``column_names`` the file has no header; otherwise its first line is one.
    """
    name = label or str(path)
    skip = 0
    if column_names is None:
        if not isinstance(path, Path):
            raise ValueError("a header-less stream needs column_names")
        column_names = header_of(path, delimiter, encoding)
        skip = 1
    malformed: list[tuple[int | None, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        malformed.append((row.number, row.text))
        return "skip"

    source = str(path) if isinstance(path, Path) else path
    try:
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(
                column_names=column_names,
                skip_rows=skip,
                block_size=32 << 20,
                encoding=encoding,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                quote_char='"' if quoting else False,
                invalid_row_handler=on_invalid,
                newlines_in_values=False,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in column_names},
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise ShopsenseError(f"cannot read {name}: {exc}") from None
    record = 0
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    done = False
    while not done:
        try:
            batch = reader.read_next_batch()
            pending.append(batch)
            pending_rows += batch.num_rows
        except StopIteration:
            done = True
        except pa.ArrowInvalid as exc:
            raise ShopsenseError(f"cannot read {name}: {exc}") from None
        if pending_rows < chunk_rows and not done:
            continue
        table = pa.Table.from_batches(pending, schema=reader.schema)
        while table.num_rows >= chunk_rows or (
            done and (table.num_rows or malformed or not record)
        ):
            piece = table.slice(0, chunk_rows)
            table = table.slice(chunk_rows)
            yield piece.to_pandas(types_mapper=pd.ArrowDtype), malformed[:], record
            record += piece.num_rows
            malformed.clear()
        pending, pending_rows = table.to_batches(), table.num_rows


def read_jsonl(path: Path, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, list, int]]:
    """JSON lines in chunks; a line that is not a JSON object is malformed."""
    rows: list[dict] = []
    malformed: list[tuple[int | None, str]] = []
    record = 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                obj = None
            if not isinstance(obj, dict):
                malformed.append((number, line.rstrip("\n")))
                continue
            rows.append(obj)
            if len(rows) >= chunk_rows:
                yield pd.DataFrame(rows), malformed[:], record
                record += len(rows)
                rows.clear()
                malformed.clear()
    if rows or malformed or record == 0:
        yield pd.DataFrame(rows), malformed[:], record


def read_parquet(path: Path, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, list, int]]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ShopsenseError(f"cannot read {path}: {exc}") from None
    record = 0
    for batch in pf.iter_batches(batch_size=chunk_rows):
        frame = batch.to_pandas()
        yield frame, [], record
        record += len(frame)
    if record == 0:
        yield pf.schema_arrow.empty_table().to_pandas(), [], 0


def read_table_whole(chunks: Iterator[tuple[pd.DataFrame, list, int]]) -> pd.DataFrame:
    """A small table (catalog, users) read at once; malformed lines are an error there."""
    frames = []
    for frame, malformed, _ in chunks:
        if malformed:
            number, text = malformed[0]
            raise ShopsenseError(f"malformed line {number}: {text[:120]!r}")
        frames.append(frame.astype(object).where(frame.notna(), None))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def event_chunks(
    chunks: Iterator[tuple[pd.DataFrame, list, int]],
    file: str,
    transform: Callable[[pd.DataFrame], pd.DataFrame],
) -> Iterator[EventChunk]:
    """Turn raw file chunks into :class:`EventChunk`, renaming columns with ``transform``."""
    for frame, malformed, first in chunks:
        yield EventChunk(transform(frame), file, first, malformed)


def delimited_event_chunks(
    files: list[Path],
    delimiter: str,
    transform: Callable[[pd.DataFrame], pd.DataFrame],
    chunk_rows: int,
    column_names: list[str] | None = None,
) -> Iterator[EventChunk]:
    """Event chunks of several delimited files, one after another."""
    for f in files:
        yield from event_chunks(
            read_delimited(f, delimiter, column_names, chunk_rows), str(f), transform
        )
