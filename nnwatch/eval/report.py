"""A self-contained HTML report of an evaluation (inline SVG, no external files)."""

from __future__ import annotations

import json
import os
from html import escape
from typing import Any

import numpy as np

from .._io import atomic_write_bytes
from .evaluate import Evaluation
from .metrics import roc_curve
from .svg import heatmap, histogram, line_chart

_CSS = ("body{font-family:sans-serif;max-width:1300px;margin:20px auto;color:#222}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "th{background:#f3f3f3}.grid{display:flex;flex-wrap:wrap;gap:10px}pre{background:#f7f7f7;padding:8px}")


def html_page(title: str, body: list[str], heading: bool = False) -> str:
    """A self-contained HTML page in the reports' style.

    Parameters
    ----------
    title : str
        Page title (escaped).
    body : list of str
        HTML fragments, in order.
    heading : bool
        Also show the title as an ``<h1>``.

    Returns
    -------
    str
        HTML.
    """
    h1 = f"<h1>{escape(title)}</h1>" if heading else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title><style>{_CSS}</style>"
            f"</head><body>{h1}{''.join(body)}</body></html>")


def render_report(ev: Evaluation, title: str, notes: dict[str, Any] | None = None,
                  detectors_for_roc: list[str] | None = None, hist_detector: str = "coverage") -> str:
    """Build the report HTML.

    Parameters
    ----------
    ev : Evaluation
        Evaluation to show.
    title : str
        Page title.
    notes : dict, optional
        Extra facts shown as a key/value table (model, accuracy, timings, machine).
    detectors_for_roc : list of str, optional
        Detectors drawn in ROC plots (default: all).
    hist_detector : str
        Detector whose score histograms are drawn.

    Returns
    -------
    str
        HTML.
    """
    sets, dets, auc = ev.table("auroc")
    body = [f"<h1>{escape(title)}</h1>"]
    if notes:
        body.append("<table>" + "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>"
                                          for k, v in notes.items()) + "</table>")
    if sets:
        body.append("<h2>AUROC per anomaly set and detector</h2>")
        body.append(heatmap(auc, sets, dets, "AUROC (clean test vs anomalous)"))
    body.append("<h2>ROC curves</h2><div class='grid'>")
    chosen = detectors_for_roc or dets
    for s in sets:
        series = {}
        neg = ev.sets[s].get("neg_scores", ev.id_scores)  # e.g. misclassified vs correctly classified
        for d in chosen:
            fpr, tpr, _ = roc_curve(neg[d], ev.sets[s]["scores"][d])
            series[d] = (fpr, tpr)
        body.append(line_chart(series, f"ROC: {s}", "false-positive rate", "true-positive rate",
                               diagonal=True, limits=(0, 1, 0, 1)))
    body.append("</div>")
    if hist_detector in ev.id_scores and sets:
        body.append(f"<h2>Score histograms ({escape(hist_detector)})</h2><div class='grid'>")
        for s in sets:
            neg = ev.sets[s].get("neg_scores", ev.id_scores)
            body.append(histogram({"clean": neg[hist_detector], s: ev.sets[s]["scores"][hist_detector]},
                                  s, f"{hist_detector} score"))
        body.append("</div>")
    if ev.errors:
        body.append("<h2>The model's own errors: risk-coverage</h2>")
        best = sorted(ev.errors, key=lambda d: ev.errors[d]["aurc"])
        shown = [d for d in (detectors_for_roc or best) if d in ev.errors][:8] or best[:8]
        body.append(line_chart({d: ev.errors[d]["curve"] for d in shown}, "selective risk when rejecting in score order",
                               "coverage (share of inputs answered)", "selective risk (error rate answered)",
                               limits=(0, 1, 0, max(float(max(ev.errors[d]["curve"][1].max() for d in shown)), 1e-3))))
        body.append("<pre>" + escape(ev.errors_markdown()) + "</pre>")
    body.append("<h2>All metrics</h2><table><tr><th>set</th><th>detector</th><th>AUROC</th><th>AUPR</th>"
                "<th>FPR@95%TPR</th><th>TPR@5%FPR (oracle)</th><th>TPR@cal</th><th>FPR@cal</th></tr>")
    for r in ev.rows:
        cells = [r["auroc"], r["aupr"], r["fpr_at_95tpr"], r["tpr_at_5fpr"], r["tpr_cal"], r["fpr_cal"]]
        body.append(f"<tr><td>{escape(r['set'])}</td><td>{escape(r['detector'])}</td>"
                    + "".join(f"<td>{'-' if c is None or not np.isfinite(c) else f'{c:.3f}'}</td>" for c in cells) + "</tr>")
    body.append("</table>")
    return html_page(title, body)


def write_report(path: str | os.PathLike, ev: Evaluation, title: str, notes: dict[str, Any] | None = None,
                 **options: Any) -> None:
    """Write the report atomically.

    Parameters
    ----------
    path : path
        Destination .html.
    ev : Evaluation
        Evaluation.
    title : str
        Title.
    notes : dict, optional
        Extra facts.
    **options
        Passed to :func:`render_report`.
    """
    atomic_write_bytes(path, render_report(ev, title, notes, **options).encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically.

    Parameters
    ----------
    path : path
        Destination.
    data : Any
        JSON-able data.
    """
    atomic_write_bytes(path, json.dumps(data, indent=2, sort_keys=True, default=float).encode("utf-8"))
