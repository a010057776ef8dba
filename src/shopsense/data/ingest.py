"""``shopsense ingest``: read a source in chunks, clean it, and write a dataset.

Output: ``items.parquet``, ``users.parquet``, ``events.parquet``,
``manifest.json``, ``report.json`` and ``quarantine.jsonl`` (every rejected
row with its reason).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from shopsense.data.clean import (
    MAX_SEGMENTS,
    EventCleaner,
    TableReport,
    clean_items,
    clean_users,
    default_time_window,
)
from shopsense.data.dataset import EVENTS_FILE, ITEMS_FILE, MANIFEST, USERS_FILE
from shopsense.data.erasure import TOMBSTONES_FILE, erased_mask, write_tombstones
from shopsense.data.erasure import tombstones as erased_hashes
from shopsense.data.formats import ReadOptions, open_source
from shopsense.data.kcore import k_core_mask
from shopsense.data.schema import ITEM_COLUMNS, SCHEMA_VERSION, USER_COLUMNS
from shopsense.data.sources import ORIGIN_RECORD, Source
from shopsense.errors import ShopsenseError

REPORT_FILE = "report.json"
QUARANTINE_FILE = "quarantine.jsonl"
ORIGIN_FILE = "origin.parquet"
ORIGIN_SCHEMA = pa.schema([("file", pa.int32()), ("record", pa.int64())])

EVENT_SCHEMA = pa.schema(
    [
        ("user", pa.int32()),
        ("item", pa.int32()),
        ("type", pa.string()),
        ("timestamp", pa.int64()),
        ("session", pa.string()),
        ("query", pa.string()),
        ("value", pa.float64()),
        ("context", pa.string()),
    ]
)


class IdMap:
    """Source ids (strings) to dense int32 ids, in order of first appearance.

    Ids live in a few hash-indexed segments; each chunk's new ids become a new
    segment and segments are merged only now and then, so a chunk costs the
    same however many ids came before it.
    """

    def __init__(self, initial: Iterable[str] = ()) -> None:
        self._segments: list[pd.Index] = []
        self._size = 0
        self.encode(pd.Series(list(initial), dtype=object))

    @property
    def ids(self) -> list[str]:
        return [i for segment in self._segments for i in segment.tolist()]

    def encode(self, values: pd.Series) -> np.ndarray:
        codes, uniques = pd.factorize(values)
        uniques = pd.Index(np.asarray(uniques, dtype=object))
        found = np.full(len(uniques), -1, np.int64)
        offset = 0
        for segment in self._segments:
            missing = np.flatnonzero(found < 0)
            if not len(missing):
                break
            hit = segment.get_indexer(uniques[missing])
            found[missing[hit >= 0]] = hit[hit >= 0] + offset
            offset += len(segment)
        new = found < 0
        if new.any():
            found[new] = np.arange(self._size, self._size + int(new.sum()))
            self._segments.append(uniques[new])
            self._size += int(new.sum())
            if len(self._segments) > MAX_SEGMENTS:
                self._segments = [self._segments[0].append(self._segments[1:])]
        return found.astype(np.int32)[codes]

    def __len__(self) -> int:
        return self._size


@dataclass
class IngestReport:
    """The counts ``report.json`` holds; ``events`` is also at the top level."""

    source: str
    events: TableReport = field(default_factory=TableReport)
    items: TableReport | None = None
    users: TableReport | None = None
    k_core: int | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, **self.events.as_dict()}
        if self.items is not None:
            out["items"] = self.items.as_dict()
        if self.users is not None:
            out["users"] = self.users.as_dict()
        if self.k_core:
            out["k_core"] = self.k_core
        out["seconds"] = round(self.seconds, 2)
        return out


def format_report(report: dict[str, Any]) -> str:
    """The report as a short human-readable block."""
    lines = [f"source: {report['source']}"]
    for table in ("events", "items", "users"):
        part = report if table == "events" else report.get(table)
        if not part:
            continue
        q = part["quarantined"]
        lines.append(
            f"{table}: {part['input_rows']:,} input rows, {part['accepted']:,} accepted, "
            f"{part['duplicates']:,} duplicates, {sum(q.values()):,} quarantined"
        )
        lines.extend(f"    {reason}: {count:,}" for reason, count in q.items())
    if report["input_rows"] and not report["accepted"]:
        lines.append(f"warning: no event was accepted; {QUARANTINE_FILE} says why for each")
    return "\n".join(lines)


class _QuarantineWriter:
    """quarantine.jsonl: strict JSON, so a non-finite number in a rejected row
    (the reason it was rejected, often) is written as text: "inf", not Infinity.
    Rejected rows of ``erased`` users are counted by their reason but not written."""

    def __init__(self, path: Path, erased: set[str]) -> None:
        self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.erased = erased

    def write(self, rows: pd.DataFrame) -> None:
        if self.erased and len(rows):
            owners = rows["row"].map(lambda r: r.get("user_id") if isinstance(r, dict) else None)
            rows = rows[~erased_mask(owners, self.erased)]
        for rec in rows.to_dict(orient="records"):
            rec["record"] = int(rec["record"])
            try:
                line = json.dumps(rec, ensure_ascii=False, default=str, allow_nan=False)
            except ValueError:
                line = json.dumps(_finite(rec), ensure_ascii=False, default=str)
            self.file.write(line + "\n")

    def close(self) -> None:
        self.file.close()


def _finite(value: Any) -> Any:
    """``value`` with each non-finite float written as text (JSON has no inf)."""
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


class _OriginWriter:
    """Where each accepted event came from (file, record), in events.parquet's
    order, so a later step that drops events (k-core) can quarantine them by
    their place in the input. Written only when such a step will run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: list[str] = []
        self.writer = pq.ParquetWriter(path, ORIGIN_SCHEMA)

    def write(self, file: str, records: np.ndarray) -> None:
        if file not in self.files:
            self.files.append(file)
        index = np.full(len(records), self.files.index(file), np.int32)
        self.writer.write_table(pa.table({"file": index, "record": records}, ORIGIN_SCHEMA))

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """(file name, record) of every event written."""
        self.writer.close()
        origin = pq.read_table(self.path)
        files = np.array(self.files, dtype=object)
        return files[origin["file"].to_numpy()], origin["record"].to_numpy()


