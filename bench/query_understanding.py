"""Query understanding (issue 25, part 3): on the synthetic store, whether a
generated set of price intents (template × price × category words, English
and Chinese) gets only hits within its range; on Home Depot's held-out
judgments, NDCG@10 with and without the stage (its queries name measures,
none of which may become a price), and how many queries it reads anything in.

Through the engine: ``search(understand=...)`` and ``ranked_ids(understand=...)``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.common import datasets_root
from bench.search_quality import CACHE
from shopsense.compute import usable_cores
from shopsense.data.dataset import Dataset
from shopsense.data.ingest import ingest
from shopsense.data.synthetic import StoreConfig, write_store
from shopsense.data.synthetic_vocab import TOPS
from shopsense.search.engine import SearchEngine, build_index
from shopsense.search.evaluate import evaluate_search, load_judgments, split_queries
from shopsense.search.index.settings import SearchSettings

# {noun}: a leaf's noun; {p}: a limit; {a}, {b}: a range's ends.
TEMPLATES = (
    ("en", "{noun} under {p}", None, "p"),
    ("en", "{noun} below ${p}", None, "p"),
    ("en", "{noun} less than {p} dollars", None, "p"),
    ("en", "{noun} up to ${p}", None, "p"),
    ("en", "{noun} over {p}", "p", None),
    ("en", "{noun} {a}-{b}", "a", "b"),
    ("en", "{noun} ${a} to ${b}", "a", "b"),
    ("en", "{noun} between {a} and {b} dollars", "a", "b"),
    ("zh", "{noun}{p}元以下", None, "p"),
    ("zh", "低于{p}元的{noun}", None, "p"),
    ("zh", "{noun}{p}元以上", "p", None),
    ("zh", "{noun} {a}到{b}元", "a", "b"),
)


def _round(price: float) -> int:
    """A price as shoppers write one: a multiple of 5, at least 5."""
    return max(5, 5 * round(price / 5))


def price_intents() -> list[tuple[str, float | None, float | None]]:
    """Every template for every leaf's noun, at prices about the leaf's median:
    (query, lowest, highest price it asks)."""
    out = []
    for top in TOPS:
        for leaf in top.leaves:
            p = _round(leaf.median_price)
            a = _round(leaf.median_price * 0.6)
            b = max(_round(leaf.median_price * 1.5), a + 5)
            values = {"p": p, "a": a, "b": b}
            for language, template, low, high in TEMPLATES:
                noun = leaf.noun if language == "en" else leaf.noun_zh
                query = template.format(noun=noun, **values)
                out.append((query, values[low] if low else None, values[high] if high else None))
    return out


def synthetic_price_intents(n_items: int = 5_000) -> dict:
    """The share of price intents whose hits (first 100) all lie in the range
    asked, with the stage and without it."""
    intents = price_intents()
    with tempfile.TemporaryDirectory() as tmp:
        write_store(StoreConfig(users=2_000, items=n_items, days=30, seed=5), Path(tmp) / "raw")
        ingest("parquet", [Path(tmp) / "raw"], Path(tmp) / "data", progress=False)
        dataset = Dataset.load(Path(tmp) / "data")
        torch.set_num_threads(usable_cores())
        engine = build_index(
            dataset.items,
            Path(tmp) / "index",
            dataset.source_events(),
            settings=SearchSettings(embedding_cache=str(CACHE)),
        )
        torch.set_num_threads(1)
        out: dict = {"items": n_items, "queries": len(intents)}
        for stage in (True, False):
            respected = read = with_hits = 0
            missed = []
            for query, low, high in intents:
                results = engine.search(query, per_page=100, understand=stage)
                prices = np.array([h.price for h in results.hits if h.price is not None])
                within = bool(
                    (low is None or (prices >= low).all())
                    and (high is None or (prices <= high).all())
                )
                asked = [(r.price_min, r.price_max) for r in results.understood.readings]
                read += (low, high) in asked
                with_hits += bool(len(results.hits))
                respected += within and bool(len(results.hits))
                if not within:
                    missed.append(query)
            key = "with_understanding" if stage else "without_understanding"
            out[key] = {
                "price_read": read,
                "with_hits": with_hits,
                "all_hits_within_range": respected,
                "share_within_range": round(respected / max(with_hits, 1), 4),
                "outside_examples": missed[:5],
            }
    w, wo = out["with_understanding"], out["without_understanding"]
    print(
        f"  synthetic store, {n_items:,} items, {len(intents)} price intents (12 templates × "
        f"{len(intents) // 12} leaf nouns, English and Chinese): the price read in "
        f"{w['price_read']}; {w['all_hits_within_range']} of the {w['with_hits']} with hits "
        f"have all their hits within the range ({w['share_within_range']:.1%}, bar 100%); "
        f"without the stage {wo['share_within_range']:.1%}"
    )
    return out


def home_depot() -> dict:
    """Held-out NDCG@10 of the lexical and the hybrid search (MiniLM as
    shipped) with and without the stage, and the queries it reads anything in.
    The default (fine-tuned encoder and ranker) differs from these only in
    how it ranks: where the stage reads nothing the query it searches is the
    same, so the queries read are where its NDCG could move."""
    path = datasets_root() / "homedepot-search"
    if not path.is_dir():
        print(f"search-understanding: skipped, {path} not found")
        return {"skipped": str(path)}
    torch.set_num_threads(1)
    judgments = load_judgments(path / "queries.csv", path / "labels.csv")
    _, held = split_queries(sorted(judgments.queries))
    held_out = judgments.subset(held)
    with tempfile.TemporaryDirectory() as tmp:
        ingest("homedepot", [path], Path(tmp) / "data", progress=False)
        items = Dataset.load(Path(tmp) / "data").items
        torch.set_num_threads(usable_cores())
        engine = build_index(
            items, Path(tmp) / "index", settings=SearchSettings(embedding_cache=str(CACHE))
        )
        torch.set_num_threads(1)
        texts = list(judgments.queries.values())
        read = [t for t in texts if engine.understanding(t, True, ()).readings]
        out: dict = {
            "heldout_queries": len(held),
            "queries_read": len(read),
            "read_examples": read[:10],
        }
        for name, weight in (("lexical", 0.0), ("hybrid", SearchSettings().semantic_weight)):
            engine.settings.semantic_weight = weight
            out[name] = {
                label: evaluate_search(_ranking(engine, stage), held_out)["NDCG@10"]
                for label, stage in (("with", True), ("without", False))
            }
    print(
        f"  Home Depot, {len(held):,} held-out queries: the stage reads something in "
        f"{len(read)} of all {len(texts):,} queries; NDCG@10 lexical "
        f"{out['lexical']['with']:.4f} with, {out['lexical']['without']:.4f} without; "
        f"hybrid {out['hybrid']['with']:.4f} with, {out['hybrid']['without']:.4f} without"
    )
    return out


def _ranking(engine: SearchEngine, stage: bool):
    def rank(query: str) -> list[str]:
        if stage and engine.understanding(query, True, ()).filters().active():
            raise ValueError(f"a Home Depot query read as a filter: {query!r}")
        return engine.ranked_ids(query, 100, understand=stage)

    return rank


def run() -> dict:
    return {"synthetic": synthetic_price_intents(), "home_depot": home_depot()}
