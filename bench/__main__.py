"""``make bench``: run every benchmark, print the figures and the machine,
and write them to ``bench-output/results.json``.

``python -m bench NAME ...`` runs only the named ones (or parts of one: ``PARTS``).
"""

from __future__ import annotations

import json
import sys
import time

from bench import (
    evaluation_speed,
    generator,
    ingest_scale,
    learning_loop,
    model_table,
    neural_table,
    query_understanding,
    recbole_check,
    sasrec_beauty,
    search_behaviour,
    search_quality,
    serving_load,
    serving_replicas,
)
from bench.common import OUTPUT, machine

BENCHMARKS = {
    "generator": generator.run,
    "evaluation": evaluation_speed.run,
    "recbole": recbole_check.run,
    "ingest": ingest_scale.run,
    "models": model_table.run,
    "sasrec": sasrec_beauty.run,
    "neural": neural_table.run,
    "search": search_quality.run,
    "search-behaviour": search_behaviour.run,
    "search-understanding": query_understanding.run,
    "serving": serving_load.run,
    "serving-replicas": serving_replicas.run,
    "learning-loop": learning_loop.run,
}
# Parts of ``search``, to run one alone; ``make bench`` runs ``search`` whole.
PARTS = {
    "search-homedepot": search_quality.home_depot,
    "search-latency": search_quality.synthetic_latency,
    "search-result-sets": search_quality.result_sets,
    "search-million": search_quality.million_items,
    "learning-loop-statistics": learning_loop.statistics,
    "learning-loop-retrain": learning_loop.retrain_loop,
}


def main(names: list[str]) -> None:
    known = BENCHMARKS | PARTS
    unknown = [n for n in names if n not in known]
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; choose from {list(known)}")
    info = machine()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    ran = {}
    for name in names or list(BENCHMARKS):
        print(f"\n== {name}")
        ran[name] = known[name]()
    # Figures of benchmarks not run now are kept from earlier (or concurrent) runs.
    path = OUTPUT / "results.json"
    results: dict = json.loads(path.read_text()) if path.is_file() else {}
    results.update(ran, machine=info, date=time.strftime("%Y-%m-%d"))
    OUTPUT.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nfigures written to {OUTPUT / 'results.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
