"""What a format reader hands to ingestion, and the chunked file readers they share.

Files are read in chunks of ``chunk_rows`` so a 10M-row CSV goes through in
bounded memory; every field is read as a string so cleaning can quarantine
the original text of a bad row.

Every row carries its *record number*, 1-based and exact, so a quarantined
row can be found in the file: for CSV/TSV and JSON lines it is the line where
the record starts (a header is line 1; blank lines count as lines, but are not
records), for sequence files the line of the user (one line holds several
events), and for Parquet, which has no lines, the row.

Text is UTF-8 unless a format says otherwise; a leading byte-order mark is
skipped, and a line with bytes that are not UTF-8 is a bad line
(``invalid_utf8``), quarantined with the bytes written as ``\\xNN`` escapes.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import dataclasses
import io
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shopsense.errors import ShopsenseError

TimestampUnit = Literal["s", "ms", "iso", "order"]
DEFAULT_CHUNK_ROWS = 1_000_000
MALFORMED = "malformed_line"
INVALID_UTF8 = "invalid_utf8"
TOO_DEEP = "too_deeply_nested"
MAX_JSON_DEPTH = 64
"""Deepest JSON nesting read (an event object is depth 1). A store's records
are far shallower; the limit keeps every later step that walks a value (JSON
encoding of ``context``) clear of Python's recursion limit."""
ORIGIN_FILE = "_file"
ORIGIN_RECORD = "_record"


class BadLine(NamedTuple):
    """A line that could not be read as a row: its record number, why
    (``malformed_line``, ``invalid_utf8``, ``too_deeply_nested``) and its text."""

    record: int
    reason: str
    text: str


@dataclass
class Chunk:
    """Rows read from one file: ``records[i]`` is the record number of row ``i``.

    Event chunks name their columns as in ``RAW_EVENT_COLUMNS``; an optional
    ``item_category`` column describes items the catalog lacks.
    """

    frame: pd.DataFrame
    file: str
    records: np.ndarray
    bad_lines: list[BadLine] = field(default_factory=list)


@dataclass
class Source:
    """Everything one format reader found under the user's paths."""

    name: str
    events: Iterable[Chunk]
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


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name == "utf-8"


def _unreadable(name: str, exc: Exception) -> ShopsenseError:
    return ShopsenseError(f"cannot read {name}: {exc}")


def header_of(path: Path, delimiter: str, encoding: str = "utf-8") -> list[str]:
    """Column names from the first line (a byte-order mark skipped)."""
    with open(path, "rb") as f:
        line = f.readline()
    try:
        text = line.decode("utf-8-sig" if _is_utf8(encoding) else encoding)
    except UnicodeDecodeError:
        name = codecs.lookup(encoding).name.upper()
        raise ShopsenseError(f"{path}: the header line is not {name} text") from None
    if not text.strip():
        raise ShopsenseError(f"{path} is empty")
    return [c.strip() for c in next(csv.reader([text], delimiter=delimiter))]


BLOCK_BYTES = 16 << 20


def _line_blocks(f: BinaryIO) -> Iterator[bytes]:
    """The file in blocks of whole lines (the last may lack its newline)."""
    rest = b""
    while data := f.read(BLOCK_BYTES):
        data = rest + data
        cut = data.rfind(b"\n") + 1
        if cut:
            yield data[:cut]
        rest = data[cut:]
    if rest:
        yield rest


def _as_utf8(block: bytes, encoding: str, first_line: int, bad_lines: list[int]) -> bytes | None:
    """Whole lines in an ASCII-compatible ``encoding`` as UTF-8, or None when
    they already are; a line that is not valid in ``encoding`` gets its bad bytes
    written as ``\\xNN`` escapes and its number added to ``bad_lines``.
    Escapes are ASCII, so delimiters, quotes and newlines stay put."""
    if block.isascii():
        return None
    try:
        text = block.decode(encoding)
    except UnicodeDecodeError:
        lines = block.split(b"\n")
        for i, line in enumerate(lines):
            try:
                lines[i] = line.decode(encoding).encode()
            except UnicodeDecodeError:
                bad_lines.append(first_line + i)
                lines[i] = line.decode(encoding, "backslashreplace").encode()
        return b"\n".join(lines)
    return None if _is_utf8(encoding) else text.encode()


