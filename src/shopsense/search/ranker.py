"""Learning to rank: a LightGBM LambdaRank model re-orders the first
``rerank_depth`` retrieved items from features of the query and the item.

Trained on graded judgments (``train_ranker``) or on click logs
(``judgments_from_events`` turns searches followed by clicks, carts and
purchases in the same session into grades). The model is saved in
LightGBM's text format: loading it parses numbers, it runs no code.
"""

from __future__ import annotations

import itertools
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from shopsense.data.schema import JUDGMENT_GRADES
from shopsense.errors import ShopsenseError
from shopsense.search.analysis import terms
from shopsense.search.associations import N_LIFT_FEATURES, TermAssociations, TitleWords
from shopsense.search.catalog import Filters
from shopsense.search.evaluate import Judgments
from shopsense.search.finetune import refit_without, trained_queries

if TYPE_CHECKING:
    import lightgbm

    from shopsense.search.engine import Candidates, QueryPlan, SearchEngine

BASE_FEATURES = (
    "bm25",
    "bm25_relative",
    "bm25_reciprocal_rank",
    "cosine",
    "cosine_relative",
    "fused",
    "fused_reciprocal_rank",
    "top5_centroid_cosine",
    "top20_centroid_cosine",
    "title_coverage",
    "title_exact_coverage",
    "title_idf_coverage",
    "query_terms",
    "title_terms",
    "title_share_matched",
    "phrase_in_title",
    "bigram_coverage",
    "first_term_in_title",
    "last_term_in_title",
    "last_term_early_in_title",
    "numbers_matched",
    "chars_token_set",
    "chars_partial",
    "joined_query_in_title",
    "brand_matched",
    "category_matched",
    "popularity",
    "price",
    "search_clicks",
    "word_lift_mean",
    "word_lift_least",
    "other_word_lift_mean",
    "missing_word_lift_sum",
)
# Features a tree model cannot put in context on its own: each is also given
# against the query's leading candidates (below their best, in their standard
# deviations, and their best), because "0.6 cosine" is strong for one query and
# weak for another.
IN_CONTEXT = tuple(
    n
    for n in BASE_FEATURES
    if n not in {"bm25_relative", "cosine_relative", "fused_reciprocal_rank", "query_terms"}
)
FEATURES = BASE_FEATURES + tuple(
    f"{n}_{suffix}" for suffix in ("below_best", "z", "best") for n in IN_CONTEXT
)
CONTEXT = 50  # leading candidates the per-query context is taken over
GRADE_STEPS = 3  # labels are round((grade - 1) * 3): 0..6 on a 1..3 scale
FOLDS = 5  # training queries' word lifts come from tables learnt without their fold
ENCODER_FOLDS = 2  # and their dense scores from encoders fine-tuned without their fold
NUMBER = re.compile(r"^\d")


