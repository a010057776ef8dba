"""Helpers shared by the format readers: options, file discovery, column mapping."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from shopsense.data.schema import ITEM_COLUMNS, RAW_EVENT_COLUMNS, USER_COLUMNS
from shopsense.data.sources import DEFAULT_CHUNK_ROWS, TimestampUnit
from shopsense.errors import ShopsenseError


@dataclass
class ReadOptions:
    """Options of ``shopsense ingest`` that readers may use.

    ``mapping`` maps canonical column names to the source's (``user_id=visitor``);
    ``type_map`` maps canonical event types to source values (``purchase=buy``).
    """

    chunk_rows: int = DEFAULT_CHUNK_ROWS
    mapping: dict[str, str] = field(default_factory=dict)
    type_map: dict[str, str] = field(default_factory=dict)
    default_type: str | None = None
    timestamp_unit: TimestampUnit | None = None

    def __post_init__(self) -> None:
        if self.chunk_rows < 1:
            raise ShopsenseError(f"chunk_rows must be at least 1, got {self.chunk_rows}")


def files_in(paths: list[Path], suffixes: tuple[str, ...]) -> list[Path]:
    """The files named, and those with a matching suffix inside the folders named."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(suffixes))
            )
        elif path.is_file():
            found.append(path)
        else:
            raise ShopsenseError(f"no such file or folder: {path}")
    if not found:
        raise ShopsenseError(f"no {'/'.join(suffixes)} files in {', '.join(map(str, paths))}")
    return found


def only_folder(paths: list[Path], fmt: str) -> Path:
    """Formats made of several named files take one folder (or one file in it)."""
    if len(paths) != 1:
        raise ShopsenseError(f"format {fmt} takes one folder, got {len(paths)} paths")
    path = paths[0]
    folder = path if path.is_dir() else path.parent
    if not folder.is_dir():
        raise ShopsenseError(f"no such folder: {folder}")
    return folder


def rename_columns(frame: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
    """Rename source columns to canonical names (``mapping`` is canonical → source)."""
    missing = [src for src in mapping.values() if src not in frame.columns]
    if missing and len(frame.columns):
        raise ShopsenseError(f"column(s) {missing} not found; the file has {list(frame.columns)}")
    return frame.rename(columns={src: canon for canon, src in mapping.items()})


def map_types(types: pd.Series, type_map: dict[str, str]) -> pd.Series:
    """Source event-type values to canonical ones; unmapped values pass unchanged.

    Event types have few distinct values, so only those are mapped in Python.
    """
    if not type_map:
        return types
    inverse = {src.lower(): canon for canon, src in type_map.items()}
    codes, uniques = pd.factorize(types)
    mapped = [inverse.get(str(u).strip().lower(), u) for u in uniques]
    out = np.array([*mapped, None], dtype=object)[codes]  # code -1 (missing) → None
    return pd.Series(out, index=types.index)


def fold_extras(frame: pd.DataFrame, keep: tuple[str, ...], into: str) -> pd.DataFrame:
    """Columns beyond ``keep`` become one JSON object column ``into`` (attributes, context)."""
    extras = [c for c in frame.columns if c not in keep and not c.startswith("_")]
    if not extras:
        return frame
    records = frame[extras].to_dict(orient="records")
    folded = [
        json.dumps({k: v for k, v in r.items() if v is not None and v == v}, ensure_ascii=False)
        for r in records
    ]
    out = frame.drop(columns=extras)
    out[into] = folded
    return out


def canonical_events(
    frame: pd.DataFrame, options: ReadOptions, extra_keep: tuple[str, ...] = ()
) -> pd.DataFrame:
    frame = rename_columns(frame, options.mapping)
    if "type" not in frame.columns or frame["type"].isna().all():
        frame["type"] = options.default_type
    frame["type"] = map_types(frame["type"], options.type_map)
    keep = (*RAW_EVENT_COLUMNS, *extra_keep)
    frame = fold_extras(frame, keep, "context") if "context" not in frame.columns else frame
    return frame[[c for c in keep if c in frame.columns]]


def canonical_items(frame: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
    frame = rename_columns(frame, mapping)
    if "attributes" in frame.columns:
        return frame
    return fold_extras(frame, ITEM_COLUMNS, "attributes")


def unescape_html(texts: pd.Series) -> pd.Series:
    """Text scraped from web pages, with its HTML entities (&amp;, &#39;, &nbsp;)
    read as the characters they stand for: shown as such, and searchable."""
    return texts.map(lambda t: html.unescape(t).replace("\xa0", " ") if t else t)


def canonical_users(frame: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
    frame = rename_columns(frame, mapping)
    if "attributes" in frame.columns:
        return frame
    return fold_extras(frame, USER_COLUMNS, "attributes")
