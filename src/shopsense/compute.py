"""How many CPU cores this process may use.

``os.cpu_count()`` counts the machine's cores, not the ones a container,
``taskset`` or a scheduler lets this process run on; more threads than
usable cores only fight each other.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores in this process's CPU affinity (all cores where affinity is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
