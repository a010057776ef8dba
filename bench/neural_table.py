"""Neural and classical models in one table (issue 4): Amazon Beauty in the
S3-Rec preprocessing and ml-100k, both leave-one-out, full ranking, test set.

Each neural model trains with early stopping on validation NDCG@10 and a
budget of ``SHOPSENSE_NEURAL_SECONDS`` seconds (default 900; a schedule, its
learning rate decaying to the end of it), each in a process of its own
(``bench.model_run``), which reports where its time went.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from bench.common import datasets_root
from bench.model_table import _run, _table
from shopsense.data.ingest import ingest

SECONDS = float(os.environ.get("SHOPSENSE_NEURAL_SECONDS", 900))
DATASETS = {"amazon-beauty-s3rec": "sequences", "ml-100k": "recbole"}
NEURAL = {
    "sasrec": {
        "dropout": 0.5,
        "batch_size": 256,
        "learning_rate": 2e-3,
        "ema_decay": 0.99,
        "patience": 20,
    },
    "bert4rec": {"dropout": 0.2, "batch_size": 256, "patience": 20},
    "gru4rec": {"dropout": 0.3, "batch_size": 256, "patience": 20},
    "twotower": {"patience": 10},
    "ncf": {"patience": 5},
    "cfgan": {"patience": 10},
}
CLASSICAL = ["pop", "itemknn", "ease", "als", "rerank"]


def run() -> dict:
    out: dict = {}
    for folder, fmt in DATASETS.items():
        path = datasets_root() / folder
        if not path.is_dir():
            print(f"{folder}: skipped, not found at {path}")
            continue
        tmp = tempfile.mkdtemp(prefix="shopsense-neural-")
        ingest(fmt, [path], tmp, progress=False)
        rows = {name: _run(name, {}, tmp, "loo") for name in CLASSICAL}
        for name, params in NEURAL.items():
            rows[name] = _run(name, {**params, "max_seconds": SECONDS}, tmp, "loo")
            print(f"  .. {folder} {name}: {rows[name]}", flush=True)
        _table(f"\n{folder} (leave-one-out, full ranking, test):", rows)
        out[folder] = rows
        shutil.rmtree(tmp, ignore_errors=True)
    return out
