"""The catalog as the search index sees it: one row per indexed item version,
with the columns filters, facets and sorting read.

Rows are append-only: updating an item marks its old row deleted and appends
a new one, so row numbers stay valid in the lexical and vector indexes and
nothing has to be rebuilt. A full rebuild compacts them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from shopsense.data.schema import category_prefixes, in_stock_flags
from shopsense.errors import ShopsenseError
from shopsense.search.analysis import tokens
from shopsense.search.titles import TitleTermIndex

PRICE_EDGES = (0.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)
FACET_SIZE = 30
CATALOG_COLUMNS = ("item_id", "title", "description", "category", "brand", "price", "attributes")
FILTER_FIELDS = ("category", "brand", "price", "attributes")


def price_bucket_labels() -> list[str]:
    edges = PRICE_EDGES
    return [f"{a:g}-{b:g}" for a, b in itertools.pairwise(edges)] + [f"{edges[-1]:g}+"]


@dataclass
class Filters:
    """AND across fields, OR among the values of one field."""

    category: list[str] = field(default_factory=list)
    brand: list[str] = field(default_factory=list)
    price_min: float | None = None
    price_max: float | None = None
    attributes: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: Filters | dict[str, Any] | None) -> Filters:
        """From a dict such as ``{"brand": ["Acme"], "price_max": 50}``, checked."""
        if value is None:
            return cls()
        if isinstance(value, Filters):
            return value
        if not isinstance(value, dict):
            raise ShopsenseError("filters must be a mapping of field to values")
        unknown = set(value) - {"category", "brand", "price_min", "price_max", "attributes"}
        if unknown:
            raise ShopsenseError(f"unknown filter field(s): {', '.join(sorted(unknown))}")
        out = cls(
            category=_strings(value.get("category"), "category"),
            brand=_strings(value.get("brand"), "brand"),
            price_min=_number(value.get("price_min"), "price_min"),
            price_max=_number(value.get("price_max"), "price_max"),
        )
        attrs = value.get("attributes") or {}
        if not isinstance(attrs, dict):
            raise ShopsenseError("filter attributes must map a name to values")
        out.attributes = {str(k): _strings(v, f"attribute {k}") for k, v in attrs.items()}
        low, high = out.price_min, out.price_max
        if low is not None and high is not None and low > high:
            raise ShopsenseError("price_min is above price_max")
        return out

    def active(self) -> list[str]:
        """The fields this filter constrains."""
        out = [f for f in ("category", "brand") if getattr(self, f)]
        if self.price_min is not None or self.price_max is not None:
            out.append("price")
        if any(self.attributes.values()):
            out.append("attributes")
        return out


def _strings(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
        return [str(v) for v in value]
    raise ShopsenseError(f"filter {name} takes a string or a list of strings")


def _number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ShopsenseError(f"filter {name} takes a number, got {value!r}") from None
    if not np.isfinite(number):
        raise ShopsenseError(f"filter {name} takes a finite number")
    return number


def canonical_catalog(items: pd.DataFrame) -> pd.DataFrame:
    """The catalog columns with defaults, ids as strings."""
    if "item_id" not in items.columns:
        raise ShopsenseError("items need an item_id column")
    items = items.reset_index(drop=True)  # columns are matched by position, not by row label
    out = pd.DataFrame({"item_id": items["item_id"].astype(str).to_numpy()})
    for col in CATALOG_COLUMNS[1:]:
        if col == "price":
            out[col] = pd.to_numeric(items.get(col), errors="coerce") if col in items else np.nan
        else:
            out[col] = items[col].astype(object).to_numpy() if col in items else None
    out["created_at"] = epoch_seconds(items["created_at"]) if "created_at" in items else np.nan
    for col in ("popularity", "search_clicks"):
        out[col] = (
            pd.to_numeric(items[col], errors="coerce").fillna(0.0).to_numpy()
            if col in items
            else 0.0
        )
    for col in ("title", "description", "category", "brand"):
        out[col] = out[col].where(out[col].notna(), "").astype(str)
    out["in_stock"] = in_stock_flags(items.get("in_stock"), len(items))
    attributes = out["attributes"].where(out["attributes"].notna(), "{}")
    out["attributes"] = [json.dumps(a) if isinstance(a, dict) else str(a) for a in attributes]
    return out


def epoch_seconds(values: pd.Series) -> np.ndarray:
    """Unix seconds (NaN where unknown) from numbers or date strings."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().any() or values.isna().all():
        return numeric.to_numpy(np.float64)
    parsed = pd.to_datetime(values, errors="coerce", utc=True)
    return (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(np.float64)


class Catalog:
    """Item columns by index row; ``deleted`` rows are never returned."""

    def __init__(self, items: pd.DataFrame) -> None:
        self.items = items.reset_index(drop=True)
        if "deleted" not in self.items:
            self.items["deleted"] = False
        if "in_stock" not in self.items:  # an index built before items had the flag
            self.items["in_stock"] = True
        self._refresh()

    def _refresh(self) -> None:
        for name in ("brand_codes", "paths", "attribute_columns", "live_rows", "row_of"):
            self.__dict__.pop(name, None)
        items = self.items
        self._columns: dict[str, Any] = {}
        self.n_rows = len(items)
        self.deleted = items["deleted"].to_numpy(bool)
        self.in_stock = items["in_stock"].to_numpy(bool)
        self.price = items["price"].to_numpy(np.float64)
        self.popularity = items["popularity"].to_numpy(np.float64)
        self.search_clicks = items["search_clicks"].to_numpy(np.float64)
        self.created = items["created_at"].to_numpy(np.float64)

    # ------------------------------------------------------------- lookups
    @cached_property
    def brand_codes(self) -> tuple[np.ndarray, np.ndarray]:
        codes, names = pd.factorize(self.items["brand"].replace("", None))
        return codes.astype(np.int32), np.asarray(names, dtype=object)

    @cached_property
    def paths(self) -> tuple[np.ndarray, list[str], list[list[int]], dict[str, int]]:
        """(path code per row, prefixes, prefix codes per path, code of each prefix)."""
        codes, names = pd.factorize(self.items["category"].replace("", None))
        prefixes: dict[str, int] = {}
        per_path = []
        for name in names:
            per_path.append(
                [prefixes.setdefault(p, len(prefixes)) for p in category_prefixes(str(name))]
            )
        return codes.astype(np.int32), list(prefixes), per_path, prefixes

    @cached_property
    def title_index(self) -> TitleTermIndex:
        """Title term ids by row for the ranker; rows only ever append, so an
        append extends it instead of building it again."""
        return TitleTermIndex(self.items["title_terms"])

    @cached_property
    def attribute_columns(self) -> dict[str, np.ndarray]:
        """Each attribute's value for every row (``None`` where absent): each
        distinct JSON is read once (items share most of theirs; reading every
        row's took a third of a second a key on 50k rows)."""
        codes, texts = pd.factorize(self.items["attributes"])
        # key -> its value per distinct text, and None last: code -1, a row without text.
        by_text: dict[str, np.ndarray] = {}
        for t, text in enumerate(texts):
            try:
                stored = json.loads(text) if text and text != "{}" else {}
            except json.JSONDecodeError:
                continue
            for key, value in stored.items() if isinstance(stored, dict) else ():
                if value is not None:
                    if key not in by_text:
                        by_text[key] = np.full(len(texts) + 1, None, dtype=object)
                    by_text[key][t] = str(value)
        return {key: values[codes] for key, values in by_text.items()}

    def attribute(self, key: str) -> np.ndarray:
        """The value of attribute ``key`` for every row (``None`` where absent)."""
        if key not in self.attribute_columns:
            return np.full(self.n_rows, None, dtype=object)
        return self.attribute_columns[key]

    def strings(self, column: str, rows: np.ndarray) -> np.ndarray:
        """A text column at ``rows``: taking first keeps a query from converting
        the whole column to Python strings (milliseconds on 50k rows)."""
        if column not in self._columns:
            # One contiguous Arrow array: taking from a chunked one costs a
            # millisecond or more a call on a million rows.
            values = pa.array(self.items[column].array, type=pa.large_string())
            self._columns[column] = pa.chunked_array([values]).combine_chunks()
        taken = self._columns[column].take(pa.array(np.asarray(rows, np.int64)))
        return taken.to_numpy(zero_copy_only=False)

    @cached_property
    def live_rows(self) -> np.ndarray:
        return np.flatnonzero(~self.deleted)

    @cached_property
    def row_of(self) -> dict[str, int]:
        ids = self.items["item_id"].to_numpy()
        return {ids[r]: int(r) for r in self.live_rows}

    # ------------------------------------------------------------- filters
    def mask(self, rows: np.ndarray, filters: Filters, skip: str | None = None) -> np.ndarray:
        """Which of ``rows`` pass ``filters``, ignoring the field ``skip``."""
        keep = ~self.deleted[rows]
        if filters.category and skip != "category":
            path_codes, _, per_path, prefix_code = self.paths
            wanted = {prefix_code[c] for c in filters.category if c in prefix_code}
            ok = np.array([bool(wanted.intersection(p)) for p in per_path] + [False])
            keep &= ok[path_codes[rows]]  # code -1 (no category) reads the final False
        if filters.brand and skip != "brand":
            codes, names = self.brand_codes
            # A table by brand code, not ``np.isin`` on the rows' codes (that sorts them).
            wanted = np.append(np.isin(names, filters.brand), False)
            keep &= wanted[codes[rows]]  # code -1 (no brand) reads the final False
        if skip != "price":
            if filters.price_min is not None:
                keep &= self.price[rows] >= filters.price_min
            if filters.price_max is not None:
                keep &= self.price[rows] <= filters.price_max
        if skip != "attributes":
            for key, values in filters.attributes.items():
                if values:
                    keep &= np.isin(self.attribute(key)[rows], values)
        return keep

    def facets(self, rows: np.ndarray, filters: Filters) -> dict[str, list[dict[str, Any]]]:
        """Counts per category (every level), brand and price bucket over ``rows``.

        Disjunctive: a field's counts apply every filter but its own, so
        choosing one brand still shows how many results each other brand has."""
        out: dict[str, list[dict[str, Any]]] = {}
        path_codes, prefixes, per_path, _ = self.paths
        sub = rows[self.mask(rows, filters, skip="category")]
        counts = np.zeros(len(prefixes), np.int64)
        per_code = np.bincount(path_codes[sub][path_codes[sub] >= 0], minlength=len(per_path))
        for code in np.flatnonzero(per_code):
            counts[per_path[code]] += per_code[code]
        out["category"] = _top(prefixes, counts)
        codes, names = self.brand_codes
        sub = rows[self.mask(rows, filters, skip="brand")]
        out["brand"] = _top(
            list(names), np.bincount(codes[sub][codes[sub] >= 0], minlength=len(names))
        )
        sub = rows[self.mask(rows, filters, skip="price")]
        prices = self.price[sub]
        prices = prices[np.isfinite(prices)]
        buckets = np.bincount(np.digitize(prices, PRICE_EDGES[1:]), minlength=len(PRICE_EDGES))
        out["price"] = [
            {"value": label, "count": int(n)}
            for label, n in zip(price_bucket_labels(), buckets, strict=False)
            if n
        ]
        return out

    # ------------------------------------------------------------- changes
    def append(self, items: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Add item versions (canonical, one per id, with their ``title_terms``),
        replacing live rows with the same ids; returns (new rows, replaced rows)."""
        old = np.array([self.row_of[i] for i in items["item_id"] if i in self.row_of], np.int64)
        self.items.loc[old, "deleted"] = True
        items["deleted"] = False
        start = len(self.items)
        self.items = pd.concat([self.items, items], ignore_index=True) if start else items
        if "title_index" in self.__dict__:
            self.title_index.extend(items["title_terms"])
        self._refresh()
        return np.arange(start, len(self.items)), old

    def delete(self, item_ids: list[str]) -> np.ndarray:
        """Mark the live rows of ``item_ids`` deleted; returns them."""
        rows = np.array([self.row_of[i] for i in item_ids if i in self.row_of], dtype=np.int64)
        self.items.loc[rows, "deleted"] = True
        self._refresh()
        return rows

    def save(self, folder: Path) -> None:
        self.items.to_parquet(folder / "catalog.parquet", index=False)

    @classmethod
    def load(cls, folder: Path) -> Catalog:
        return cls(pd.read_parquet(folder / "catalog.parquet"))


def title_terms(segmented_titles: Iterable[str]) -> list[str]:
    """Each (segmented) title's index terms joined by spaces: analysed once, when indexed."""
    return [" ".join(tokens(t)) for t in segmented_titles]


def _top(names: list[str], counts: np.ndarray) -> list[dict[str, Any]]:
    order = np.argsort(-counts, kind="stable")[:FACET_SIZE]
    return [{"value": str(names[i]), "count": int(counts[i])} for i in order if counts[i] > 0]
