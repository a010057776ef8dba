"""Search quality on graded relevance judgments, over the whole catalogue.

NDCG@10 with gain = grade - 1 and the ideal DCG from every judged product of
the query; Recall@100 and MRR@10 with "relevant" = grade >= 2.33 (the usual
reading of the Home Depot 1-3 grades); unjudged products count as not
relevant. Queries with nothing to find (no positive gain, no relevant
product) are left out of that metric's mean, and counted.
"""

from __future__ import annotations

import csv
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shopsense.errors import ShopsenseError

RELEVANT_GRADE = 2.33


@dataclass
class Judgments:
    queries: dict[str, str]
    grades: dict[str, dict[str, float]]

    def subset(self, ids: list[str]) -> Judgments:
        return Judgments(
            {q: self.queries[q] for q in ids}, {q: self.grades.get(q, {}) for q in ids}
        )


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))
    except OSError as e:
        raise ShopsenseError(f"cannot read {path}: {e.strerror}") from None


def load_judgments(queries: Path, labels: Path) -> Judgments:
    """``queries``: query_id,query; ``labels``: query_id,product_uid (or item_id),relevance."""
    out: dict[str, str] = {}
    for row in _rows(Path(queries)):
        if "query_id" not in row or "query" not in row:
            raise ShopsenseError(f"{queries} needs the columns query_id and query")
        out[row["query_id"]] = row["query"]
    grades: dict[str, dict[str, float]] = {}
    for row in _rows(Path(labels)):
        item = row.get("product_uid") or row.get("item_id")
        if "query_id" not in row or item is None or "relevance" not in row:
            raise ShopsenseError(f"{labels} needs query_id, product_uid (or item_id), relevance")
        try:
            grade = float(row["relevance"])
        except ValueError:
            raise ShopsenseError(
                f"{labels}: relevance {row['relevance']!r} is not a number"
            ) from None
        grades.setdefault(row["query_id"], {})[item] = grade
    missing = set(grades) - set(out)
    if missing:
        raise ShopsenseError(f"{len(missing)} labelled query ids are not in {queries}")
    return Judgments(out, grades)


def split_queries(ids: list[str], holdout: float = 0.5) -> tuple[list[str], list[str]]:
    """(dev, held-out): each id goes by a hash of itself, so the split never
    depends on file order and a query stays on its side as files grow."""
    dev, held = [], []
    for q in ids:
        h = int.from_bytes(hashlib.sha256(q.encode()).digest()[:8], "little") / 2**64
        (held if h < holdout else dev).append(q)
    return dev, held


def query_metrics(
    ranked: list[str], grades: dict[str, float], k: int = 10, depth: int = 100
) -> dict[str, float | None]:
    """One query's NDCG@k, Recall@depth and MRR@k (``None`` where undefined)."""
    gains = np.array([grades.get(i, 1.0) - 1.0 for i in ranked[:k]])
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.sort(np.array([g - 1.0 for g in grades.values()]))[::-1][:k]
    idcg = float((ideal * discounts[: len(ideal)]).sum())
    ndcg = float((gains * discounts[: len(gains)]).sum()) / idcg if idcg > 0 else None
    relevant = {i for i, g in grades.items() if g >= RELEVANT_GRADE}
    recall = len(relevant.intersection(ranked[:depth])) / len(relevant) if relevant else None
    mrr = None
    if relevant:
        first = next((r for r, i in enumerate(ranked[:k], 1) if i in relevant), None)
        mrr = 1.0 / first if first else 0.0
    return {f"NDCG@{k}": ndcg, f"Recall@{depth}": recall, f"MRR@{k}": mrr}


def evaluate_search(
    rank: Callable[[str], list[str]],
    judgments: Judgments,
    k: int = 10,
    depth: int = 100,
    progress: bool = False,
) -> dict[str, float | int]:
    """Mean metrics of ``rank`` (query text → item ids, best first) over the
    judged queries, with the latency of each call."""
    from tqdm import tqdm

    per: dict[str, list[float]] = {f"NDCG@{k}": [], f"Recall@{depth}": [], f"MRR@{k}": []}
    latency = []
    for qid in tqdm(list(judgments.queries), disable=not progress, desc="queries"):
        started = time.perf_counter()
        ranked = rank(judgments.queries[qid])
        latency.append(time.perf_counter() - started)
        for name, value in query_metrics(ranked, judgments.grades.get(qid, {}), k, depth).items():
            if value is not None:
                per[name].append(value)
    out: dict[str, float | int] = {"queries": len(judgments.queries)}
    for name, values in per.items():
        out[name] = round(float(np.mean(values)), 4) if values else 0.0
        out[f"{name} queries"] = len(values)
    lat = np.array(latency) * 1000
    out["p50_ms"] = round(float(np.percentile(lat, 50)), 2) if len(lat) else 0.0
    out["p99_ms"] = round(float(np.percentile(lat, 99)), 2) if len(lat) else 0.0
    return out
