"""The search commands of the ``shopsense`` CLI: index, search, suggest,
train-ranker and evaluate-search."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from shopsense.compute import usable_cores
from shopsense.data.schema import category_leaf
from shopsense.errors import ShopsenseError
from shopsense.search.finetune import EPOCHS
from shopsense.search.query.understand import KINDS, Reading

if TYPE_CHECKING:
    from shopsense.search.query.present import Hit

INDEX_OPTION = click.option(
    "--index",
    "index_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Index folder (from `shopsense index`).",
)


def _progress() -> bool:
    return sys.stderr.isatty()


def _open(index_dir: Path, semantic: bool = True):
    from shopsense.search.engine import SearchEngine
    from shopsense.search.semantic import query_threads

    query_threads()
    return SearchEngine(index_dir, semantic=semantic)


@click.command(name="index")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Dataset folder.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="New index folder.")
@click.option("--no-semantic", is_flag=True, help="Lexical only: skip the embeddings.")
@click.option(
    "--synonyms",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Synonym groups: JSON list of lists, or one comma-separated group a line.",
)
@click.option(
    "--embedding-cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder caching item embeddings by content hash (default: inside the index).",
)
@click.option(
    "--setting",
    "settings",
    multiple=True,
    metavar="NAME=VALUE",
    help="A ranking setting, e.g. semantic_weight=0.3 (see SearchSettings).",
)
def index_command(
    data: Path,
    out: Path,
    no_semantic: bool,
    synonyms: Path | None,
    embedding_cache: Path | None,
    settings: tuple[str, ...],
) -> None:
    """Index a dataset's catalog for search: BM25 (tantivy), embeddings (faiss),
    typo vocabulary, autocomplete and user profiles."""
    import time

    from shopsense.data.dataset import Dataset
    from shopsense.search.engine import build_index
    from shopsense.search.index.settings import load_synonyms

    if not (data / "manifest.json").is_file():
        raise ShopsenseError(f"dataset {data} not found (no manifest.json)")
    dataset = Dataset.load(data)
    chosen = _settings(settings)
    if synonyms is not None:
        chosen.synonyms = load_synonyms(synonyms)
    if embedding_cache is not None:
        chosen.embedding_cache = str(embedding_cache)
    started = time.perf_counter()
    engine = build_index(
        dataset.items,
        out,
        dataset.source_events(),
        settings=chosen,
        semantic=not no_semantic,
        progress=_progress(),
    )
    click.echo(
        f"indexed {engine.catalog.n_rows:,} items into {out} in "
        f"{time.perf_counter() - started:.1f}s "
        f"({'lexical + semantic' if engine.vectors is not None else 'lexical only'})"
    )


def _settings(pairs: tuple[str, ...]):
    import dataclasses

    from shopsense.search.index.settings import SearchSettings

    settings = SearchSettings()
    known = {f.name: f for f in dataclasses.fields(SearchSettings)}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in known or name == "synonyms":
            raise ShopsenseError(f"--setting takes NAME=VALUE with NAME one of {', '.join(known)}")
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        setattr(settings, name, parsed)
    settings.check()
    return settings


def _read_items(path: Path):
    """Items from a CSV, TSV, JSONL or Parquet file, extra columns folded into attributes."""
    from shopsense.data.formats.common import canonical_items
    from shopsense.data.sources import read_delimited, read_jsonl, read_parquet, read_table_whole

    readers = {
        ".csv": lambda: read_delimited(path, ",", chunk_rows=1_000_000),
        ".tsv": lambda: read_delimited(path, "\t", chunk_rows=1_000_000),
        ".jsonl": lambda: read_jsonl(path, 1_000_000),
        ".parquet": lambda: read_parquet(path, 1_000_000),
    }
    if path.suffix not in readers:
        raise ShopsenseError(f"{path}: items are read from {', '.join(readers)} files")
    if not path.is_file():
        raise ShopsenseError(f"{path} not found")
    return canonical_items(read_table_whole(readers[path.suffix]()), {})


@click.command(name="index-items")
@INDEX_OPTION
@click.argument("items_file", required=False, type=click.Path(path_type=Path))
@click.option("--delete", "deleted", multiple=True, metavar="ITEM_ID", help="Remove an item.")
def index_items_command(index_dir: Path, items_file: Path | None, deleted: tuple[str, ...]) -> None:
    """Add or replace items (ITEMS_FILE) and remove others (--delete), without a rebuild."""
    if items_file is None and not deleted:
        raise ShopsenseError("give an items file to add or replace, or --delete ITEM_ID")
    engine = _open(index_dir)
    added = engine.upsert(_read_items(items_file), progress=_progress()) if items_file else 0
    removed = engine.delete(list(deleted)) if deleted else 0
    click.echo(f"{added:,} items added or replaced, {removed:,} deleted in {index_dir}")


@click.command(name="search")
@INDEX_OPTION
@click.argument("query", default="")
@click.option("--category", multiple=True, help="Category path or any level of it (repeatable).")
@click.option("--brand", multiple=True, help="Brand (repeatable: any of them).")
@click.option("--price-min", type=float, default=None)
@click.option("--price-max", type=float, default=None)
@click.option("--attribute", "attributes", multiple=True, metavar="NAME=VALUE")
@click.option(
    "--sort",
    type=click.Choice(["relevance", "price_asc", "price_desc", "popularity", "newest"]),
    default="relevance",
    show_default=True,
)
@click.option("--page", default=1, show_default=True, type=click.IntRange(1))
@click.option("--per-page", default=10, show_default=True, type=click.IntRange(1, 100))
@click.option("--user", "user_id", default=None, help="Personalize for this user id.")
@click.option(
    "--no-understand",
    is_flag=True,
    help="Search the words as typed: no price, brand, category or attribute read from them.",
)
@click.option(
    "--ignore",
    "ignored",
    multiple=True,
    type=click.Choice(KINDS),
    metavar="READING",
    help=f"Leave one kind of reading out ({', '.join(KINDS)}; repeatable), as /search's ignore.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole result as JSON.")
@click.option(
    "--log",
    "log_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append the search, with what it showed, as a `search` event (JSONL).",
)
def search_command(
    index_dir: Path,
    query: str,
    category: tuple[str, ...],
    brand: tuple[str, ...],
    price_min: float | None,
    price_max: float | None,
    attributes: tuple[str, ...],
    sort: str,
    page: int,
    per_page: int,
    user_id: str | None,
    no_understand: bool,
    ignored: tuple[str, ...],
    as_json: bool,
    log_path: Path | None,
) -> None:
    """Search the catalog; prints what the query was read for, the merchandising
    rules that changed the results, the results and the facets (or, for a
    query that matches nothing, the popular items offered apart)."""
    attrs: dict[str, list[str]] = {}
    for pair in attributes:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ShopsenseError(f"--attribute takes NAME=VALUE, got {pair!r}")
        attrs.setdefault(name, []).append(value)
    filters = {
        "category": list(category),
        "brand": list(brand),
        "price_min": price_min,
        "price_max": price_max,
        "attributes": attrs,
    }
    engine = _open(index_dir)
    engine.log_path = log_path
    results = engine.search(
        query, filters=filters, sort=sort, page=page, per_page=per_page, user_id=user_id,
        understand=not no_understand, ignore=ignored,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(results.to_dict(), ensure_ascii=False, indent=2))
        return
    click.echo(
        f"{results.total:,} results for {query!r} ({results.took_ms:.1f} ms)"
        + (f" — did you mean {results.did_you_mean!r}?" if results.did_you_mean else "")
    )
    readings = results.understood.readings if results.understood is not None else []
    if readings:
        read = ", ".join(f"{reading_label(r)} ({r.applied})" for r in readings)
        click.echo(f"  understood: {read}")
    if results.rules_applied:
        click.echo(f"  rules applied: {', '.join(results.rules_applied)}")
    for rank, hit in enumerate(results.hits, start=(page - 1) * per_page + 1):
        click.echo(f"  {rank:>3}. {_hit_line(hit)}")
    if results.fallback:
        click.echo("  popular right now:")
        for hit in results.fallback:
            click.echo(f"       {_hit_line(hit)}")
    for name, values in results.facets.items():
        shown = ", ".join(f"{v['value']} ({v['count']})" for v in values[:8])
        click.echo(f"  {name}: {shown or '-'}")


def _hit_line(hit: Hit) -> str:
    price = f"{hit.price:.2f}" if hit.price is not None else "-"
    return f"{hit.item_id}  {hit.title}  [{hit.brand or '-'}, {price}]"


def reading_label(reading: Reading) -> str:
    """A reading as a shopper would say it: "price under 50", "price 50-100",
    "brand: Acme", "category: Running Shoes" (the level named), "color: black".
    The storefront's chips (app.js) say the same."""
    if reading.kind != "price":
        named = [category_leaf(v) if reading.kind == "category" else v for v in reading.values]
        return f"{reading.field}: {' or '.join(named)}"
    low, high = reading.price_min, reading.price_max  # one of them at least
    if low is None:
        return f"price under {_amount(high)}"
    if high is None:
        return f"price over {_amount(low)}"
    return f"price {_amount(low)}-{_amount(high)}"


