"""shopsense beside RecBole 1.2.1 on ml-100k with RecBole's default protocol:
every rating an interaction, random 8:1:1 split per user, full ranking, test set.

The RecBole figures were measured on this machine (2026-11-28) and are quoted
from issue 2. RecBole's ``Pop`` counts an item at most once per training batch
(``item_cnt[item] = item_cnt[item] + 1`` with repeated indices; RecBole issues
#2198 and #1844), so its popularity depends on the batch size. The last part
of this benchmark shows that dependence by counting the same way.
"""

from __future__ import annotations

import tempfile

import numpy as np

from bench.common import datasets_root
from shopsense.data.dataset import Dataset
from shopsense.data.ingest import ingest
from shopsense.data.split import split_dataset
from shopsense.evaluation.evaluate import evaluate
from shopsense.models.itemknn import ItemKNN
from shopsense.models.pop import Popularity

RECBOLE = {
    "Pop": {"Recall@10": 0.0810, "NDCG@10": 0.1033, "Hit@10": 0.4645, "MRR@10": 0.2005},
    "BPR": {"Recall@10": 0.2466, "NDCG@10": 0.2928, "Hit@10": 0.7815, "MRR@10": 0.4895},
}
METRICS = ("Recall@10", "NDCG@10", "Hit@10", "MRR@10")
SEEDS = (0, 1, 2)


class _Counts:
    def __init__(self, counts: np.ndarray) -> None:
        self.counts = counts.astype(np.float32)

    def score(self, users, user_items=None):
        return np.broadcast_to(self.counts, (len(users), len(self.counts))).copy()


def _batch_counted(items: np.ndarray, n_items: int, batch: int, rng) -> np.ndarray:
    """One epoch of RecBole-style counting: each item once per batch it is in,
    the batch holding the positives and as many uniformly sampled negatives."""
    counts = np.zeros(n_items)
    order = rng.permutation(len(items))
    for start in range(0, len(order), batch):
        pos = items[order[start : start + batch]]
        counts[np.unique(np.concatenate([pos, rng.integers(0, n_items, len(pos))]))] += 1
    return counts


def run() -> dict:
    path = datasets_root() / "ml-100k"
    if not path.is_dir():
        print(f"recbole check: skipped, {path} not found")
        return {"skipped": f"{path} not found"}
    with tempfile.TemporaryDirectory() as tmp:
        ingest("recbole", [path], tmp, progress=False)
        dataset = Dataset.load(tmp)
    ours: dict[str, list[dict]] = {"pop": [], "itemknn": []}
    emulated: dict[int, list[dict]] = {1024: [], 2048: [], 8192: []}
    for seed in SEEDS:
        split = split_dataset(dataset, "random", seed=seed)
        for model in (Popularity(), ItemKNN()):
            ours[model.name].append(evaluate(model.fit(split.train), split, ks=(10,)))
        rng = np.random.default_rng(seed)
        items = split.train.interactions["item"].to_numpy()
        for batch in emulated:
            counts = _batch_counted(items, dataset.n_items, batch, rng)
            emulated[batch].append(evaluate(_Counts(counts), split, ks=(10,)))

    def mean(runs: list[dict]) -> dict[str, float]:
        return {m: round(float(np.mean([r[m] for r in runs])), 4) for m in METRICS}

    rows = {
        "RecBole Pop (reference)": RECBOLE["Pop"],
        "RecBole BPR (reference)": RECBOLE["BPR"],
        "shopsense pop": mean(ours["pop"]),
        "shopsense itemknn": mean(ours["itemknn"]),
    }
    for batch, runs in emulated.items():
        rows[f"pop counted once per batch of {batch} (RecBole's way)"] = mean(runs)
    pop = rows["shopsense pop"]
    ratio = {m: round(pop[m] / RECBOLE["Pop"][m], 3) for m in ("Recall@10", "NDCG@10")}
    print(f"ml-100k, random 8:1:1 per user, full ranking, test set, mean of seeds {SEEDS}:")
    width = max(len(k) for k in rows)
    print(f"  {'':<{width}}  " + "  ".join(f"{m:>9}" for m in METRICS))
    for name, values in rows.items():
        print(f"  {name:<{width}}  " + "  ".join(f"{values[m]:>9.4f}" for m in METRICS))
    within = all(abs(r - 1) <= 0.05 for r in ratio.values())
    print(
        f"  shopsense pop / RecBole Pop: Recall@10 ×{ratio['Recall@10']}, NDCG@10 "
        f"×{ratio['NDCG@10']} ({'within' if within else 'outside'} ±5%). RecBole's Pop undercounts "
        "items repeated in a batch, so its figure moves with the batch size (rows above)."
    )
    return {"rows": rows, "pop_ratio_to_recbole": ratio, "pop_within_5_percent": within}