@contextlib.contextmanager
def _utf8_input(source: Path | io.BytesIO, encoding: str) -> Iterator[tuple[Any, list[int]]]:
    """The source as UTF-8 that pyarrow reads natively, with the lines that
    held bytes not in ``encoding``.

    A file already in UTF-8 (or plain ASCII) is read as it is, after one pass
    that checks it; any other is repaired or transcoded into a temporary copy.
    pyarrow is never handed a Python stream: its reads from one run on its own
    threads and can hang the interpreter's exit (apache/arrow#50482).
    """
    bad_lines: list[int] = []
    if isinstance(source, io.BytesIO):
        data = source.getvalue()
        fixed = _as_utf8(data, encoding, 1, bad_lines)
        yield pa.BufferReader(data if fixed is None else fixed), bad_lines
        return
    with open(source, "rb") as f:
        clean = all(_as_utf8(block, encoding, 1, []) is None for block in _line_blocks(f))
    if clean:
        yield str(source), bad_lines
        return
    with tempfile.TemporaryDirectory(prefix="shopsense-") as tmp:
        copy = Path(tmp) / source.name
        with open(source, "rb") as f, open(copy, "wb") as out:
            line = 1
            for block in _line_blocks(f):
                fixed = _as_utf8(block, encoding, line, bad_lines)
                out.write(block if fixed is None else fixed)
                line += block.count(b"\n")
        yield str(copy), bad_lines


