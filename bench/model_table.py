"""Every model on three real datasets (issue 3), full ranking, test set.

- ml-100k: random 8:1:1 per user (RecBole's protocol), beside RecBole 1.2.1's
  BPR and Pop measured on this machine;
- amazon-beauty: leave-one-out;
- taobao sample: temporal 80/10/10.

"tuned" rows take the parameters ``shopsense tune`` finds on the validation
part (``SHOPSENSE_BENCH_TRIALS`` Optuna trials, default 12, 0 to skip); the test part is
never seen while tuning. Peak memory is the peak resident memory of the
child process that loads the data, fits the model and evaluates it (the
interpreter and the data alone take a few hundred MiB).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

from bench.common import REPO, datasets_root
from bench.model_run import COLUMNS
from shopsense.data.dataset import Dataset
from shopsense.data.ingest import ingest
from shopsense.tuning import tune

DATASETS = {
    "ml-100k": ("recbole", "random"),
    "amazon-beauty": ("amazon", "loo"),
    "taobao-userbehavior-sample": ("taobao", "temporal"),
}
MODELS = [
    "pop",
    "trending",
    "itemknn",
    "userknn",
    "ease",
    "svd",
    "nmf",
    "als",
    "bpr",
    "content",
    "blend",
    "rerank",
]
TUNED = ["als", "bpr", "ease"]
# Chosen before looking at test figures: the ranker learns the holdout its
# split uses, over the strongest candidate generators that fit the catalog.
RERANK = {
    "ml-100k": {
        "holdout": "random",
        "candidates": {"ease": {}, "userknn": {}, "als": {}, "itemknn": {}},
    },
    "amazon-beauty": {"candidates": {"itemknn": {}, "ease": {}, "als": {}, "content": {}}},
    "taobao-userbehavior-sample": {},
}
TRIALS = int(os.environ.get("SHOPSENSE_BENCH_TRIALS", 12))

RECBOLE_BPR_NDCG = 0.2928


def _run(name: str, params: dict, data: str, method: str) -> dict:
    """Fit and evaluate in a child process (see ``bench.model_run``)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.model_run", data, method, name, json.dumps(params)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(title: str, rows: dict[str, dict]) -> None:
    print(title)
    head = ["Recall", "NDCG", "MRR", "Hit", "Prec", "F1", "Cover", "fit s", "MiB"]
    width = max(len(r) for r in rows)
    print(f"  {'model':<{width}}  " + "  ".join(f"{h:>7}" for h in head))
    for name, r in rows.items():
        if "error" in r:
            print(f"  {name:<{width}}  n/a: {r['error']}")
            continue
        cells = [f"{r[c]:>7.4f}" for c in COLUMNS] + [
            f"{r['fit_seconds']:>7.1f}",
            f"{r['peak_mib']:>7}",
        ]
        print(f"  {name:<{width}}  " + "  ".join(cells))


def run() -> dict:
    out: dict = {}
    for folder, (fmt, method) in DATASETS.items():
        path = datasets_root() / folder
        if not path.is_dir():
            print(f"{folder}: skipped, not found at {path}")
            continue
        tmp = tempfile.mkdtemp(prefix="shopsense-bench-")
        ingest(fmt, [path], tmp, progress=False)
        dataset = Dataset.load(tmp)
        rows: dict[str, dict] = {}
        for name in MODELS:
            rows[name] = _run(name, RERANK[folder] if name == "rerank" else {}, tmp, method)
            print(f"  .. {folder} {name}: {rows[name]}", flush=True)
        for name in TUNED if TRIALS > 0 else ():
            if "error" in rows[name]:
                continue
            best = tune(dataset, name, TRIALS, split=method, seed=0)
            rows[f"{name} (tuned)"] = {
                **_run(name, best["params"], tmp, method),
                "params": best["params"],
            }
            print(f"  .. {folder} {name} tuned: {rows[f'{name} (tuned)']}", flush=True)
        _table(
            f"\n{folder} ({method} split, full ranking, test, "
            f"{dataset.n_users:,} users × {dataset.n_items:,} items):",
            rows,
        )
        out[folder] = {"split": method, "rows": rows}
        shutil.rmtree(tmp, ignore_errors=True)
        if folder == "ml-100k":
            scored = {k: v["NDCG@10"] for k, v in rows.items() if "NDCG@10" in v}
            ours = max(v for k, v in scored.items() if k.split()[0] in ("bpr", "als", "ease"))
            best = max(scored, key=scored.get)
            ratio = scored[best] / RECBOLE_BPR_NDCG
            print(
                f"  RecBole 1.2.1 BPR NDCG@10 {RECBOLE_BPR_NDCG}: best of bpr/als/ease {ours:.4f} "
                f"({'reached' if ours >= RECBOLE_BPR_NDCG else 'NOT reached'}); best model "
                f"{best} {scored[best]:.4f} = ×{ratio:.3f} ({'≥' if ratio >= 1.05 else '<'} ×1.05)"
            )
    return out
