"""Building an index folder from a catalogue: the catalogue's columns, the
lexical index (tantivy), the typo vocabulary, autocomplete, the users'
profiles and, unless lexical only, one vector per item (faiss).

Every item's text is segmented once (``indexable``) and read by the lexical
index, the title terms and the vocabulary alike; updates (``updates``) index
added items through the same functions, so an item indexed later is indexed
as a built one is.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from shopsense.data.schema import DEFAULT_EVENT_WEIGHTS, SEARCH_ACTIONS
from shopsense.errors import ShopsenseError
from shopsense.features.sentence import SentenceEmbedder
from shopsense.search.analysis import tokens
from shopsense.search.catalog import Catalog, canonical_catalog, title_terms
from shopsense.search.finetune import model_tag
from shopsense.search.index.settings import SearchSettings
from shopsense.search.lexical import LexicalIndex, indexed_texts
from shopsense.search.profiles import UserProfiles
from shopsense.search.semantic import VectorIndex, item_embedding_text
from shopsense.search.suggest import Suggester
from shopsense.search.typo import Vocabulary

PROFILES_FILE = "profiles.parquet"
QUERIES_FILE = "queries.json"  # the query log's counts, which autocomplete is rebuilt from


def write_index(
    items: pd.DataFrame,
    out: Path,
    events: pd.DataFrame | None,
    settings: SearchSettings | None,
    semantic: bool,
    progress: bool,
) -> None:
    """Index a catalog into the new folder ``out`` (``engine.build_index``
    opens it after). ``events`` (source ids: user_id, item_id, type,
    timestamp, query) give popularity, the query log for autocomplete and the
    profiles that personalize; ``settings`` None: the defaults; ``semantic``
    False: lexical only."""
    out = Path(out)
    if (out / "settings.json").exists():
        raise ShopsenseError(f"{out} already holds an index; choose a new folder")
    settings = settings or SearchSettings()
    settings.check()
    out.mkdir(parents=True, exist_ok=True)
    catalog_items, texts = indexable(items)
    queries: dict[str, int] = {}
    profiles = UserProfiles(pd.DataFrame())
    if events is not None and len(events):
        weights = events["type"].map(DEFAULT_EVENT_WEIGHTS).fillna(0.0)
        popularity = weights.groupby(events["item_id"].astype(str)).sum()
        catalog_items["popularity"] = (
            catalog_items["item_id"].map(popularity).fillna(0.0).to_numpy(np.float64)
        )
        catalog_items["search_clicks"] = (
            catalog_items["item_id"].map(search_clicks(events)).fillna(0.0).to_numpy(np.float64)
        )
        asked = events["query"][(events["type"] == "search") & events["query"].notna()]
        queries = {
            str(q): int(n) for q, n in asked.astype(str).str.strip().value_counts().items() if q
        }
        profiles = UserProfiles.from_events(events)
    catalog = Catalog(catalog_items)
    rows = np.arange(catalog.n_rows)
    LexicalIndex(out / "tantivy").add(catalog, rows, texts)
    Vocabulary.build(
        vocabulary_documents(texts), one_typo=settings.one_typo, two_typos=settings.two_typos
    ).save(out / "vocabulary.json")
    (out / QUERIES_FILE).write_text(json.dumps(queries, ensure_ascii=False), encoding="utf-8")
    suggester_for(catalog, queries).save(out / "suggest.json")
    profiles.save(out / PROFILES_FILE)
    catalog.save(out)
    if semantic:
        vectors = VectorIndex.create(catalog.n_rows, settings.hnsw_above)
        vectors.add(embed_items(catalog.items, out, settings, progress))
        vectors.save(out / "vectors.faiss")
    settings.save(out)


def indexable(items: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """``items`` in the catalogue's columns, one version per id, with their
    title terms; and their titles and texts as segmented for the index. Each
    text is segmented once, for the lexical index, the title terms and the
    typo vocabulary alike."""
    frame = canonical_catalog(items).drop_duplicates("item_id", keep="last")
    texts = indexed_texts(frame)
    frame["title_terms"] = title_terms(title for title, _ in texts)
    return frame, texts


def vocabulary_documents(texts: list[tuple[str, str]]) -> list[list[str]]:
    """The words (unstemmed) of each item's segmented title and text."""
    return [tokens(f"{title} {text}", stemmed=False) for title, text in texts]


def embed_items(
    items: pd.DataFrame, folder: Path, settings: SearchSettings, progress: bool
) -> np.ndarray:
    """One vector per row of ``items`` (catalogue columns), by ``settings``' encoder."""
    texts = [
        item_embedding_text(title, brand, category)
        for title, brand, category in zip(
            items["title"], items["brand"], items["category"], strict=True
        )
    ]
    cache = settings_cache_dir(folder, settings)
    return SentenceEmbedder(cache_dir=cache, model_path=settings.model_path).encode(texts, progress)


def settings_cache_dir(folder: Path, settings: SearchSettings) -> Path:
    """Where embeddings are cached: per model, so a fine-tuned model never reads base vectors."""
    base = Path(settings.embedding_cache) if settings.embedding_cache else folder / "embeddings"
    return base / model_tag(settings.model_path)


@lru_cache(maxsize=8)
def encoder_tag(model_path: str | None) -> str:
    """``model_tag``, which hashes a fine-tune's weights, once per model path."""
    return model_tag(model_path)


def suggester_for(catalog: Catalog, queries: dict[str, int]) -> Suggester:
    """Autocomplete over the live items' titles and the query log's ``queries``."""
    live = catalog.live_rows
    items = catalog.items
    return Suggester.build(
        items["title"].to_numpy()[live].tolist(),
        items["item_id"].to_numpy()[live].tolist(),
        catalog.popularity[live],
        queries,
    )


def search_clicks(events: pd.DataFrame) -> pd.Series:
    """Per item, its clicks, carts and purchases in sessions that searched."""
    if "session_id" not in events:
        return pd.Series(dtype=np.float64)
    searched = events["session_id"][events["type"] == "search"].dropna().unique()
    acted = events[events["type"].isin(SEARCH_ACTIONS) & events["session_id"].isin(searched)]
    return acted.groupby(acted["item_id"].astype(str)).size().astype(np.float64)