def _amount(value: float | None) -> str:
    return f"{value:.2f}".removesuffix(".00")


@click.command(name="suggest")
@INDEX_OPTION
@click.argument("prefix")
@click.option("-k", "--k", "k", default=10, show_default=True, type=click.IntRange(1, 100))
def suggest_command(index_dir: Path, prefix: str, k: int) -> None:
    """Autocomplete a partly typed query."""
    engine = _open(index_dir, semantic=False)
    for s in engine.suggest(prefix, k):
        click.echo(f"{s.text}  ({s.kind}{', ' + s.item_id if s.item_id else ''})")


def _judgments(queries: Path, labels: Path, subset: str, holdout: float):
    from shopsense.search.evaluate import load_judgments, split_queries

    judgments = load_judgments(queries, labels)
    if subset == "all":
        return judgments
    dev, held = split_queries(sorted(judgments.queries), holdout)
    return judgments.subset(dev if subset == "dev" else held)


def judgment_files(command):
    """``--queries`` (query_id,query) and ``--labels`` (query_id,product_uid,relevance)."""
    path = click.Path(dir_okay=False, path_type=Path)
    command = click.option("--labels", required=True, type=path)(command)
    return click.option("--queries", required=True, type=path)(command)


SUBSET_OPTION = click.option(
    "--subset",
    type=click.Choice(["all", "dev", "heldout"]),
    default="all",
    show_default=True,
    help="Which queries: all, or one side of the fixed hash split (see --holdout).",
)
HOLDOUT_OPTION = click.option(
    "--holdout",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Share of queries held out from training (chosen by a hash of the query id).",
)


