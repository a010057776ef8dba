"""What every benchmark shares: the machine's description, timing, dataset paths."""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "bench-output"


def machine() -> dict[str, str | int | float]:
    """The machine a benchmark ran on. Beside the CPU's name, its family and
    model and its widest vector instructions: machines named alike ("AMD
    EPYC") differ twofold in one-thread search latency, an AVX2 one against
    an AVX-512 one."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if not line.strip():
                break  # the first processor's block
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    cpu = fields.get("model name", cpu)
    if "cpu family" in fields:
        cpu += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    flags = set(fields.get("flags", "").split())
    vector = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "unknown")
    return {
        "cpu": cpu,
        "vector_instructions": vector.replace("avx512f", "avx512"),
        "cores": os.cpu_count() or 0,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "os": platform.platform(),
    }


def datasets_root() -> Path:
    return Path(os.environ.get("SHOPSENSE_DATASETS", REPO.parent / "shared" / "datasets"))


@contextmanager
def timer() -> Iterator[dict[str, float]]:
    box: dict[str, float] = {}
    started = time.perf_counter()
    yield box
    box["seconds"] = time.perf_counter() - started


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
