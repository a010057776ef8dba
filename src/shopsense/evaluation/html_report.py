"""``evaluate --report FILE.html``: one self-contained page to look at rather
than read: the metrics table, metric@K curves, coverage against popularity
bias, and fit time per model. Figures are PNGs embedded as base64."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from shopsense.evaluation.report import TABLE_METRICS

CURVE_METRICS = ("NDCG", "Recall", "Hit", "MRR", "Precision", "Coverage")


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _curves(results: dict[str, dict[str, Any]], ks: tuple[int, ...]) -> str:
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for ax, metric in zip(axes.ravel(), CURVE_METRICS, strict=True):
        for model, r in results.items():
            ax.plot(ks, [r[f"{metric}@{k}"] for k in ks], marker="o", label=model)
        ax.set_title(f"{metric}@K")
        ax.set_xlabel("K")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _coverage(results: dict[str, dict[str, Any]], k: int) -> str:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for model, r in results.items():
        ax.scatter(r[f"AvgPop@{k}"], r[f"Coverage@{k}"], s=60)
        ax.annotate(
            model,
            (r[f"AvgPop@{k}"], r[f"Coverage@{k}"]),
            fontsize=9,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xlabel(f"average popularity of recommended items (AvgPop@{k})")
    ax.set_ylabel(f"share of catalog recommended (Coverage@{k})")
    ax.set_title("coverage against popularity bias")
    ax.grid(alpha=0.3)
    return _png(fig)


def _fit_times(results: dict[str, dict[str, Any]]) -> str:
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * len(results)))
    models = list(results)
    ax.barh(models, [results[m]["fit_seconds"] for m in models])
    ax.set_xlabel("fit seconds")
    ax.set_title("training time")
    ax.invert_yaxis()
    return _png(fig)


def write_html_report(
    path: str | Path,
    header: dict[str, Any],
    results: dict[str, dict[str, Any]],
    ks: tuple[int, ...],
) -> Path:
    path = Path(path)
    k = 10 if 10 in ks else ks[-1]
    cols = [f"{m}@{kk}" for kk in ks for m in TABLE_METRICS]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["model", "Accuracy", "fit s", *cols])
    best = {c: max(r[c] for r in results.values()) for c in cols if not c.startswith("AvgPop")}
    rows = []
    for model, r in results.items():
        cells = [
            f"<td>{html.escape(model)}</td>",
            f"<td>{r['Accuracy']:.4f}</td>",
            f"<td>{r['fit_seconds']:.2f}</td>",
        ]
        for c in cols:
            mark = ' class="best"' if c in best and r[c] == best[c] else ""
            cells.append(f"<td{mark}>{r[c]:.4f}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    title = f"shopsense evaluation: {header['dataset']}"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; font-size: 12px; display: block; overflow-x: auto; }}
th, td {{ border: 1px solid #ddd; padding: 3px 6px; text-align: right; white-space: nowrap; }}
th {{ background: #f4f4f4; }} td:first-child {{ text-align: left; font-weight: 600; }}
td.best {{ background: #e3f4e1; font-weight: 600; }}
.figs img {{ max-width: 100%; margin: 1rem 0; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>split: <b>{html.escape(header["split"])}</b> · evaluated on: <b>{html.escape(header["on"])}</b>
 · {html.escape(header["mode"])} · users evaluated: {next(iter(results.values()))["users"]:,}</p>
<h2>Metrics</h2>
<table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>
<div class="figs">
<h2>Metrics at each K</h2>
<img alt="metric curves" src="data:image/png;base64,{_curves(results, ks)}">
<h2>Coverage against popularity bias</h2>
<img alt="coverage against popularity" src="data:image/png;base64,{_coverage(results, k)}">
<h2>Training time</h2><img alt="fit seconds" src="data:image/png;base64,{_fit_times(results)}">
</div></body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
