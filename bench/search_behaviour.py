"""How the search box behaves (issue 25's bars for result sets and search as
you type), on a synthetic store with the default settings (hybrid, the
shipped encoder, the ranker trained on the store's click log):

- nonsense queries (random letter strings: one to three words of five to
  nine letters; a string with a word that is a catalogue word or within its
  typo budget of one is a typo, not nonsense, and is counted apart) that
  return zero hits, bar 100%;
- for each leaf category's own noun, English and Chinese, the share of the
  query's ``total`` that lies in that leaf, bar ≥ 90%;
- one-typo variants (one random edit in one word of 4+ letters, as the Home
  Depot benchmark makes them, of queries in Latin letters: Chinese has no
  typo tolerance) and prefix variants (the last word cut to a part of at
  least three letters, or one Chinese character less) of the store's logged
  queries and the leaves' nouns, whose top 3 holds the clean query's first
  hit, bar ≥ 95%.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.search_quality import CACHE, with_typo
from shopsense.compute import usable_cores
from shopsense.data.dataset import Dataset
from shopsense.data.ingest import ingest
from shopsense.data.synthetic import StoreConfig, write_store
from shopsense.data.synthetic_vocab import TOPS
from shopsense.features.text import CJK
from shopsense.search.engine import SearchEngine, build_index
from shopsense.search.index.settings import SearchSettings
from shopsense.search.ranking.training import judgments_from_events, train_ranker

STORE = StoreConfig(users=5_000, items=10_000, days=30, seed=5)
NONSENSE_QUERIES = 500
LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))


def nonsense(rng: np.random.Generator, n: int) -> list[str]:
    """Random letter strings: one to three words of five to nine letters."""
    return [
        " ".join(
            "".join(rng.choice(LETTERS, rng.integers(5, 10))) for _ in range(rng.integers(1, 4))
        )
        for _ in range(n)
    ]


def prefix_of(query: str, rng: np.random.Generator) -> str | None:
    """The query with its last word cut short (at least three letters kept;
    a Chinese word loses its last character); None where it is too short."""
    head, _, last = query.rpartition(" ")
    if CJK.fullmatch(last):
        cut = last[:-1] if len(last) >= 2 else None
    elif len(last) >= 4 and last.isalpha():
        cut = last[: int(rng.integers(3, len(last)))]
    else:
        cut = None
    return None if cut is None else f"{head} {cut}".strip()


def leaf_share(engine: SearchEngine) -> dict:
    """For each leaf's English and Chinese noun, the share of ``total`` in the leaf."""
    shares: dict[str, list[float]] = {"en": [], "zh": []}
    worst: dict[str, tuple[float, str]] = {}
    for top in TOPS:
        for leaf in top.leaves:
            name = f"{top.name} > {leaf.name}"
            for language, query in (("en", leaf.noun), ("zh", leaf.noun_zh)):
                results = engine.search(query, per_page=1)
                facets = {f["value"]: f["count"] for f in results.facets.get("category", [])}
                if not results.total:
                    continue
                share = facets.get(name, 0) / results.total
                shares[language].append(share)
                worst[language] = min(worst.get(language, (1.0, "")), (share, query))
    return {
        language: {
            "queries": len(values),
            "mean_share": round(float(np.mean(values)), 4),
            "worst": [round(worst[language][0], 3), worst[language][1]],
        }
        for language, values in shares.items()
    }


def variants_found(engine: SearchEngine, clean: list[str], seed: int = 0) -> dict:
    """Of each clean query's typo and prefix variants, the share whose top 3
    holds the clean query's first hit."""
    rng = np.random.default_rng(seed)
    kept: dict[str, list[bool]] = {"one_typo": [], "prefix": []}
    missed: dict[str, list[str]] = {"one_typo": [], "prefix": []}
    for query in clean:
        first = engine.search(query, per_page=1).hits
        if not first:
            continue
        typo = with_typo(query, rng) if query.isascii() else query
        for kind, variant in (("one_typo", typo if typo != query else None),
                              ("prefix", prefix_of(query, rng))):  # fmt: skip
            if variant is None:
                continue
            top = [h.item_id for h in engine.search(variant, per_page=3).hits]
            kept[kind].append(first[0].item_id in top)
            if not kept[kind][-1]:
                missed[kind].append(f"{query} -> {variant}")
    return {
        kind: {
            "variants": len(values),
            "share": round(float(np.mean(values)), 4),
            "missed": missed[kind][:5],
        }
        for kind, values in kept.items()
    }


def run() -> dict:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        write_store(STORE, Path(tmp) / "raw")
        ingest("parquet", [Path(tmp) / "raw"], Path(tmp) / "data", progress=False)
        dataset = Dataset.load(Path(tmp) / "data")
        events = dataset.source_events()
        torch.set_num_threads(usable_cores())
        engine = build_index(
            dataset.items,
            Path(tmp) / "index",
            events,
            settings=SearchSettings(embedding_cache=str(CACHE)),
        )
        engine.ranker = train_ranker(engine, judgments_from_events(events))
        torch.set_num_threads(1)
        rng = np.random.default_rng(0)
        vocabulary = engine.vocabulary
        strings = nonsense(rng, NONSENSE_QUERIES)
        queries = [
            q
            for q in strings
            if not any(w in vocabulary or vocabulary.corrections(w) for w in q.split())
        ]
        empty = [q for q in queries if engine.search(q, per_page=1).total == 0]
        logged = list(dict.fromkeys(events["query"].dropna().astype(str).str.strip()))[:500]
        nouns = [leaf.noun.lower() for top in TOPS for leaf in top.leaves]
        nouns += [leaf.noun_zh for top in TOPS for leaf in top.leaves]
        out = {
            "items": STORE.items,
            "settings": {
                "semantic_min_score": engine.settings.semantic_min_score,
                "matching_all_up_to": engine.settings.matching_all_up_to,
                "matching_share": engine.settings.matching_share,
            },
            "nonsense": {
                "queries": len(queries),
                "typos_left_out": len(strings) - len(queries),
                "zero_hits_share": round(len(empty) / len(queries), 4),
                "found_something": sorted(set(queries) - set(empty))[:5],
            },
            "leaf_queries": leaf_share(engine),
            "variants": variants_found(engine, list(dict.fromkeys(logged + nouns))),
        }
    _print(out)
    return out


def _print(out: dict) -> None:
    s = out["settings"]
    print(
        f"Search behaviour on a {out['items']:,}-item synthetic store (defaults: a cosine of "
        f"{s['semantic_min_score']}, every word up to {s['matching_all_up_to']} words, then "
        f"{s['matching_share']:.0%})"
    )
    n = out["nonsense"]
    found = f"; found something: {', '.join(n['found_something'])}" if n["found_something"] else ""
    print(
        f"  nonsense queries with zero hits: {n['zero_hits_share']:.1%} of {n['queries']} "
        f"(bar 100%; {n['typos_left_out']} random strings left out as typos of catalogue "
        f"words){found}"
    )
    for language, row in out["leaf_queries"].items():
        print(
            f"  leaf-category queries ({language}, {row['queries']}): {row['mean_share']:.1%} of "
            f"total in the leaf on average (bar ≥ 90%); worst {row['worst'][0]:.0%} "
            f"({row['worst'][1]})"
        )
    for kind, row in out["variants"].items():
        missed = f"; missed e.g. {', '.join(row['missed'][:3])}" if row["missed"] else ""
        print(
            f"  {kind} variants with the clean query's first hit in their top 3: "
            f"{row['share']:.1%} of {row['variants']} (bar ≥ 95%){missed}"
        )