def ingest(
    fmt: str,
    paths: list[str | Path],
    out: str | Path,
    options: ReadOptions | None = None,
    k_core: int | None = None,
    progress: bool = True,
    tombstones: Iterable[str] = (),
) -> dict[str, Any]:
    """Ingest ``paths`` in format ``fmt`` into the dataset directory ``out``.

    The dataset is written to a hidden folder beside ``out`` and moved into
    ``out`` once complete, so an ingest that fails leaves no partial dataset,
    and a dataset already in ``out`` stays as it was.

    Users erased from ``out`` before (its ``tombstones.json``), or named by
    ``tombstones`` (``user_hash`` values), stay erased: their rows are counted
    as ``erased_user`` in the report and written nowhere.
    """
    started = time.perf_counter()
    options = options or ReadOptions()
    source = open_source(fmt, [Path(p) for p in paths], options)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ShopsenseError(f"{out} is a file, not a dataset folder")
    erased = set(tombstones) | (erased_hashes(out) if out.is_dir() else set())
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        report = IngestReport(source=source.name, k_core=k_core)
        items, users = _write_tables(source, work, report, k_core, progress, erased)
        if erased:
            write_tombstones(work, erased)
        report.seconds = time.perf_counter() - started
        result = report.as_dict()
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "name": out.name,
            "source": {"format": fmt, "name": source.name, "files": source.files},
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "counts": {
                "users": len(users),
                "items": len(items),
                "events": pq.ParquetFile(work / EVENTS_FILE).metadata.num_rows,
            },
            "time_is_order": source.time_is_order,
            "id_maps": {
                "users": {"file": USERS_FILE, "column": "user_id"},
                "items": {"file": ITEMS_FILE, "column": "item_id"},
            },
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        (work / REPORT_FILE).write_text(json.dumps(result, indent=2) + "\n")
        _publish(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _write_tables(
    source: Source,
    work: Path,
    report: IngestReport,
    k_core: int | None,
    progress: bool,
    erased: set[str],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clean the source into ``work``'s events.parquet, items.parquet,
    users.parquet and quarantine.jsonl, leaving out the ``erased`` users;
    returns the items and users tables."""
    quarantine = _QuarantineWriter(work / QUARANTINE_FILE, erased)
    origin = _OriginWriter(work / ORIGIN_FILE) if k_core else None
    try:
        catalog, users_table = _clean_tables(source, report, quarantine)
        item_map = IdMap(catalog["item_id"]) if catalog is not None else IdMap()
        user_map = IdMap(users_table["user_id"]) if users_table is not None else IdMap()
        window = source.time_window or default_time_window(source.timestamp_unit)
        cleaner = EventCleaner(
            source.timestamp_unit,
            window,
            pd.Index(catalog["item_id"]) if catalog is not None else None,
        )
        new_item_category: dict[int, str] = {}
        with pq.ParquetWriter(work / EVENTS_FILE, EVENT_SCHEMA) as writer:
            bar = tqdm(source.events, desc="ingest", unit=" chunk", disable=not progress)
            for chunk in bar:
                accepted, rejected = cleaner.clean(chunk)
                quarantine.write(rejected)
                accepted = _without_erased(accepted, erased, cleaner.report)
                writer.write_table(_encode(accepted, user_map, item_map, new_item_category))
                if origin is not None:
                    origin.write(chunk.file, accepted[ORIGIN_RECORD].to_numpy(np.int64))
                bar.set_postfix(events=f"{cleaner.report.accepted:,}")
        report.events = cleaner.report
        items = _items_table(catalog, item_map, new_item_category)
        users = _users_table(users_table, user_map)
        if origin is not None and k_core:
            items, users = _apply_k_core(
                work, k_core, items, users, catalog, users_table, report.events, quarantine, origin
            )
    finally:
        quarantine.close()
    items.to_parquet(work / ITEMS_FILE, index=False)
    users.to_parquet(work / USERS_FILE, index=False)
    report.events.check()
    return items, users


def _publish(work: Path, out: Path) -> None:
    """Move the finished files into ``out``, the manifest last: until it is there,
    ``out`` is not a dataset that ``Dataset.load`` opens."""
    out.mkdir(exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    (out / TOMBSTONES_FILE).unlink(missing_ok=True)  # the new one, if any, holds all of it
    for name in (EVENTS_FILE, ITEMS_FILE, USERS_FILE, QUARANTINE_FILE, REPORT_FILE, MANIFEST,
                 TOMBSTONES_FILE):  # fmt: skip
        if (work / name).exists():
            os.replace(work / name, out / name)


def _clean_tables(source: Source, report: IngestReport, quarantine: _QuarantineWriter):
    catalog = users = None
    if source.items is not None:
        catalog, rejected, report.items = clean_items(source.items)
        quarantine.write(rejected)
    if source.users is not None:
        users, rejected, report.users = clean_users(source.users)
        quarantine.write(rejected)
        users = _without_erased(users, quarantine.erased, report.users)
    return catalog, users


def _without_erased(rows: pd.DataFrame, erased: set[str], report: TableReport) -> pd.DataFrame:
    """``rows`` less those of erased users, counted in ``report`` as ``erased_user``."""
    doomed = erased_mask(rows["user_id"], erased)
    if not doomed.any():
        return rows
    report.move_to_quarantine("erased_user", int(doomed.sum()))
    return rows[~doomed].reset_index(drop=True)


def _encode(
    accepted: pd.DataFrame, user_map: IdMap, item_map: IdMap, new_item_category: dict[int, str]
) -> pa.Table:
    n_known = len(item_map)
    has_item = accepted["item_id"].notna().to_numpy()
    item = np.full(len(accepted), -1, np.int32)
    item[has_item] = item_map.encode(accepted["item_id"][has_item])
    if "item_category" in accepted.columns:
        fresh = has_item & (item >= n_known)
        for idx, cat in zip(item[fresh], accepted["item_category"].to_numpy()[fresh], strict=True):
            new_item_category.setdefault(int(idx), cat)
    return pa.table(
        {
            "user": pa.array(user_map.encode(accepted["user_id"]), pa.int32()),
            "item": pa.array(item, pa.int32()),
            "type": _strings(accepted["type"]),
            "timestamp": pa.array(accepted["timestamp"].to_numpy(np.int64), pa.int64()),
            "session": _strings(accepted["session_id"]),
            "query": _strings(accepted["query"]),
            "value": pa.array(accepted["value"].to_numpy(float), pa.float64(), from_pandas=True),
            "context": _strings(accepted["context"]),
        },
        schema=EVENT_SCHEMA,
    )


def _strings(series: pd.Series) -> pa.Array:
    return pa.array(series.astype(object).to_numpy(), pa.string(), from_pandas=True)


def _items_table(
    catalog: pd.DataFrame | None, item_map: IdMap, new_item_category: dict[int, str]
) -> pd.DataFrame:
    """The catalog, then items seen only in events (id and category, when known)."""
    start = 0 if catalog is None else len(catalog)
    extra = pd.DataFrame(
        {c: pd.Series([None] * (len(item_map) - start), dtype=object) for c in ITEM_COLUMNS}
    )
    extra["item_id"] = item_map.ids[start:]
    extra["category"] = [new_item_category.get(i) for i in range(start, len(item_map))]
    extra["attributes"] = "{}"
    extra["price"] = extra["price"].astype(float)
    extra["created_at"] = extra["created_at"].astype("Int64")
    extra["in_stock"] = True
    if catalog is None:
        return extra
    return pd.concat([catalog, extra], ignore_index=True) if len(extra) else catalog


def _users_table(users: pd.DataFrame | None, user_map: IdMap) -> pd.DataFrame:
    start = 0 if users is None else len(users)
    extra = pd.DataFrame({"user_id": user_map.ids[start:], "attributes": "{}"})
    if users is None:
        return extra[list(USER_COLUMNS)]
    return pd.concat([users, extra], ignore_index=True)


def _apply_k_core(
    work: Path,
    k: int,
    items: pd.DataFrame,
    users: pd.DataFrame,
    catalog: pd.DataFrame | None,
    users_file: pd.DataFrame | None,
    report: TableReport,
    quarantine: _QuarantineWriter,
    origin: _OriginWriter,
):
    """Drop events until every user and item has ≥ k, quarantining what goes
    under the file and record each came from.

    Users and items left with no events are dropped too, unless they came from
    a catalog or users file, and dense ids are renumbered.
    """
    if k < 1:
        raise ShopsenseError("--k-core must be at least 1")
    events = pq.read_table(work / EVENTS_FILE).to_pandas()
    keep = k_core_mask(events["user"].to_numpy(), events["item"].to_numpy(), k)
    dropped = events[~keep]
    report.move_to_quarantine("k_core", len(dropped))
    files, records = origin.read()
    quarantine.write(
        pd.DataFrame(
            {
                "table": "events",
                "file": files[~keep],
                "record": records[~keep],
                "reason": "k_core",
                "row": dropped.assign(
                    user=users["user_id"].to_numpy()[dropped["user"].to_numpy()],
                    item=np.where(
                        dropped["item"] >= 0,
                        items["item_id"].to_numpy()[np.maximum(dropped["item"], 0)],
                        None,
                    ),
                )
                .astype(object)
                .where(dropped.notna(), None)
                .to_dict(orient="records"),
            }
        )
    )
    events = events[keep].reset_index(drop=True)
    keep_users = np.zeros(len(users), bool)
    keep_users[events["user"].to_numpy()] = True
    keep_users[: 0 if users_file is None else len(users_file)] = True
    keep_items = np.zeros(len(items), bool)
    keep_items[events.loc[events["item"] >= 0, "item"].to_numpy()] = True
    keep_items[: 0 if catalog is None else len(catalog)] = True
    user_new = (np.cumsum(keep_users) - 1).astype(np.int32)
    item_new = (np.cumsum(keep_items) - 1).astype(np.int32)
    events["user"] = user_new[events["user"].to_numpy()].astype(np.int32)
    has_item = events["item"].to_numpy() >= 0
    events.loc[has_item, "item"] = item_new[events.loc[has_item, "item"].to_numpy()]
    events["item"] = events["item"].astype(np.int32)
    pq.write_table(
        pa.Table.from_pandas(events, schema=EVENT_SCHEMA, preserve_index=False),
        work / EVENTS_FILE,
    )
    return (items[keep_items].reset_index(drop=True), users[keep_users].reset_index(drop=True))
