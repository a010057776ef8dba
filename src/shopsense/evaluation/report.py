"""Evaluation results as a printed table and as the JSON ``--json`` writes."""

from __future__ import annotations

from typing import Any

TABLE_METRICS = ("NDCG", "Recall", "Precision", "F1", "Hit", "MRR", "MAP", "Coverage", "AvgPop")


def format_results(
    header: dict[str, Any], results: dict[str, dict[str, Any]], ks: tuple[int, ...]
) -> str:
    """One table per K, models as rows; a summary table of accuracy and timings first."""
    lines = [
        f"dataset: {header['dataset']}   split: {header['split']}   "
        f"evaluated on: {header['on']}   {header['mode']}"
    ]
    name_w = max(8, *(len(m) for m in results))
    lines.append("")
    lines.append(f"{'model':<{name_w}}  {'users':>7}  {'Accuracy':>8}  {'fit s':>8}  {'eval s':>7}")
    for model, r in results.items():
        lines.append(
            f"{model:<{name_w}}  {r['users']:>7}  {r['Accuracy']:>8.4f}  "
            f"{r['fit_seconds']:>8.2f}  {r['eval_seconds']:>7.2f}"
        )
    for k in ks:
        lines.append("")
        cols = [f"{m}@{k}" for m in TABLE_METRICS]
        lines.append(f"{'model':<{name_w}}  " + "  ".join(f"{c:>12}" for c in cols))
        for model, r in results.items():
            cells = [f"{r[c]:>12.2f}" if c.startswith("AvgPop") else f"{r[c]:>12.4f}" for c in cols]
            lines.append(f"{model:<{name_w}}  " + "  ".join(cells))
    return "\n".join(lines)
