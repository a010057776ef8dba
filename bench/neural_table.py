"""Neural and classical models in one table (issue 4): Amazon Beauty in the
S3-Rec preprocessing and ml-100k, both leave-one-out, full ranking, test set.

Each neural model trains with its defaults (what a user gets), early
stopping on validation NDCG@10 and a budget of ``SHOPSENSE_NEURAL_SECONDS``
seconds (default 600; a schedule, its learning rate decaying to the end of
it), each in a process of its own (``bench.model_run``), which reports where
its time went. ``SHOPSENSE_NEURAL_DATASETS`` (comma-separated folder names)
chooses the datasets: Beauty and ml-100k unless told, or the Taobao
UserBehavior sample (real view/cart/fav/buy events of 815 users over 55,368
items), the second store beside Beauty, as the shared data holds no other
Amazon category.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from bench.common import datasets_root
from bench.model_table import _run, _table
from shopsense.data.ingest import ingest

SECONDS = float(os.environ.get("SHOPSENSE_NEURAL_SECONDS", 600))
DATASETS = {
    "amazon-beauty-s3rec": "sequences",
    "ml-100k": "recbole",
    "taobao-userbehavior-sample": "taobao",
}
CHOSEN = os.environ.get("SHOPSENSE_NEURAL_DATASETS", "amazon-beauty-s3rec,ml-100k").split(",")
NEURAL = ["sasrec", "bert4rec", "gru4rec", "twotower", "ncf", "cfgan"]  # each with its defaults
CLASSICAL = ["pop", "itemknn", "ease", "als", "rerank"]


def run() -> dict:
    out: dict = {}
    unknown = sorted(set(CHOSEN) - set(DATASETS))
    if unknown:
        raise SystemExit(f"SHOPSENSE_NEURAL_DATASETS: unknown {unknown}; known: {list(DATASETS)}")
    for folder in CHOSEN:
        fmt = DATASETS[folder]
        path = datasets_root() / folder
        if not path.is_dir():
            print(f"{folder}: skipped, not found at {path}")
            continue
        tmp = tempfile.mkdtemp(prefix="shopsense-neural-")
        ingest(fmt, [path], tmp, progress=False)
        rows = {name: _run(name, {}, tmp, "loo") for name in CLASSICAL}
        for name in NEURAL:
            rows[name] = _run(name, {"max_seconds": SECONDS}, tmp, "loo")
            print(f"  .. {folder} {name}: {rows[name]}", flush=True)
        _table(f"\n{folder} (leave-one-out, full ranking, test):", rows)
        out[folder] = rows
        shutil.rmtree(tmp, ignore_errors=True)
    return out
