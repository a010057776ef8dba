"""One model on one ingested dataset, in a process of its own, so its peak
memory is its own: ``python -m bench.model_run DATA SPLIT NAME PARAMS_JSON``.
Prints one JSON line: the test metrics at 10, fit seconds, the process's
peak resident memory in MiB (interpreter, data, split, model and evaluation)
and, for neural models, their ``training_report_``."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from shopsense.data.dataset import Dataset
from shopsense.data.split import split_dataset
from shopsense.errors import ShopsenseError
from shopsense.evaluation.evaluate import evaluate
from shopsense.models.registry import create_model

COLUMNS = ("Recall@10", "NDCG@10", "MRR@10", "Hit@10", "Precision@10", "F1@10", "Coverage@10")


def peak_mib() -> float:
    """This process's own peak resident memory (VmHWM). Unlike getrusage's
    ru_maxrss, it starts afresh at exec, so a child does not report its parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(data: str, method: str, name: str, params: str) -> None:
    split = split_dataset(Dataset.load(data), method, seed=0)
    started = time.perf_counter()
    try:
        model = create_model(name, **json.loads(params))
        if model.training_defaults is not None:
            model.fit(split.train, validation=split)  # neural models stop early on it
        else:
            model.fit(split.train)
    except ShopsenseError as exc:
        print(json.dumps({"error": str(exc)}))
        return
    fit = time.perf_counter() - started
    r = evaluate(model, split, ks=(10,))
    out = {c: round(r[c], 4) for c in COLUMNS}
    out |= {"fit_seconds": round(fit, 2), "peak_mib": round(peak_mib())}
    report = getattr(model, "training_report_", None)
    if report:
        out["training"] = report  # where a neural model's time went
    print(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:5])
