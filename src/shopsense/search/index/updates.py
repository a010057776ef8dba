"""Changing an opened index without a rebuild: items added or replaced,
items deleted, every item embedded again by another encoder, and the
changed parts written back to the folder.

Each function takes the parts it changes, not the engine: the engine holds
its lock around them (searches wait only while a change is applied, not while
it is embedded) and forgets its caches after.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from shopsense.search.catalog import Catalog
from shopsense.search.index.build import (
    QUERIES_FILE,
    embed_items,
    suggester_for,
    vocabulary_documents,
)
from shopsense.search.index.settings import SearchSettings
from shopsense.search.lexical import LexicalIndex
from shopsense.search.semantic import QueryEncoder, VectorIndex
from shopsense.search.suggest import Suggester
from shopsense.search.typo import Vocabulary


def item_vectors(
    items: pd.DataFrame,
    known: dict[str, np.ndarray],
    folder: Path,
    settings: SearchSettings,
    progress: bool,
) -> np.ndarray | None:
    """The vectors of ``items`` (catalogue columns): ``known`` ones (embedded
    before the change was logged, by item id) when every item has one, else
    embedded here; None for no items."""
    if all(i in known for i in items["item_id"]):
        return np.stack([known[i] for i in items["item_id"]]) if len(items) else None
    return embed_items(items, folder, settings, progress)


def add_items(
    catalog: Catalog,
    lexical: LexicalIndex,
    vocabulary: Vocabulary,
    vectors: VectorIndex | None,
    items: pd.DataFrame,
    texts: list[tuple[str, str]],
    embedded: np.ndarray | None,
) -> np.ndarray:
    """Append ``items`` (from ``build.indexable``, with their segmented
    ``texts``) to every part; a replaced item's old row leaves the lexical
    index. Returns the new rows."""
    new_rows, old_rows = catalog.append(items)
    if len(old_rows):
        lexical.delete(old_rows)
    lexical.add(catalog, new_rows, texts)
    if embedded is not None and vectors is not None:
        vectors.add(embedded)
    vocabulary.update(vocabulary_documents(texts))
    return new_rows


def remove_items(catalog: Catalog, lexical: LexicalIndex, item_ids: Iterable[str]) -> np.ndarray:
    """Mark ``item_ids`` deleted in the catalogue and drop them from the
    lexical index (their vectors stay, masked by the catalogue); their rows."""
    rows = catalog.delete([str(i) for i in item_ids])
    if len(rows):
        lexical.delete(rows)
    return rows


def rebuilt_suggester(folder: Path, catalog: Catalog) -> Suggester:
    """Autocomplete over the catalogue as it is now and the folder's query log."""
    queries = json.loads((folder / QUERIES_FILE).read_text(encoding="utf-8"))
    return suggester_for(catalog, queries)


def encoded_with(
    catalog: Catalog, folder: Path, settings: SearchSettings, progress: bool
) -> tuple[VectorIndex, QueryEncoder]:
    """Every item embedded by ``settings``' model, and that model's query encoder."""
    vectors = VectorIndex.create(catalog.n_rows, settings.hnsw_above)
    vectors.add(embed_items(catalog.items, folder, settings, progress))
    return vectors, QueryEncoder(settings.model_path, settings.int8_queries)


def save_changes(
    folder: Path,
    catalog: Catalog,
    vocabulary: Vocabulary,
    suggester: Suggester,
    vectors: VectorIndex | None,
) -> None:
    """Write the parts a change touches (the lexical index commits its own)."""
    catalog.save(folder)
    vocabulary.save(folder / "vocabulary.json")
    suggester.save(folder / "suggest.json")
    if vectors is not None:
        vectors.save(folder / "vectors.faiss")
