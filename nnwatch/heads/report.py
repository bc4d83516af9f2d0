"""Head-detector results as markdown tables and HTML pages with SVG plots."""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np

from ..eval.metrics import roc_curve
from ..eval.provenance import describe
from ..eval.svg import heatmap, line_chart

_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        ".grid{display:flex;flex-wrap:wrap;gap:12px}")


def _page(title: str, body: list[str]) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1>{''.join(body)}</body></html>")


def separation_heatmap(det: Any) -> str:
    """Layers x heads heat map of (mean unsafe angle - mean safe angle) on calibration prompts.

    Parameters
    ----------
    det : HeadDetector
        A searched detector.

    Returns
    -------
    str
        SVG.
    """
    if "unsafe_mean" not in det.search or "safe_mean" not in det.search:
        return "<p>(no per-head search statistics in this detector file)</p>"
    gap = np.array(det.search["unsafe_mean"]) - np.array(det.search["safe_mean"])
    lim = float(np.abs(gap).max()) or 1.0
    return heatmap(gap, [f"L{i}" for i in range(det.n_layers)], [f"H{j}" for j in range(det.n_heads)],
                   "mean angle gap, unsafe - safe (degrees)", vmin=-lim, vmax=lim, diverging=True)


def search_report(det: Any) -> str:
    """HTML page for a head search: heat map, ranking, chosen variants.

    Parameters
    ----------
    det : HeadDetector
        A searched detector.

    Returns
    -------
    str
        HTML.
    """
    s = det.search
    rows = "".join(f"<tr><td>L{a}H{b}</td><td>{g:+.3f}</td></tr>" for a, b, g in s.get("ranking", [])[:15])
    variants = "".join(f"<tr><td>{escape(k)}</td><td>{', '.join(f'L{a}H{b}' for a, b in v.heads)}</td>"
                       f"<td>{v.threshold:.4g}</td></tr>" for k, v in det.variants.items())
    body = [f"<p>Model {escape(det.model)}; {s.get('n_unsafe')} unsafe and {s.get('n_safe')} safe calibration "
            f"prompts; heads with mean safe angle above the {s.get('percentile'):g}th percentile are excluded "
            "from the published ranking.</p>", separation_heatmap(det),
            "<h2>Variants</h2><table><tr><th>variant</th><th>heads</th><th>threshold</th></tr>" + variants + "</table>",
            "<h2>Published ranking (kept heads)</h2><table><tr><th>head</th><th>gap (deg)</th></tr>" + rows + "</table>"]
    return _page("nnwatch heads search", body)


def _fmt(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"


def detection_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown table of detection metrics per set and detector.

    Parameters
    ----------
    rows : list of dict
        ``rows`` of an evaluation.

    Returns
    -------
    list of str
        Lines.
    """
    lines = ["| set | detector | AUROC | detection | false positives | balanced acc. | safe/unsafe |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['detector']} | {_fmt(r['auroc'])} | {_fmt(r['detection'])} | "
                     f"{_fmt(r['false_positive'])} | {_fmt(r['balanced_accuracy'])} | {r['n_safe']}/{r['n_unsafe']} |")
    return lines


def latency_table(lat: dict[str, Any]) -> list[str]:
    """Markdown table of the cost of each path as a multiple of a plain prefill.

    Parameters
    ----------
    lat : dict
        Output of :func:`nnwatch.heads.latency.measure_overhead`.

    Returns
    -------
    list of str
        Lines.
    """
    lines = ["| path | p50 ms | x plain prefill |", "|---|---|---|"]
    for r in lat["rows"]:
        lines.append(f"| {r['path']} | {r['p50_ms']:.1f} | {r['ratio']:.2f}x |")
    return lines


def evaluation_markdown(res: dict[str, Any]) -> str:
    """Markdown: where the run came from, metrics per set and detector, latency per path.

    Parameters
    ----------
    res : dict
        Output of ``nnwatch heads evaluate``.

    Returns
    -------
    str
        Markdown with ``<!-- begin NAME -->`` blocks (``detection``, ``latency``).
    """
    lines = []
    if "machine" in res and "git" in res:
        lines += [describe(res), ""]
    lines += ["<!-- begin detection -->", *detection_table(res["rows"]), "<!-- end detection -->"]
    lat = res.get("latency")
    if lat:
        lines += ["", f"Latency on {lat['prompts']} prompts (median {lat['median_tokens']} tokens), p50 per prompt, "
                  "as a multiple of one plain prefill measured in the same run:", "",
                  "<!-- begin latency -->", *latency_table(lat), "<!-- end latency -->"]
        if "onnx_max_angle_diff" in lat:
            lines.append(f"\nONNX vs torch angle, largest difference over the timed prompts: "
                         f"{lat['onnx_max_angle_diff']:.2e} degrees.")
    return "\n".join(lines) + "\n"


def evaluation_figures(res: dict[str, Any]) -> dict[str, str]:
    """The evaluation's plots as SVG: separation heat map, ROC per set, probe AUROC per layer.

    Parameters
    ----------
    res : dict
        Output of ``nnwatch heads evaluate``.

    Returns
    -------
    dict
        File stem -> SVG markup.
    """
    from .detector import detector_from_json

    det = detector_from_json(res["detector"], "evaluation result")
    figs = {"heads_separation": separation_heatmap(det)}
    for name, labels in res["labels"].items():
        y = np.array(labels)
        if not ((y == 0).any() and (y == 1).any()):
            continue
        series = {}
        for det_name, scores in res["scores"][name].items():
            s = np.array(scores)
            fpr, tpr, _ = roc_curve(s[y == 0], s[y == 1])
            series[det_name] = (fpr, tpr)
        stem = "heads_roc_" + name.replace(":", "_").replace("+", "_")
        figs[stem] = line_chart(series, f"ROC: {name}", "false-positive rate", "detection rate", diagonal=True,
                                limits=(0, 1, 0, 1))
    if res.get("probe_layer_auroc"):
        series = {name: (np.arange(len(v)), np.array(v)) for name, v in res["probe_layer_auroc"].items()}
        figs["heads_probe_layers"] = line_chart(series, "logistic probe AUROC by layer (fitted on train)",
                                                "layer (0 = embeddings)", "AUROC")
    return figs


def evaluation_report(res: dict[str, Any]) -> str:
    """HTML: separation heat map, ROC curves per set, probe AUROC per layer, tables.

    Parameters
    ----------
    res : dict
        Output of ``nnwatch heads evaluate``.

    Returns
    -------
    str
        HTML.
    """
    figs = evaluation_figures(res)
    body = ["<h2>Per-head separation on calibration prompts</h2>", figs.pop("heads_separation")]
    probe = figs.pop("heads_probe_layers", None)
    body += ["<h2>ROC curves</h2><div class='grid'>", *figs.values(), "</div>"]
    if probe:
        body += ["<h2>Logistic probe AUROC per layer</h2>", probe]
    body.append("<h2>Tables</h2><pre>" + escape(evaluation_markdown(res)) + "</pre>")
    return _page("nnwatch heads evaluate", body)