class _CsvRecords:
    """The rows pyarrow parses, numbered by the line each starts on.

    pyarrow numbers rows (blank lines included, as rows of nulls) and tells the
    numbers of the rows it cannot parse only; a good row's number is the next
    one no bad row took. A row starts on the line after the previous row ends,
    and spans one line more than the newlines in its quoted values. A header
    is parsed as row 1, so it counts like any row, and is dropped.
    """

    def __init__(
        self, header: bool, undecodable_lines: list[int], delimiter: str, quoting: bool
    ) -> None:
        self.header, self.undecodable_lines = header, undecodable_lines
        self.delimiter, self.quoting = delimiter, quoting
        self.next_row = self.next_line = 1
        self.invalid: list[tuple[int, str]] = []

    def on_invalid(self, row: pacsv.InvalidRow) -> str:
        self.invalid.append((row.number, row.text))
        return "skip"

    def take(
        self, batch: pa.RecordBatch, final: bool
    ) -> tuple[pa.Table, np.ndarray, list[BadLine]]:
        """The batch's records with their numbers, and the bad lines up to its
        last row (all that are left when ``final``). Blank lines are dropped, and
        records on a line that was not UTF-8 become bad lines."""
        spans = np.ones(batch.num_rows, np.int64)
        for column in batch.columns if self.quoting else ():  # only quotes hold newlines
            data = column.buffers()[2]  # all the column's text: one scan says if any has one
            if data is not None and b"\n" in data.to_pybytes():
                spans += pc.fill_null(pc.count_substring(column, "\n"), 0).to_numpy()
        blank = np.ones(batch.num_rows, bool)
        for column in batch.columns:
            blank &= column.is_null().to_numpy(zero_copy_only=False)
            if not blank.any():
                break
        starts, invalid_starts, invalid_spans, texts = self._number(spans, final)
        undecodable = _overlapping(invalid_starts, invalid_spans, self.undecodable_lines)
        bad_lines = [
            BadLine(int(start), INVALID_UTF8 if bad else MALFORMED, text)
            for start, bad, text in zip(invalid_starts, undecodable, texts, strict=True)
            if text.strip() and not (self.header and start == 1)
        ]
        undecodable = _overlapping(starts, spans, self.undecodable_lines)
        rows = batch.filter(pa.array(undecodable)).to_pylist()
        for start, row in zip(starts[undecodable], rows, strict=True):
            text = self.delimiter.join(v or "" for v in row.values())
            bad_lines.append(BadLine(int(start), INVALID_UTF8, text))
        keep = ~blank & ~undecodable & ~(self.header & (starts == 1))
        return pa.Table.from_batches([batch.filter(pa.array(keep))]), starts[keep], bad_lines

    def _number(
        self, spans: np.ndarray, final: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """Start lines of the next ``len(spans)`` good rows, then the start lines,
        spans and texts of the invalid rows up to the last of them (all of them
        when ``final``)."""
        n = len(spans)
        rows = np.array([r for r, _ in self.invalid], dtype=np.int64)
        good_before = rows - self.next_row - np.arange(len(rows))
        k = np.arange(n)
        good_rows = self.next_row + k + np.searchsorted(good_before, k, side="right")
        m = len(rows) if final else int(np.searchsorted(good_before, n - 1, side="right"))
        texts = [t for _, t in self.invalid[:m]]
        del self.invalid[:m]
        invalid_spans = np.array([1 + t.count("\n") for t in texts], dtype=np.int64)
        all_rows = np.concatenate([good_rows, rows[:m]])
        all_spans = np.concatenate([spans, invalid_spans])
        order = np.argsort(all_rows, kind="stable")
        ends = self.next_line + np.cumsum(all_spans[order])
        starts = np.empty(len(all_rows), np.int64)
        starts[order] = ends - all_spans[order]
        if len(all_rows):
            self.next_row, self.next_line = int(all_rows.max()) + 1, int(ends[-1])
        return starts[:n], starts[n:], invalid_spans, texts


def _overlapping(starts: np.ndarray, spans: np.ndarray, lines: list[int]) -> np.ndarray:
    """Rows (first line ``starts``, ``spans`` lines) that hold one of ``lines`` (sorted)."""
    if not lines:
        return np.zeros(len(starts), bool)
    marked = np.asarray(lines)
    at = np.minimum(np.searchsorted(marked, starts), len(marked) - 1)
    return (marked[at] >= starts) & (marked[at] < starts + spans)


class _Rechunker:
    """Numbered batches of any size in, chunks of ``chunk_rows`` out; the last
    chunk may be smaller, and a file yields at least one (empty) chunk. A
    chunk also goes out once it has ``chunk_rows`` bad lines, so memory stays
    bounded on a file of bad lines."""

    def __init__(self, file: str, chunk_rows: int) -> None:
        self.file, self.chunk_rows = file, chunk_rows
        self.tables: list[pa.Table] = []
        self.records: list[np.ndarray] = []
        self.bad_lines: list[BadLine] = []
        self.rows = 0
        self.emitted = False

    def add(
        self, table: pa.Table, records: np.ndarray, bad_lines: list[BadLine]
    ) -> Iterator[Chunk]:
        self.tables.append(table)
        self.records.append(records)
        self.bad_lines.extend(bad_lines)
        self.rows += table.num_rows
        while max(self.rows, len(self.bad_lines)) >= self.chunk_rows:
            yield self._take(min(self.rows, self.chunk_rows))

    def rest(self) -> Iterator[Chunk]:
        while self.rows or self.bad_lines or not self.emitted:
            yield self._take(min(self.rows, self.chunk_rows))

    def _take(self, n: int) -> Chunk:
        table, records = pa.concat_tables(self.tables), np.concatenate(self.records)
        self.tables, self.records = [table.slice(n)], [records[n:]]
        self.rows -= n
        bad_lines = self.bad_lines[: self.chunk_rows]
        del self.bad_lines[: self.chunk_rows]
        self.emitted = True
        frame = table.slice(0, n).to_pandas(types_mapper=pd.ArrowDtype)
        return Chunk(frame, self.file, records[:n], bad_lines)


def read_delimited(
    path: Path | io.BytesIO,
    delimiter: str,
    column_names: list[str] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    encoding: str = "utf-8",
    quoting: bool = True,
    label: str | None = None,
    header: bool = False,
) -> Iterator[Chunk]:
    """Chunks of a delimited file, all fields as strings.

    Without ``column_names`` the names come from the first line, the header;
    with them, the first line is a header to skip only when ``header``. A line
    with the wrong number of fields is ``malformed_line``; a line with no values
    at all (blank, or delimiters only) is not a record.
    """
    name = label or str(path)
    if column_names is None:
        if not isinstance(path, Path):
            raise ValueError("a header-less stream needs column_names")
        column_names = header_of(path, delimiter, encoding)
        header = True
    chunks = _Rechunker(name, chunk_rows)
    try:
        with _utf8_input(path, encoding) as (source, undecodable_lines):
            records = _CsvRecords(header, undecodable_lines, delimiter, quoting)
            reader = pacsv.open_csv(
                source,
                read_options=pacsv.ReadOptions(
                    column_names=column_names,
                    block_size=32 << 20,
                    use_threads=False,  # pyarrow numbers bad rows only when reading in order
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=delimiter,
                    quote_char='"' if quoting else False,
                    invalid_row_handler=records.on_invalid,
                    newlines_in_values=False,
                    ignore_empty_lines=False,  # blank lines stay rows, so rows map to lines
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in column_names},
                    strings_can_be_null=True,
                    null_values=[""],
                ),
            )
            final = False
            while not final:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    batch = pa.RecordBatch.from_pylist([], schema=reader.schema)
                    final = True
                yield from chunks.add(*records.take(batch, final))
            yield from chunks.rest()
    except (pa.ArrowInvalid, OSError) as exc:
        raise _unreadable(name, exc) from None