@click.command(name="train-ranker")
@INDEX_OPTION
@click.option("--queries", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option(
    "--from-events",
    "events_data",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Dataset whose search sessions (search, then click/cart/purchase) give the grades.",
)
@HOLDOUT_OPTION
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--cross-fit/--no-cross-fit",
    default=True,
    show_default=True,
    help="Where the index's encoder was fine-tuned on these queries, read them through "
    "encoders fine-tuned without them (two more fine-tunings; a better ranker).",
)
def train_ranker_command(
    index_dir: Path,
    queries: Path | None,
    labels: Path | None,
    events_data: Path | None,
    holdout: float,
    seed: int,
    cross_fit: bool,
) -> None:
    """Train the learning-to-rank model of an index, from graded judgments
    (only the dev side of --holdout) or from click logs; it then ranks every search."""
    import torch

    from shopsense.search.ranking.model import words_path
    from shopsense.search.ranking.training import judgments_from_events, train_ranker

    if events_data is not None:
        from shopsense.data.dataset import Dataset

        judgments = judgments_from_events(Dataset.load(events_data).source_events())
    elif queries is not None and labels is not None:
        judgments = _judgments(queries, labels, "dev", holdout)
    else:
        raise ShopsenseError("give --queries and --labels, or --from-events DATA")
    engine = _open(index_dir)
    torch.set_num_threads(usable_cores())  # cross-fitting fine-tunes on every core
    ranker = train_ranker(engine, judgments, seed=seed, cross_fit=cross_fit, progress=_progress())
    path = index_dir / "ranker.txt"
    ranker.save(path)
    click.echo(
        f"ranker trained on {len(judgments.queries):,} queries, "
        f"{ranker.booster.num_trees()} trees, word lifts for "
        f"{len(ranker.associations.lift):,} query words; saved to {path} and {words_path(path)}"
    )


@click.command(name="train-encoder")
@INDEX_OPTION
@judgment_files
@HOLDOUT_OPTION
@click.option("--epochs", default=EPOCHS, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int)
def train_encoder_command(
    index_dir: Path, queries: Path, labels: Path, holdout: float, epochs: int, seed: int
) -> None:
    """Fine-tune the sentence encoder on the dev side of graded judgments
    (query, relevant product) and re-embed the index's items with it."""
    import torch

    from shopsense.search.finetune import finetune_encoder, training_pairs

    engine = _open(index_dir)
    if engine.vectors is None:
        raise ShopsenseError(f"{index_dir} has no embeddings (built with --no-semantic)")
    judgments = _judgments(queries, labels, "dev", holdout)
    items = engine.catalog.items
    titles = dict(zip(items["item_id"], items["title"], strict=True))
    pairs = training_pairs(judgments, titles)
    torch.set_num_threads(usable_cores())  # training uses every core
    path = finetune_encoder(
        pairs, index_dir / "encoder", epochs=epochs, seed=seed, progress=_progress()
    )
    engine.use_encoder(str(path.resolve()), progress=_progress())
    click.echo(
        f"encoder fine-tuned on {len(pairs):,} (query, product) pairs from "
        f"{len(judgments.queries):,} queries; items re-embedded; saved to {path}"
    )


@click.command(name="evaluate-search")
@INDEX_OPTION
@judgment_files
@SUBSET_OPTION
@HOLDOUT_OPTION
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def evaluate_search_command(
    index_dir: Path,
    queries: Path,
    labels: Path,
    subset: str,
    holdout: float,
    json_out: Path | None,
) -> None:
    """NDCG@10, Recall@100 and MRR@10 of the index's ranking on graded judgments."""
    from shopsense.search.evaluate import evaluate_search

    judgments = _judgments(queries, labels, subset, holdout)
    engine = _open(index_dir)
    result = evaluate_search(lambda q: engine.ranked_ids(q, 100), judgments, progress=_progress())
    click.echo(
        f"{result['queries']:,} queries ({subset}): NDCG@10 {result['NDCG@10']:.4f}, "
        f"Recall@100 {result['Recall@100']:.4f}, MRR@10 {result['MRR@10']:.4f}, "
        f"latency p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms"
    )
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=2) + "\n")


COMMANDS = (
    index_command,
    index_items_command,
    search_command,
    suggest_command,
    train_ranker_command,
    train_encoder_command,
    evaluate_search_command,
)
