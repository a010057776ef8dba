"""The search log: each search appended as a ``search`` event (JSONL) with
what it showed, how many items matched (``total``; ``zero_results`` when a
query found none) and its request id, so a later click can name the list it
came from."""

from __future__ import annotations

import json
import time
from pathlib import Path

from shopsense.search.query.present import SearchResults


def log_search(path: Path, results: SearchResults, user_id: str | None) -> None:
    """Append ``results``' search event to the log at ``path``."""
    event = {
        "user_id": user_id,
        "item_id": None,
        "type": "search",
        "timestamp": int(time.time()),
        "query": results.query,
        "context": json.dumps(
            {
                "request_id": results.request_id,
                "shown": [h.item_id for h in results.hits],
                "total": results.total,
                "zero_results": zero_results(results),
            }
        ),
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(event, ensure_ascii=False) + "\n")


def zero_results(results: SearchResults) -> bool:
    """Whether a query (not a browse of the catalogue) matched nothing."""
    return bool(results.query) and results.total == 0
