"""A 10M-row CSV goes through ``ingest`` in bounded memory (issue 2).

Writes a Taobao-format file (user,item,category,behavior,timestamp) of
``SHOPSENSE_BENCH_ROWS`` rows (default 10M, about 0.4 GB), with 1% exact
duplicates and a few rows outside the collection window, then ingests it in
a child process and reports its wall time and peak resident memory.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from bench.common import REPO

ROWS = int(os.environ.get("SHOPSENSE_BENCH_ROWS", 10_000_000))
START, END = 1_511_539_200, 1_512_316_800  # the Taobao window (UTC+8 days)


def write_taobao_csv(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    block = 1_000_000
    with pacsv.CSVWriter(
        path,
        pa.schema(
            [
                ("u", pa.int64()),
                ("i", pa.int64()),
                ("c", pa.int64()),
                ("b", pa.string()),
                ("t", pa.int64()),
            ]
        ),
        write_options=pacsv.WriteOptions(include_header=False),
    ) as writer:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            users = rng.integers(1, 1_000_000, n)
            items = (rng.pareto(1.2, n) * 1000).astype(np.int64) % 4_000_000
            ts = rng.integers(START, END, n)
            ts[rng.random(n) < 0.0005] = START - 86_400 * 30
            behavior = np.array(["pv", "cart", "fav", "buy"])[
                rng.choice(4, size=n, p=[0.89, 0.055, 0.03, 0.025])
            ]
            dup = rng.random(n) < 0.01
            src = np.flatnonzero(~dup)
            take = src[rng.integers(0, len(src), dup.sum())]
            for arr in (users, items, ts, behavior):
                arr[dup] = arr[take]
            writer.write_table(
                pa.table({"u": users, "i": items, "c": items % 9973, "b": behavior, "t": ts})
            )


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "UserBehavior.csv"
        started = time.perf_counter()
        write_taobao_csv(csv, ROWS)
        write_seconds = time.perf_counter() - started
        size_mb = csv.stat().st_size / 2**20
        code = (
            "import json, resource, sys\n"
            "from shopsense.data.ingest import ingest\n"
            "r = ingest('taobao', [sys.argv[1]], sys.argv[2], progress=False)\n"
            "print(json.dumps({k: r[k] for k in ('input_rows', 'accepted', 'duplicates', "
            "'quarantined')}))\n"
        )
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", code, str(csv), str(Path(tmp) / "out")],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
        )
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    counts = done.stdout.strip().splitlines()[-1]
    print(
        f"ingest: {ROWS:,}-row Taobao CSV ({size_mb:.0f} MiB, written in {write_seconds:.0f}s) "
        f"ingested in {seconds:.0f}s ({ROWS / seconds:,.0f} rows/s), peak memory {peak:,.0f} MiB; "
        f"{counts}"
    )
    return {
        "rows": ROWS,
        "file_mib": round(size_mb),
        "seconds": round(seconds, 1),
        "rows_per_second": round(ROWS / seconds),
        "peak_rss_mib": round(peak),
        "report": counts,
    }