def numbered_lines(path: Path) -> Iterator[tuple[int, str | BadLine]]:
    """The file's non-blank lines with their numbers, as text, or as a bad line
    (``invalid_utf8``) where the bytes are not UTF-8."""
    try:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    text = raw.decode("utf-8", "backslashreplace").rstrip("\r\n")
                    yield number, BadLine(number, INVALID_UTF8, text)
                    continue
                if line.strip():
                    yield number, line
    except OSError as exc:
        raise _unreadable(str(path), exc) from None


def _too_deep(value: Any, limit: int) -> bool:
    """Whether a parsed JSON value nests deeper than ``limit`` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _json_object(line: str) -> dict | str:
    """The line's JSON object, or the reason it is not one."""
    try:
        obj = json.loads(line)
    except RecursionError:
        return TOO_DEEP
    except ValueError:  # not JSON, or an integer past Python's digit limit
        return MALFORMED
    if not isinstance(obj, dict):
        return MALFORMED
    return TOO_DEEP if _too_deep(obj, MAX_JSON_DEPTH) else obj


def read_jsonl(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    """JSON lines in chunks; a line must hold one JSON object."""
    rows: list[dict] = []
    records: list[int] = []
    bad_lines: list[BadLine] = []
    emitted = False
    for number, line in numbered_lines(path):
        parsed = line if isinstance(line, BadLine) else _json_object(line)
        if isinstance(parsed, dict):
            rows.append(parsed)
            records.append(number)
        else:
            bad_lines.append(BadLine(number, parsed, line) if isinstance(parsed, str) else parsed)
        if max(len(rows), len(bad_lines)) >= chunk_rows:  # bounded memory, even on bad lines
            yield Chunk(pd.DataFrame(rows), str(path), np.array(records, np.int64), bad_lines)
            rows, records, bad_lines, emitted = [], [], [], True
    if rows or bad_lines or not emitted:
        yield Chunk(pd.DataFrame(rows), str(path), np.array(records, np.int64), bad_lines)


def read_parquet(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    """Parquet row groups in chunks; a record number is the 1-based row."""
    try:
        pf = pq.ParquetFile(path)
        done = 0
        for batch in pf.iter_batches(batch_size=chunk_rows):
            records = np.arange(done + 1, done + 1 + batch.num_rows)
            yield Chunk(batch.to_pandas(), str(path), records)
            done += batch.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise _unreadable(str(path), exc) from None
    if done == 0:
        yield Chunk(pf.schema_arrow.empty_table().to_pandas(), str(path), np.empty(0, np.int64))


def read_table_whole(chunks: Iterator[Chunk], with_origin: bool = False) -> pd.DataFrame:
    """A small table (catalog, users) read at once; a bad line is an error there.

    ``with_origin`` adds each row's file and record number (``_file``, ``_record``)
    for the quarantine.
    """
    frames = []
    for chunk in chunks:
        if chunk.bad_lines:
            record, reason, text = chunk.bad_lines[0]
            raise ShopsenseError(
                f"{chunk.file}, line {record}: {reason.replace('_', ' ')} {text[:120]!r} "
                "(a catalog or users file is read whole, so it must have no bad lines)"
            )
        frame = chunk.frame.astype(object).where(chunk.frame.notna(), None)
        if with_origin:
            frame[ORIGIN_FILE], frame[ORIGIN_RECORD] = chunk.file, chunk.records
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def event_chunks(
    chunks: Iterator[Chunk], transform: Callable[[pd.DataFrame], pd.DataFrame]
) -> Iterator[Chunk]:
    """Chunks with columns renamed by ``transform``, which keeps every row in place."""
    for chunk in chunks:
        yield dataclasses.replace(chunk, frame=transform(chunk.frame))


def delimited_event_chunks(
    files: list[Path],
    delimiter: str,
    transform: Callable[[pd.DataFrame], pd.DataFrame],
    chunk_rows: int,
    column_names: list[str] | None = None,
) -> Iterator[Chunk]:
    """Event chunks of several delimited files, one after another."""
    for f in files:
        yield from event_chunks(read_delimited(f, delimiter, column_names, chunk_rows), transform)
