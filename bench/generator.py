"""The synthetic store generates 1M events in ≤ 30 s (target from issue 2)."""

from __future__ import annotations

import tempfile

from bench.common import timer
from shopsense.data.synthetic import StoreConfig, generate_store, write_store

TARGET_SECONDS = 30.0


def run() -> dict:
    cfg = StoreConfig(users=21_500, items=20_000, days=60, seed=0)
    with timer() as gen:
        _, _, events = generate_store(cfg)
    with tempfile.TemporaryDirectory() as tmp, timer() as total:
        write_store(cfg, tmp)
    n = len(events)
    result = {
        "events": n,
        "generate_seconds": round(gen["seconds"], 2),
        "generate_and_write_seconds": round(total["seconds"], 2),
        "events_per_second": round(n / gen["seconds"]),
        "target_seconds_per_1M": TARGET_SECONDS,
        "seconds_per_1M": round(gen["seconds"] * 1e6 / n, 2),
    }
    result["meets_target"] = result["seconds_per_1M"] <= TARGET_SECONDS
    print(
        f"generate: {n:,} events in {gen['seconds']:.2f}s "
        f"({result['seconds_per_1M']:.2f}s per 1M; written to Parquet in "
        f"{total['seconds']:.2f}s); target ≤ {TARGET_SECONDS:.0f}s per 1M: "
        f"{'met' if result['meets_target'] else 'NOT met'}"
    )
    return result
