"""Full ranking of 22k users × 12k items in ≤ 5 s (target from issue 2).

Runs on Amazon Beauty (22,332 users × 12,086 items, leave-one-out) when the
shared copy is there, else on a synthetic store of the same shape.
"""

from __future__ import annotations

import tempfile

from bench.common import datasets_root, timer
from shopsense.data.dataset import Dataset
from shopsense.data.ingest import ingest
from shopsense.data.split import split_dataset
from shopsense.data.synthetic import StoreConfig, write_store
from shopsense.evaluation.evaluate import evaluate
from shopsense.models.itemknn import ItemKNN
from shopsense.models.pop import Popularity

TARGET_SECONDS = 5.0


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        beauty = datasets_root() / "amazon-beauty"
        if beauty.is_dir():
            ingest("amazon", [beauty], f"{tmp}/data", progress=False)
            source = "amazon-beauty"
        else:
            write_store(StoreConfig(users=22_332, items=12_086, days=60), f"{tmp}/raw")
            ingest("parquet", [f"{tmp}/raw"], f"{tmp}/data", progress=False)
            source = "synthetic 22,332 × 12,086"
        dataset = Dataset.load(f"{tmp}/data")
    split = split_dataset(dataset, "loo")
    out: dict = {"data": source, "users": dataset.n_users, "items": dataset.n_items, "models": {}}
    for model in (Popularity(), ItemKNN()):
        with timer() as fit:
            model.fit(split.train)
        with timer() as ev:
            r = evaluate(model, split, ks=(1, 5, 10, 20))
        out["models"][model.name] = {
            "fit_seconds": round(fit["seconds"], 2),
            "eval_seconds": round(ev["seconds"], 2),
            "users_ranked": r["users"],
            "NDCG@10": round(r["NDCG@10"], 4),
            "Hit@10": round(r["Hit@10"], 4),
            "meets_target": ev["seconds"] <= TARGET_SECONDS,
        }
        print(
            f"evaluate ({source}, {r['users']:,} users × {dataset.n_items:,} items, full ranking, "
            f"K=1,5,10,20): {model.name} {ev['seconds']:.2f}s (fit {fit['seconds']:.2f}s), "
            f"NDCG@10 {r['NDCG@10']:.4f}; target ≤ {TARGET_SECONDS:.0f}s: "
            f"{'met' if ev['seconds'] <= TARGET_SECONDS else 'NOT met'}"
        )
    return out