class TitleTerms:
    """Candidates' title terms as integer ids, so a query's term matches over
    all candidates are a few array operations instead of a loop per item."""

    def __init__(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        self.n = len(lengths)
        self.lengths = lengths
        self.ids = ids
        self.owner = np.repeat(np.arange(self.n), lengths)
        starts = np.cumsum(lengths) - lengths
        self.position = np.arange(len(ids)) - starts[self.owner]

    def present(self, term_ids: np.ndarray, within: int | None = None) -> np.ndarray:
        """(candidates × terms): which title has each term (in its first ``within``)."""
        out = np.zeros((self.n, len(term_ids)), bool)
        hit_token, hit_term = np.nonzero(self.ids[:, None] == term_ids[None, :])
        if within is not None:
            early = self.position[hit_token] < within
            hit_token, hit_term = hit_token[early], hit_term[early]
        out[self.owner[hit_token], hit_term] = True
        return out

    def bigrams_matched(self, pairs: np.ndarray) -> np.ndarray:
        """How many of the (distinct) id ``pairs`` occur as adjacent title terms."""
        out = np.zeros(self.n, np.int64)
        if len(self.ids) < 2 or not len(pairs):
            return out
        same = self.owner[:-1] == self.owner[1:]
        first, second = self.ids[:-1], self.ids[1:]
        for a, b in pairs:
            hits = np.unique(self.owner[:-1][same & (first == a) & (second == b)])
            out[hits] += 1
        return out


class Ranker:
    def __init__(self, booster, associations: TermAssociations) -> None:
        self.booster = booster
        self.associations = associations
        self._labels: dict[str, frozenset[str]] = {}

    # ------------------------------------------------------------- features
    def _label_terms(self, label: str) -> frozenset[str]:
        """Terms of a brand or category name; there are few, so all are kept."""
        found = self._labels.get(label)
        if found is None:
            found = self._labels[label] = frozenset(terms(label))
        return found

    def features(
        self, engine: SearchEngine, plan: QueryPlan, vector: np.ndarray | None, found: Candidates
    ) -> np.ndarray:
        """One row of ``FEATURES`` per candidate."""
        rows = found.rows
        n = len(rows)
        out = np.zeros((n, len(FEATURES)), np.float32)
        col = {name: i for i, name in enumerate(FEATURES)}
        bm25 = found.bm25
        out[:, col["bm25"]] = bm25
        out[:, col["bm25_relative"]] = bm25 / bm25.max() if n and bm25.max() > 0 else 0.0
        lex_rank = np.argsort(np.argsort(-bm25, kind="stable"), kind="stable") + 1
        out[:, col["bm25_reciprocal_rank"]] = np.where(bm25 > 0, 1.0 / lex_rank, 0.0)
        cosine = found.cosine.copy()
        if vector is not None and engine.vectors is not None:
            vectors = engine.vectors.vectors(rows)
            cosine = vectors @ vector
            # Pseudo-relevance: how alike an item is to the best few results,
            # which are mostly right; a store's relevant items come in groups.
            for top in (5, 20):
                centroid = vectors[:top].mean(axis=0)
                centroid /= np.linalg.norm(centroid) + 1e-12
                out[:, col[f"top{top}_centroid_cosine"]] = vectors @ centroid
        cosine = np.where(np.isnan(cosine), 0.0, cosine)
        out[:, col["cosine"]] = cosine
        out[:, col["cosine_relative"]] = cosine - (cosine.max() if n else 0.0)
        out[:, col["fused"]] = found.score
        out[:, col["fused_reciprocal_rank"]] = 1.0 / np.arange(1, n + 1)
        self._term_features(engine, plan, rows, out, col)
        _character_features(plan, engine.catalog.strings("title", rows), out, col)
        out[:, col["popularity"]] = np.log1p(engine.catalog.popularity[rows])
        price = engine.catalog.price[rows]
        out[:, col["price"]] = np.where(np.isfinite(price), np.log1p(np.maximum(price, 0)), -1.0)
        out[:, col["search_clicks"]] = np.log1p(engine.catalog.search_clicks[rows])
        if n:
            _in_context(out, col)
        return out

    def _term_features(
        self,
        engine: SearchEngine,
        plan: QueryPlan,
        rows: np.ndarray,
        out: np.ndarray,
        col: dict[str, int],
    ) -> None:
        """How the query's terms meet each candidate's title, brand and category."""
        index = engine.catalog.title_index
        table = TitleTerms(*index.gather(rows))
        exact = exact_terms(plan)
        all_terms = {t for t, _ in plan.terms}
        every = table.present(index.ids_of(exact + [t for t, w in plan.terms if w < 1.0]))
        present = every[:, : len(exact)]
        out[:, col["query_terms"]] = len(exact)
        out[:, col["title_terms"]] = table.lengths
        lifts = col["word_lift_mean"]
        out[:, lifts : lifts + N_LIFT_FEATURES] = self.associations.features(
            exact, table.ids, table.owner, table.n, index
        )
        matched_all = every.sum(axis=1)
        distinct = index.distinct[rows]
        out[:, col["title_share_matched"]] = matched_all / np.maximum(distinct, 1)
        if all_terms:
            out[:, col["title_coverage"]] = matched_all / len(all_terms)
        if exact:
            n_docs = max(engine.catalog.n_rows, 1)
            idf = np.array([np.log1p(n_docs / (1 + engine.lexical.doc_freq(t))) for t in exact])
            idf_total = idf.sum()
            out[:, col["title_exact_coverage"]] = present.mean(axis=1)
            if idf_total:
                out[:, col["title_idf_coverage"]] = present @ idf / idf_total
            out[:, col["first_term_in_title"]] = present[:, 0]
            out[:, col["last_term_in_title"]] = present[:, -1]
            out[:, col["last_term_early_in_title"]] = table.present(
                index.ids_of(exact[-1:]), within=4
            )[:, 0]
            phrase = " ".join(exact)
            joined = engine.catalog.strings("title_terms", rows)
            out[:, col["phrase_in_title"]] = [phrase in j for j in joined]
            bigrams = sorted(set(itertools.pairwise(exact)))
            if bigrams:
                pairs = index.ids_of([w for pair in bigrams for w in pair]).reshape(-1, 2)
                out[:, col["bigram_coverage"]] = table.bigrams_matched(pairs) / len(bigrams)
            numbers = [i for i, t in enumerate(exact) if NUMBER.match(t)]
            if numbers:
                out[:, col["numbers_matched"]] = present[:, numbers].mean(axis=1)
        for name, column in (("brand_matched", "brand"), ("category_matched", "category")):
            labels = engine.catalog.strings(column, rows)
            matched = {
                label: bool(label) and bool(all_terms & self._label_terms(label))
                for label in set(labels)
            }
            out[:, col[name]] = [matched[label] for label in labels]

    def rerank(
        self, engine: SearchEngine, plan: QueryPlan, vector: np.ndarray | None, found: Candidates
    ) -> tuple[np.ndarray, np.ndarray]:
        """The first ``rerank_depth`` candidates in the model's order, then the rest."""
        depth = min(engine.settings.rerank_depth, len(found.rows))
        head = _head(found, depth)
        scores = self.booster.predict(self.features(engine, plan, vector, head), num_threads=1)
        order = np.argsort(-scores, kind="stable")
        tail_rows = found.rows[depth:]
        tail_scores = scores.min() - 1.0 + found.score[depth:] if len(tail_rows) else []
        return (
            np.concatenate([head.rows[order], tail_rows]),
            np.concatenate([scores[order], tail_scores]),
        )

    # ------------------------------------------------------------- storage
    def save(self, path: Path) -> None:
        """The model at ``path`` and its word lifts beside it (``words_path``),
        written first, so whoever finds the model finds lifts next to it."""
        self.associations.save(words_path(path))
        self.booster.save_model(str(path))

    @classmethod
    def load(cls, path: Path) -> Ranker:
        import lightgbm

        try:
            booster = lightgbm.Booster(model_file=str(path))
        except lightgbm.basic.LightGBMError as e:
            raise ShopsenseError(f"{path} is not a LightGBM model: {e}") from None
        retrain = "retrain it with `shopsense train-ranker`"
        if booster.num_feature() != len(FEATURES):
            raise ShopsenseError(
                f"{path} was trained on {booster.num_feature()} features and this version "
                f"computes {len(FEATURES)}: {retrain}"
            )
        if not words_path(path).is_file():
            raise ShopsenseError(f"{path} has no word lifts beside it: {retrain}")
        return cls(booster, TermAssociations.load(words_path(path)))


def words_path(path: Path) -> Path:
    """Where a ranker saved at ``path`` keeps its word lifts: ranker.txt -> ranker-words.json."""
    return path.with_name(f"{path.stem}-words.json")


def exact_terms(plan: QueryPlan) -> list[str]:
    """The query's own terms; the plan's are distinct, and these (not typo or
    synonym variants) come first."""
    return [t for t, w in plan.terms if w >= 1.0]


def _character_features(
    plan: QueryPlan, titles: np.ndarray, out: np.ndarray, col: dict[str, int]
) -> None:
    """Letter-level likeness of query and title, which terms miss: "deckover"
    against "Deck Over", "2x4" against "2 in. x 4 in."."""
    from rapidfuzz import fuzz, process, utils

    if not len(titles):
        return
    processed = [utils.default_process(t) for t in titles]
    query = utils.default_process(plan.text)
    for name, scorer in (
        ("chars_token_set", fuzz.token_set_ratio),
        ("chars_partial", fuzz.partial_ratio),
    ):
        out[:, col[name]] = (
            process.cdist([query], processed, scorer=scorer, dtype=np.float32)[0] / 100.0
        )
    joined = query.replace(" ", "")
    if joined:
        out[:, col["joined_query_in_title"]] = [joined in t.replace(" ", "") for t in processed]


def _in_context(out: np.ndarray, col: dict[str, int]) -> None:
    """The ``IN_CONTEXT`` features against the first ``CONTEXT`` candidates
    (fused order): below their best, in their standard deviations, their best."""
    k = len(IN_CONTEXT)
    base = out[:, [col[n] for n in IN_CONTEXT]]
    lead = base[:CONTEXT]
    best = lead.max(axis=0)
    start = col[f"{IN_CONTEXT[0]}_below_best"]
    out[:, start : start + k] = base - best
    out[:, start + k : start + 2 * k] = (base - lead.mean(axis=0)) / (lead.std(axis=0) + 1e-6)
    out[:, start + 2 * k : start + 3 * k] = best


def _head(found: Candidates, depth: int) -> Candidates:
    from shopsense.search.engine import Candidates

    return Candidates(
        found.rows[:depth],
        found.score[:depth],
        found.bm25[:depth],
        found.cosine[:depth],
        found.lexical_matches,
    )


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
    raised held-out NDCG@10 on Home Depot (the figures are in git history)."""
    ids = sorted(judgments.queries)
    seen = set() if engine.vectors is None else trained_queries(engine.settings.model_path)
    if not seen & {judgments.queries[q] for q in ids}:
        return dict.fromkeys(ids, engine)
    readers: dict[str, SearchEngine] = {}
    for fold in range(ENCODER_FOLDS):
        mine = ids[fold::ENCODER_FOLDS]
        encoder = refit_without(
            engine.settings.model_path,
            {judgments.queries[q] for q in mine},
            folder / f"encoder-{fold}",
            progress,
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
    from tqdm import tqdm

    item_ids = engine.catalog.items["item_id"].to_numpy()
    plans = {qid: engine.analyze(text.strip()) for qid, text in judgments.queries.items()}
    query_terms = {qid: exact_terms(plan) for qid, plan in plans.items()}
    live = engine.catalog.live_rows
    titles = TitleWords(
        dict(zip(item_ids[live], engine.catalog.strings("title_terms", live), strict=True))
    )
    fold_of = {qid: i % FOLDS for i, qid in enumerate(sorted(judgments.queries))}
    rankers = [
        Ranker(
            None,
            TermAssociations.learn(
                judgments.subset([q for q, f in fold_of.items() if f != fold]),
                query_terms,
                titles,
            ),
        )
        for fold in range(FOLDS)
    ]
    xs, ys, groups = [], [], []
    for qid, plan in tqdm(plans.items(), disable=not progress, desc="features"):
        if not plan.terms:
            continue
        reader = readers[qid]
        vector = reader.encode(plan.semantic_text)
        found = _head(reader.retrieve(plan, vector, Filters()), engine.settings.rerank_depth)
        grades = judgments.grades.get(qid, {})
        labels = np.array(
            [round((grades.get(i, 1.0) - 1.0) * GRADE_STEPS) for i in item_ids[found.rows]]
        )
        if len(found.rows) < 2 or labels.max() <= 0:
            continue  # nothing to learn from this query's order
        xs.append(rankers[fold_of[qid]].features(reader, plan, vector, found))
        ys.append(labels)
        groups.append(len(labels))
    if not groups:
        raise ShopsenseError("no judged query found a relevant item among its candidates")
    associations = TermAssociations.learn(judgments, query_terms, titles)
    return np.concatenate(xs), np.concatenate(ys), np.array(groups), associations


def train_ranker(
    engine: SearchEngine,
    judgments: Judgments,
    n_estimators: int = 150,
    learning_rate: float = 0.06,
    num_leaves: int = 31,
    n_models: int = 1,
    seed: int = 0,
    cross_fit: bool = True,
    progress: bool = False,
) -> Ranker:
    """Fit LambdaRank on ``judgments`` (gain linear in the grade, as the metric),
    ``n_models`` times from seeds ``seed``, ``seed + 1``, ...; the ranker scores
    by their sum. The sum is steadier than one model, but once the dense scores
    are cross-fitted more models gain next to nothing and each adds to the
    search's scoring time: so one by default.

    A fixed number of trees, with no queries held back for early stopping: a
    small stopping set was too noisy to choose by. 150 trees at 0.06 do as well
    as 300 at 0.03 at half the scoring time. LambdaRank weighs swaps among the
    first 60 candidates, not LightGBM's 30, and each tree sees half the
    features: chosen by cross-validation within the dev queries, neutral on the
    held-out ones. (The runs behind each choice are in git history.)"""
    import lightgbm

    x, y, groups, associations = training_data(engine, judgments, cross_fit, progress)
    params = {
        "objective": "lambdarank",
        "label_gain": list(range(2 * GRADE_STEPS + 1)),
        "learning_rate": learning_rate,
        "num_leaves": num_leaves,
        "min_data_in_leaf": 20,
        "feature_fraction": 0.5,
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


def summed(boosters: list[lightgbm.Booster]) -> lightgbm.Booster:
    """One LightGBM model holding every tree of ``boosters``. A model's score is
    the sum of its trees', so this one scores the sum of theirs, and an ensemble
    is saved, loaded and scored as a single model file."""
    import lightgbm

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
