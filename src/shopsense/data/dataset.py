"""An ingested dataset: catalog, users and events, as stored on disk and in memory."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import scipy.sparse as sp

from shopsense.data.schema import EVENT_TYPES, SCHEMA_VERSION
from shopsense.errors import ShopsenseError

MANIFEST = "manifest.json"
ITEMS_FILE = "items.parquet"
USERS_FILE = "users.parquet"
EVENTS_FILE = "events.parquet"


def event_type_dtype() -> pd.CategoricalDtype:
    """Event types as an ordered categorical, so codes are stable across datasets."""
    return pd.CategoricalDtype(list(EVENT_TYPES), ordered=True)


def empty_events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": np.empty(0, np.int32),
            "item": np.empty(0, np.int32),
            "type": pd.Categorical([], dtype=event_type_dtype()),
            "timestamp": np.empty(0, np.int64),
            "session": pd.Series([], dtype=object),
            "query": pd.Series([], dtype=object),
            "value": np.empty(0, np.float64),
            "context": pd.Series([], dtype=object),
        }
    )


@dataclass
class Dataset:
    """Items, users and events with dense integer ids.

    ``items`` row ``i`` describes item ``i``; ``users`` row ``u`` user ``u``.
    ``events`` columns are those of :data:`shopsense.data.schema.EVENT_COLUMNS`.
    """

    items: pd.DataFrame
    users: pd.DataFrame
    events: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    # ------------------------------------------------------------------ storage
    @classmethod
    def load(cls, path: str | Path) -> Dataset:
        """Read a directory written by ``shopsense ingest`` (or :meth:`save`)."""
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise ShopsenseError(
                f"{path} is not an ingested dataset (no {MANIFEST}); "
                "create one with `shopsense ingest` or `shopsense generate`"
            )
        manifest = json.loads(manifest_path.read_text())
        version = manifest.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ShopsenseError(
                f"{path} has schema version {version}; this shopsense reads {SCHEMA_VERSION}"
            )
        items = pq.read_table(path / ITEMS_FILE).to_pandas()
        users = pq.read_table(path / USERS_FILE).to_pandas()
        events = pq.read_table(path / EVENTS_FILE).to_pandas()
        events["type"] = events["type"].astype(str).astype(event_type_dtype())
        events["user"] = events["user"].astype(np.int32)
        events["item"] = events["item"].astype(np.int32)
        return cls(items=items, users=users, events=events, manifest=manifest, path=path)

    def save(self, path: str | Path) -> Path:
        """Write the dataset as Parquet files plus ``manifest.json``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.items.to_parquet(path / ITEMS_FILE, index=False)
        self.users.to_parquet(path / USERS_FILE, index=False)
        events = self.events.copy()
        events["type"] = events["type"].astype(str)
        events.to_parquet(path / EVENTS_FILE, index=False)
        manifest = dict(self.manifest)
        manifest["schema_version"] = SCHEMA_VERSION
        manifest["counts"] = self.counts()
        (path / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        return path

    # ------------------------------------------------------------------ facts
    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or (self.path.name if self.path else "dataset"))

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def time_is_order(self) -> bool:
        """True when timestamps are positions in a sequence, not clock times."""
        return bool(self.manifest.get("time_is_order", False))

    def counts(self) -> dict[str, int]:
        return {"users": self.n_users, "items": self.n_items, "events": len(self.events)}

    def with_events(self, events: pd.DataFrame) -> Dataset:
        """The same catalog and users with other events (a split's part)."""
        return Dataset(self.items, self.users, events, self.manifest, self.path)

    # ------------------------------------------------------------------ views
    @cached_property
    def interactions(self) -> pd.DataFrame:
        """Events that concern an item, sorted by user, then time, then input order."""
        ev = self.events[self.events["item"] >= 0]
        order = np.lexsort((np.arange(len(ev)), ev["timestamp"].to_numpy(), ev["user"].to_numpy()))
        return ev.iloc[order].reset_index(drop=True)

    def user_item_matrix(
        self, weights: dict[str, float] | None = None, binary: bool = True
    ) -> sp.csr_matrix:
        """Users × items CSR matrix of the interactions.

        Without ``weights`` every event counts 1; with them, each event adds its
        type's weight (types not named weigh 0). ``binary`` caps entries at 1.
        """
        ev = self.interactions
        if weights is None:
            data = np.ones(len(ev), np.float32)
        else:
            table = np.array([weights.get(t, 0.0) for t in EVENT_TYPES], np.float32)
            data = table[ev["type"].cat.codes.to_numpy()]
        m = sp.csr_matrix(
            (data, (ev["user"].to_numpy(), ev["item"].to_numpy())),
            shape=(self.n_users, self.n_items),
            dtype=np.float32,
        )
        m.sum_duplicates()
        m.eliminate_zeros()
        if binary:
            m.data[:] = 1.0
        return m

    @cached_property
    def _user_lookup(self) -> pd.Index:
        return pd.Index(self.users["user_id"].astype(str))

    @cached_property
    def _item_lookup(self) -> pd.Index:
        return pd.Index(self.items["item_id"].astype(str))

    def user_index(self, user_id: str | int) -> int:
        """Dense id of a source user id; a clear error when it is unknown."""
        try:
            return int(self._user_lookup.get_loc(str(user_id)))
        except KeyError:
            raise ShopsenseError(f"unknown user id {user_id!r} in dataset {self.name}") from None

    def item_index(self, item_id: str | int) -> int:
        """Dense id of a source item id; a clear error when it is unknown."""
        try:
            return int(self._item_lookup.get_loc(str(item_id)))
        except KeyError:
            raise ShopsenseError(f"unknown item id {item_id!r} in dataset {self.name}") from None

    def item_ids(self, dense: np.ndarray) -> np.ndarray:
        """Source ids of dense item ids."""
        return self.items["item_id"].to_numpy()[dense]

    def source_events(self) -> pd.DataFrame:
        """Events with users and items as their source ids (``user_id``,
        ``item_id``, ``session_id``; ``item_id`` is None where no item)."""
        events = self.events
        items = events["item"].to_numpy()
        ids = self.items["item_id"].to_numpy()
        return pd.DataFrame(
            {
                "user_id": self.users["user_id"].to_numpy()[events["user"].to_numpy()],
                "item_id": np.where(items >= 0, ids[np.maximum(items, 0)], None),
                "type": events["type"].astype(str).to_numpy(),
                "timestamp": events["timestamp"].to_numpy(),
                "session_id": events["session"].astype(object).to_numpy(),
                "query": events["query"].astype(object).to_numpy(),
            }
        )
