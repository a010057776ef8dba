"""Training the ranker: on graded judgments (``train_ranker``), or on click
logs, which ``judgments_from_events`` turns into grades (searches followed by
clicks, carts and purchases in the same session).

Training reads each judged query as a search does (plan, encoding,
retrieval) and learns from the candidates' features and grades. What a
training query sees is cross-fitted: its word lifts come from a table learnt
without its fold, and where the index's encoder learnt from it, its dense
scores from an encoder fine-tuned without it; otherwise the model would learn
to trust evidence that flatters the queries it was trained on more than it
will a new query.
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm import tqdm

from shopsense.data.schema import JUDGMENT_GRADES
from shopsense.errors import ShopsenseError
from shopsense.search.catalog import Filters
from shopsense.search.evaluate import Judgments
from shopsense.search.finetune import CROSS_FIT, refit_without, trained_queries
from shopsense.search.ranking.associations import TermAssociations, TitleWords
from shopsense.search.ranking.features import FEATURES, exact_terms, ranking_features
from shopsense.search.ranking.model import Ranker

if TYPE_CHECKING:
    import lightgbm

    from shopsense.search.engine import SearchEngine

GRADE_STEPS = 3  # labels are round((grade - 1) * 3): 0..6 on a 1..3 scale
FOLDS = 5  # training queries' word lifts come from tables learnt without their fold
ENCODER_FOLDS = 2  # and their dense scores from encoders fine-tuned without their fold


def train_ranker(
    engine: SearchEngine,
    judgments: Judgments,
    n_estimators: int = 150,
    learning_rate: float = 0.06,
    num_leaves: int = 31,
    n_models: int = 2,
    seed: int = 0,
    cross_fit: bool = True,
    progress: bool = False,
) -> Ranker:
    """Fit LambdaRank on ``judgments`` (gain linear in the grade, as the metric),
    ``n_models`` times from seeds ``seed``, ``seed + 1``, ...; the ranker scores
    by their sum. Two models summed rank better than one (a model's errors
    depend on its seed, through the features each tree samples) and score in
    150 more trees a query, where a third gains little more for as many again.

    A fixed number of trees, with no queries held back for early stopping: a
    small stopping set was too noisy to choose by. LambdaRank weighs swaps
    among the first 60 candidates, not LightGBM's 30, and each tree sees 30%
    of the features, which keeps trees from leaning on the same few strong
    ones. Chosen by cross-validation within the dev queries (the runs behind
    each choice are in git history)."""
    # LightGBM is imported here, not at the top, as in ``Ranker.load``.
    import lightgbm

    x, y, groups, associations = training_data(engine, judgments, cross_fit, progress)
    params = {
        "objective": "lambdarank",
        "label_gain": list(range(2 * GRADE_STEPS + 1)),
        "learning_rate": learning_rate,
        "num_leaves": num_leaves,
        "min_data_in_leaf": 20,
        "feature_fraction": 0.3,
        "lambdarank_truncation_level": 60,
        "deterministic": True,
        "num_threads": 1,
        "verbosity": -1,
    }
    train = lightgbm.Dataset(x, y, group=groups, feature_name=list(FEATURES))
    models = [
        lightgbm.train({**params, "seed": seed + k}, train, n_estimators) for k in range(n_models)
    ]
    return Ranker(summed(models), associations)


def training_data(
    engine: SearchEngine, judgments: Judgments, cross_fit: bool = True, progress: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, TermAssociations]:
    """(features, integer labels, group sizes) over each query's candidates,
    and the word lifts learnt from all of ``judgments``.

    A query's own word lifts come from a table learnt without it (its fold of
    ``FOLDS``): lifts learnt from a query flatter its relevant items, and a
    model trained on flattered lifts would trust them more than new queries
    deserve. With ``cross_fit``, its dense scores likewise come from an encoder
    that did not learn from it (``_readers``)."""
    with tempfile.TemporaryDirectory() as folder:
        readers = (
            _readers(engine, judgments, Path(folder), progress)
            if cross_fit
            else dict.fromkeys(judgments.queries, engine)
        )
        return _features_and_labels(engine, judgments, readers, progress)


def _readers(
    engine: SearchEngine, judgments: Judgments, folder: Path, progress: bool
) -> dict[str, SearchEngine]:
    """The engine that reads each training query. Where the index's encoder was
    fine-tuned on some of these queries, it scores their relevant items higher
    than it will a new query's, and a ranker would learn to trust those scores
    too much. So each of ``ENCODER_FOLDS`` folds of the queries is read through
    an encoder fine-tuned the same way without the fold (cross-fitting), which
    raised held-out NDCG@10 on Home Depot (the figures are in git history).

    The fold encoders are kept beside the index's encoder, in its
    ``CROSS_FIT`` folder where it can be written (else in ``folder``), and a
    later training on the same queries reuses them instead of fine-tuning
    twice again."""
    ids = sorted(judgments.queries)
    model_path = engine.settings.model_path
    seen = set() if engine.vectors is None else trained_queries(model_path)
    if not seen & {judgments.queries[q] for q in ids}:
        return dict.fromkeys(ids, engine)
    if os.access(model_path, os.W_OK):
        folder = Path(model_path) / CROSS_FIT
    readers: dict[str, SearchEngine] = {}
    for fold in range(ENCODER_FOLDS):
        mine = ids[fold::ENCODER_FOLDS]
        encoder = refit_without(
            model_path,
            {judgments.queries[q] for q in mine},
            folder / f"encoder-{fold}",
            progress,
            reuse=True,
        )
        reader = engine.with_encoder(str(encoder), folder / "embeddings", progress)
        readers.update(dict.fromkeys(mine, reader))
    return readers


def _features_and_labels(
    engine: SearchEngine,
    judgments: Judgments,
    readers: dict[str, SearchEngine],
    progress: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, TermAssociations]:
    """Each judged query's candidates (as its reader retrieves them), their
    features with its fold's word lifts, and their grades as labels."""
    catalog = engine.catalog
    item_ids = catalog.items["item_id"].to_numpy()
    plans = {qid: engine.analyze(text.strip()) for qid, text in judgments.queries.items()}
    query_terms = {qid: exact_terms(plan) for qid, plan in plans.items()}
    live = catalog.live_rows
    titles = TitleWords(
        dict(zip(item_ids[live], catalog.strings("title_terms", live), strict=True))
    )
    fold_of = {qid: i % FOLDS for i, qid in enumerate(sorted(judgments.queries))}
    fold_lifts = [
        TermAssociations.learn(
            judgments.subset([q for q, f in fold_of.items() if f != fold]), query_terms, titles
        )
        for fold in range(FOLDS)
    ]
    xs, ys, groups = [], [], []
    for qid, plan in tqdm(plans.items(), disable=not progress, desc="features"):
        if not plan.terms:
            continue
        reader = readers[qid]
        vector = reader.encode(plan.semantic_text)
        found = reader.retrieve(plan, vector, Filters()).head(engine.settings.rerank_depth)
        grades = judgments.grades.get(qid, {})
        labels = np.array(
            [round((grades.get(i, 1.0) - 1.0) * GRADE_STEPS) for i in item_ids[found.rows]]
        )
        if len(found.rows) < 2 or labels.max() <= 0:
            continue  # nothing to learn from this query's order
        context = reader.ranking_context()
        xs.append(ranking_features(context, fold_lifts[fold_of[qid]], plan, vector, found))
        ys.append(labels)
        groups.append(len(labels))
    if not groups:
        raise ShopsenseError("no judged query found a relevant item among its candidates")
    associations = TermAssociations.learn(judgments, query_terms, titles)
    return np.concatenate(xs), np.concatenate(ys), np.array(groups), associations


