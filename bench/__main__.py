"""``make bench``: run every benchmark, print the figures and the machine,
and write them to ``bench-output/results.json``.

``python -m bench NAME ...`` runs only the named ones.
"""

from __future__ import annotations

import json
import sys
import time

from bench import (
    evaluation_speed,
    generator,
    ingest_scale,
    model_table,
    neural_table,
    recbole_check,
    sasrec_beauty,
    search_quality,
    serving_load,
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
    "serving": serving_load.run,
}


def main(names: list[str]) -> None:
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    info = machine()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    path = OUTPUT / "results.json"
    # Figures of benchmarks not run now are kept from earlier runs.
    results: dict = json.loads(path.read_text()) if path.is_file() else {}
    results.update(machine=info, date=time.strftime("%Y-%m-%d"))
    for name in names or list(BENCHMARKS):
        print(f"\n== {name}")
        results[name] = BENCHMARKS[name]()
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nfigures written to {OUTPUT / 'results.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