def summed(boosters: list[lightgbm.Booster]) -> lightgbm.Booster:
    """One LightGBM model holding every tree of ``boosters``. A model's score is
    the sum of its trees', so this one scores the sum of theirs, and an ensemble
    is saved, loaded and scored as a single model file."""
    import lightgbm  # as in ``train_ranker``

    if len(boosters) == 1:
        return boosters[0]  # the default: nothing to merge
    texts = [b.model_to_string() for b in boosters]
    trees = [tree for text in texts for tree in _trees(text)]
    renumbered = [f"Tree={i}\n" + tree.partition("\n")[2] for i, tree in enumerate(trees)]
    head = texts[0][: texts[0].index("\nTree=0\n") + 1]
    sizes = "tree_sizes=" + " ".join(str(len(t.encode())) for t in renumbered)
    head = re.sub(r"^tree_sizes=.*$", sizes, head, count=1, flags=re.MULTILINE)
    tail = texts[0][texts[0].index("end of trees") :]
    return lightgbm.Booster(model_str=head + "".join(renumbered) + tail)


def _trees(model_text: str) -> list[str]:
    """The ``Tree=`` sections of a LightGBM text model, each with its blank lines."""
    body = model_text[model_text.index("\nTree=0\n") + 1 : model_text.index("end of trees")]
    starts = [m.start() for m in re.finditer(r"^Tree=\d+$", body, flags=re.MULTILINE)]
    return [body[a:b] for a, b in itertools.pairwise([*starts, len(body)])]


def judgments_from_events(events: pd.DataFrame) -> Judgments:
    """Grades from search sessions: for each search query, the items the same
    session went on to click (2.33), cart (2.67) or buy (3); the strongest
    counts. Events are source-id columns user_id, item_id, type, session_id, query."""
    grade_of = JUDGMENT_GRADES
    if "session_id" not in events or "query" not in events:
        raise ShopsenseError("click-log training needs session_id and query columns")
    searches = events[(events["type"] == "search") & events["query"].notna()]
    first = searches.groupby("session_id")["query"].first()
    acted = events[events["type"].isin(list(grade_of)) & events["session_id"].isin(first.index)]
    frame = pd.DataFrame(
        {
            "query": first.reindex(acted["session_id"]).to_numpy(),
            "item": acted["item_id"].astype(str).to_numpy(),
            "grade": acted["type"].map(grade_of).to_numpy(),
        }
    )
    best = frame.groupby(["query", "item"])["grade"].max()
    queries: dict[str, str] = {}
    grades: dict[str, dict[str, float]] = {}
    for (query, item), grade in best.items():
        key = str(query).strip().lower()
        queries.setdefault(key, str(query))
        grades.setdefault(key, {})[item] = float(grade)
    return Judgments(queries, grades)
